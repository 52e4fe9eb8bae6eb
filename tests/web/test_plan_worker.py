"""Query plans through the Cerbos Python SDK (`CerbosClient.plan_resources`, unchanged) against a
running ``vigil worker`` and against the stock Cerbos PDP 0.55 serving the same policies: the
parsed filters (kind and operand tree) must be equal; the worker folds the principal's live
signals in, so the PDP gets the principal with exactly the attributes the worker merged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cerbos.sdk.client import CerbosClient
from cerbos.sdk.model import PlanResourcesFilterKind, Principal, ResourceDesc

from tests.external_tools import cerbos_binary
from tests.pipeline.worker_harness import Worker
from tests.policy.test_planner_vs_cerbos import CORPUS
from tests.policy_tools.helpers import _server
from tests.policy_tools.test_eval_vs_cerbos import GLOBALS
from tests.web.test_check_vs_cerbos import _effective

ACTIONS = ["eq", "in_list", "var", "fn", "exists", "map", "none", "two_allow", "deny_cond"]


def _principal(body: dict[str, Any]) -> Principal:
    p = body["principal"]
    return Principal(p["id"], roles=set(p["roles"]), attr=p.get("attr") or {})


async def test_sdk_plan_resources_matches_stock_cerbos(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    binary = cerbos_binary()
    worker = start_worker()
    worker.policies = CORPUS
    worker.extra_env["VIGIL_GLOBALS"] = json.dumps(GLOBALS)
    await worker.start()
    request = {"principal": {"id": "u1", "roles": ["user"], "attr": {"department": "eng"}}}
    kinds = set()
    with (
        _server(binary, CORPUS, tmp_path, GLOBALS) as pdp,
        CerbosClient(worker.api_url, timeout_secs=10) as ours,
        CerbosClient(pdp, timeout_secs=10) as theirs,
    ):
        for action in ACTIONS:
            mine = ours.plan_resources(action, _principal(request), ResourceDesc("expr"))
            stock = theirs.plan_resources(
                action, _principal(_effective(request)), ResourceDesc("expr")
            )
            assert mine.filter is not None and stock.filter is not None
            assert mine.filter == stock.filter, action
            kinds.add(mine.filter.kind)
        several = ours.plan_resources(["eq", "ne"], _principal(request), ResourceDesc("expr"))
        assert several.filter is not None
        assert several.filter.kind == PlanResourcesFilterKind.CONDITIONAL
    assert kinds == {PlanResourcesFilterKind.CONDITIONAL}
