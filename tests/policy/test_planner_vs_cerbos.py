"""Differential: PlanResources answered by Vigil's planner (`vigil policy plan` and the in-process
`plan_resources`) and by the stock Cerbos PDP 0.55 serving the same policies, compared field by
field (all but ``cerbosCallId``). A plan Vigil refuses (code 12) is never compared, but the share
of refusals is bounded so that the planner keeps answering the common cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.policy.api import RequestError, build_engine
from streams.policy.planner import UNIMPLEMENTED, plan_resources
from tests.external_tools import cerbos_binary
from tests.policy_tools.helpers import _server
from tests.policy_tools.test_eval_vs_cerbos import GLOBALS, _bundle, _requests
from tests.web.test_check_vs_cerbos import PLAN, _plans, _post


def _strip(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "cerbosCallId"}


def plan_requests() -> list[dict[str, Any]]:
    """Plans from the principals and resources of the generated check requests, each with the
    resource attributes given and without them (the usual plan: nothing known of the resource)."""
    plans = _plans(_requests(60, True, seed=11) + _requests(60, False, seed=12))
    bare = []
    for plan in plans:
        copy = json.loads(json.dumps(plan))
        copy["resource"].pop("attr", None)
        copy["requestId"] += "-bare"
        bare.append(copy)
    return plans + bare


def compare(engine: Any, url: str, plans: list[dict[str, Any]]) -> tuple[int, list[str]]:
    answered, mismatches = 0, []
    for plan in plans:
        try:
            ours = plan_resources(engine, plan, call_id="x")
        except RequestError as exc:
            assert exc.code == UNIMPLEMENTED, (plan, exc.message)
            continue
        answered += 1
        status, theirs = _post(url, plan, "application/json", path=PLAN)
        assert status == 200, theirs
        if _strip(ours) != _strip(theirs):
            mismatches.append(
                f"plan {json.dumps(plan)}\n cerbos {json.dumps(_strip(theirs))}\n"
                f" vigil  {json.dumps(_strip(ours))}"
            )
    return answered, mismatches


def test_planner_matches_stock_cerbos(tmp_path: Path) -> None:
    binary = cerbos_binary()
    bundle = _bundle(tmp_path / "bundle")
    engine = build_engine(bundle, globals_=GLOBALS)
    plans = plan_requests()
    with _server(binary, bundle, tmp_path, GLOBALS) as pdp:
        answered, mismatches = compare(engine, pdp, plans)
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:5])
    assert answered > len(plans) // 2, f"only {answered} of {len(plans)} plans answered"
