"""Differential: the same CheckResources requests to a running ``vigil worker`` (check API) and to
the stock Cerbos PDP 0.55 serving the same policies and globals; responses must be equal field by
field (all but ``cerbosCallId``). The worker merges the principal's live signals into
``attr.signals`` (and an empty ``attr.grant``); the PDP gets the request with exactly those
attributes, so both evaluate the same effective request. Invalid requests: same status and code.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.processing.check import NO_GRANT
from streams.processing.evaluation import signal_attributes
from streams.state.subject import new_signal_state, subject_snapshot
from tests.external_tools import cerbos_binary
from tests.pipeline.worker_harness import Worker
from tests.policy_tools.helpers import _server
from tests.policy_tools.helpers import strip_response as _strip
from tests.policy_tools.test_eval_vs_cerbos import GLOBALS, INVALID, _bundle, _requests
from tests.web.helpers import RISK


def _post(
    url: str, body: Any, content_type: str = "text/plain", path: str = "/api/check/resources"
) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        headers={"content-type": content_type},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _effective(request: dict[str, Any]) -> dict[str, Any]:
    """The request as the worker's policies see it for a principal with no signals yet."""
    empty = new_signal_state()
    principal = dict(request["principal"])
    attr = {k: v for k, v in (principal.get("attr") or {}).items() if k not in ("signals", "grant")}
    attr["signals"] = signal_attributes(subject_snapshot(empty, RISK), empty, None, None)
    attr["grant"] = dict(NO_GRANT)
    principal["attr"] = attr
    return {**request, "principal": principal}


async def test_worker_check_api_matches_stock_cerbos(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    binary = cerbos_binary()
    bundle = _bundle(tmp_path / "bundle")
    worker = start_worker()
    worker.policies = bundle
    worker.extra_env["VIGIL_GLOBALS"] = json.dumps(GLOBALS)
    await worker.start()
    requests = _requests(150, True, seed=3) + _requests(150, False, seed=4)
    mismatches = []
    with _server(binary, bundle, tmp_path, GLOBALS) as pdp:
        for req in requests:
            status, ours = _post(worker.api_url, req)
            assert status == 200, ours
            status, theirs = _post(pdp, _effective(req), "application/json")
            assert status == 200, theirs
            assert len(ours["cerbosCallId"]) == 26
            if _strip(ours) != _strip(theirs):
                mismatches.append(
                    f"request {json.dumps(req)}\n cerbos {json.dumps(_strip(theirs))}\n"
                    f" vigil  {json.dumps(_strip(ours))}"
                )
        for bad in INVALID:
            ours_status, ours = _post(worker.api_url, bad)
            theirs_status, theirs = _post(pdp, bad)
            assert (ours_status, ours["code"]) == (theirs_status, theirs["code"]), (bad, ours)
            if theirs["message"].startswith("validation error"):
                assert ours["message"] == theirs["message"]
        plans = _plans(requests)
        answered = 0
        for plan in plans:
            status, ours = _post(worker.api_url, plan, path=PLAN)
            if status == 501:  # a plan the planner does not reproduce: refused, never guessed
                assert ours["code"] == 12, ours
                continue
            assert status == 200, (plan, ours)
            answered += 1
            _, theirs = _post(pdp, _effective(plan), path=PLAN)
            if _strip_plan(ours) != _strip_plan(theirs):
                mismatches.append(
                    f"plan {json.dumps(plan)}\n cerbos {json.dumps(_strip(theirs))}\n"
                    f" vigil  {json.dumps(_strip(ours))}"
                )
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:5])
    assert sum(len(e["actions"]) for r in requests for e in r["resources"]) > 900
    assert answered > len(plans) // 4, f"only {answered} of {len(plans)} plans answered"


PLAN = "/api/plan/resources"


def _strip_plan(response: dict[str, Any]) -> dict[str, Any]:
    """A plan without `cerbosCallId` (filters and `meta.filterDebug` compared as they are)."""
    return _strip(response)


def _plans(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PlanResources requests from the principals and resources of the check requests."""
    principals = {json.dumps(r["principal"], sort_keys=True): r["principal"] for r in requests}
    resources = {}
    for r in requests:
        for entry in r["resources"]:
            res = {k: v for k, v in entry["resource"].items() if k != "id"}
            resources[json.dumps(res, sort_keys=True)] = (res, entry["actions"])
    plans = []
    for n, principal in enumerate(principals.values()):
        for m, (res, actions) in enumerate(resources.values()):
            for i, action in enumerate(actions):
                plan: dict[str, Any] = {"principal": principal, "resource": res}
                plan["requestId"] = f"p{n}-{m}-{i}"
                if i % 2:
                    plan["actions"] = actions
                else:
                    plan["action"] = action
                plan["includeMeta"] = bool((n + m) % 2)
                plans.append(plan)
    return plans
