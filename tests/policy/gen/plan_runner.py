"""Generated plans against the stock Cerbos PDP: the share Vigil's planner answers, the
differences among those, and the refusal reasons, per seed.

`python -m tests.policy.gen.plan_runner --seeds 1 2 62 [--no-role-policies] [--show 3]`

The stores and plans are those of `tests/policy/test_planner_generated.py`; a plan counts as
equal as it does there (`tests.policy.test_planner_vs_cerbos.compare`, `_unordered` aside).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from streams.policy.api import RequestError, build_engine
from streams.policy.planner import plan_resources
from tests.external_tools import cerbos_binary
from tests.policy.gen.requests import generate_requests
from tests.policy.gen.store import Features, generate_store
from tests.policy.test_planner_generated import PLANS_PER_STORE, plan_requests
from tests.policy.test_planner_vs_cerbos import compare
from tests.policy_tools.helpers import _server


def run_seed(seed: int, features: Features, show: int) -> tuple[int, int, int]:
    """(plans, answered, mismatches) of one seed; prints refusal reasons and differences."""
    binary = cerbos_binary()
    store = generate_store(seed, features)
    with tempfile.TemporaryDirectory(prefix=f"plandiff-{seed}-") as tmp:
        root = store.write(Path(tmp) / "store")
        engine = build_engine(root, globals_=store.globals_)
        plans = plan_requests(generate_requests(store, PLANS_PER_STORE // 2, seed), seed)
        reasons: collections.Counter[str] = collections.Counter()
        for plan in plans:
            try:
                plan_resources(engine, plan, call_id="x")
            except RequestError as exc:
                reasons[re.sub(r"'[^']*'", "'…'", exc.message)] += 1
        with _server(binary, root, Path(tmp), store.globals_) as pdp:
            answered, mismatches = compare(engine, pdp, plans)
    print(f"seed {seed}: {answered}/{len(plans)} answered, {len(mismatches)} differ", flush=True)
    for reason, n in reasons.most_common(5):
        print(f"  refused {n}: {reason}")
    for m in mismatches[:show]:
        print("  " + m.replace("\n", "\n  "))
    return len(plans), answered, len(mismatches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--no-role-policies", action="store_true")
    parser.add_argument("--show", type=int, default=2, help="differences printed per seed")
    args = parser.parse_args(argv)
    os.environ.setdefault("CERBOS_NO_TELEMETRY", "1")
    features = Features(outputs=False, role_policies=not args.no_role_policies)
    totals = [0, 0, 0]
    for seed in args.seeds:
        for i, n in enumerate(run_seed(seed, features, args.show)):
            totals[i] += n
    print(json.dumps(dict(zip(("plans", "answered", "differences"), totals, strict=True))))
    return 1 if totals[2] else 0


if __name__ == "__main__":
    sys.exit(main())
