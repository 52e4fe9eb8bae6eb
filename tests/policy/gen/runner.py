"""Run generated stores against the stock Cerbos PDP and Vigil and list the differences.

Per store: write it to a directory, `cerbos compile` it (must accept: the generator only makes
valid stores), compile it in Vigil (must accept too, or that is a difference), start one
`cerbos server` on it, send the generated requests to the PDP over HTTP and to Vigil in process
(`streams.policy.api.check_resources`), and compare each result (effects, matchedPolicy,
matchedScope, effectiveDerivedRoles, outputs, validationErrors; everything but `cerbosCallId`,
normalised by `strip_response`).

`python -m tests.policy.gen.runner --seeds 200 [--start 1000] [--requests 500] [--out F]`
(`make diff-cerbos`) writes every difference as a JSON line: the seed, the store's files and
the single-resource request that differs, with both answers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.policy import PolicyEngine
from streams.policy.api import build_engine, check_resources
from streams.policy.model import PolicyCompileError
from tests.external_tools import cerbos_binary
from tests.policy.test_differential import _server
from tests.policy_tools.helpers import post_check, strip_response

from .requests import generate_requests
from .store import Features, Store, generate_store


def comparable(result: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """`result` with the text of each output error replaced by `"<error>"` where `other` (the
    other engine's result) also has an error there. Error texts are cel-cpp's rewritten into
    cel-go's words where known (streams/policy/celerrors.py, checked text by text in
    test_generated_regressions.py); cel-go's wording depends on static types and dispatch
    paths cel-cpp does not report, so the generated suite compares "an error" with "an error"."""
    mine, theirs = result.get("outputs", []), other.get("outputs", [])
    if len(mine) != len(theirs):
        return result
    outputs = []
    for a, b in zip(mine, theirs, strict=True):
        if "error" in a and "error" in b:
            a = {**a, "error": "<error>"}
        outputs.append(a)
    return {**result, "outputs": outputs}


class StoreRejected(AssertionError):
    """The stock PDP refused a generated store: a bug of the generator, not of Vigil."""


@dataclass
class Difference:
    seed: int
    what: str  # "compile" or "check"
    request: dict[str, Any]
    cerbos: Any
    vigil: Any

    def to_json(self, store: Store) -> str:
        return json.dumps({**self.__dict__, "files": store.files, "globals": store.globals_})

    def __str__(self) -> str:
        return (
            f"seed {self.seed} {self.what}: request {json.dumps(self.request)}\n"
            f"  cerbos {json.dumps(self.cerbos)}\n  vigil  {json.dumps(self.vigil)}"
        )


@dataclass
class StoreRun:
    seed: int
    requests: int = 0
    checks: int = 0  # (resource, action) pairs decided
    differences: list[Difference] = field(default_factory=list)


def run_store(
    binary: Path, store: Store, workdir: Path, n_requests: int, resources_per_request: int = 2
) -> StoreRun:
    """Compare one store on `n_requests` generated requests; see the module docstring."""
    os.environ.setdefault("CERBOS_NO_TELEMETRY", "1")
    run = StoreRun(store.seed)
    root = store.write(workdir / "store")
    compiling = subprocess.Popen(  # runs while Vigil compiles
        [str(binary), "compile", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        engine = build_engine(root, globals_=store.globals_)
    except PolicyCompileError as exc:
        engine = None
        refused = [str(e) for e in exc.errors]
    out, _ = compiling.communicate(timeout=120)
    if compiling.returncode != 0:
        raise StoreRejected(f"seed {store.seed}: cerbos compile:\n{out}")
    if engine is None:
        run.differences.append(Difference(store.seed, "compile", {}, "accepted", refused))
        return run
    requests = generate_requests(store, n_requests, store.seed, resources_per_request)
    compare(binary, engine, root, workdir, store.globals_, requests, run)
    return run


def compare(
    binary: Path,
    engine: PolicyEngine,
    root: Path,
    workdir: Path,
    globals_: dict[str, Any],
    requests: list[dict[str, Any]],
    run: StoreRun,
) -> StoreRun:
    """Send `requests` to a `cerbos server` on `root` and to `engine`; add each result that
    differs to `run.differences`."""
    with _server(binary, root, workdir, globals_) as url, ThreadPoolExecutor(4) as pool:
        # the PDP answers in its own process while Vigil evaluates here
        answers = [pool.submit(post_check, url, req) for req in requests]
        for req, answer in zip(requests, answers, strict=True):
            status, theirs = answer.result()
            if status != 200:
                raise StoreRejected(f"seed {run.seed}: PDP answered {status}: {theirs}")
            ours = strip_response(check_resources(engine, req))
            theirs = strip_response(theirs)
            run.requests += 1
            for entry, t, o in zip(
                req["resources"], theirs["results"], ours["results"], strict=True
            ):
                run.checks += len(entry["actions"])
                if t != o and comparable(t, o) != comparable(o, t):
                    single = {"principal": req["principal"], "resources": [entry]}
                    run.differences.append(Difference(run.seed, "check", single, t, o))
    return run


def run_seeds(
    seeds: list[int],
    n_requests: int,
    features: Features | None = None,
    out: Any = None,
    resources_per_request: int = 2,
) -> list[StoreRun]:
    """`run_store` for each seed in its own temporary directory."""
    binary = cerbos_binary()
    runs = []
    for seed in seeds:
        store = generate_store(seed, features)
        with tempfile.TemporaryDirectory(prefix=f"gendiff-{seed}-") as tmp:
            run = run_store(binary, store, Path(tmp), n_requests, resources_per_request)
        runs.append(run)
        if out is not None:
            for d in run.differences:
                out.write(d.to_json(store) + "\n")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=200, help="number of stores")
    parser.add_argument("--start", type=int, default=1000, help="first seed")
    parser.add_argument("--requests", type=int, default=500, help="requests per store")
    parser.add_argument(
        "--resources", type=int, default=2, help="mean resources per request (1 to 2N-1)"
    )
    parser.add_argument("--out", type=Path, default=None, help="differences as JSON lines")
    parser.add_argument("--no-role-policies", action="store_true", help="generate no role policies")
    args = parser.parse_args(argv)
    features = Features(role_policies=not args.no_role_policies)
    started = time.monotonic()
    totals = {"stores": 0, "requests": 0, "checks": 0, "differences": 0}
    stores_with_diffs = []
    out = args.out.open("w") if args.out else None
    try:
        for seed in range(args.start, args.start + args.seeds):
            try:
                (run,) = run_seeds([seed], args.requests, features, out, args.resources)
            except StoreRejected as exc:  # a generator bug: report it, go on
                totals["rejected_by_cerbos"] = totals.get("rejected_by_cerbos", 0) + 1
                print(f"seed {seed}: the stock PDP refused the store: {exc}", flush=True)
                continue
            totals["stores"] += 1
            totals["requests"] += run.requests
            totals["checks"] += run.checks
            totals["differences"] += len(run.differences)
            if run.differences:
                stores_with_diffs.append(seed)
                print(f"seed {seed}: {len(run.differences)} differences", flush=True)
                print(str(run.differences[0])[:2000], flush=True)
    finally:
        if out is not None:
            out.close()
    took = time.monotonic() - started
    print(json.dumps({**totals, "seeds_with_differences": stores_with_diffs, "seconds": took}))
    return 1 if totals["differences"] or totals.get("rejected_by_cerbos") else 0


if __name__ == "__main__":
    sys.exit(main())
