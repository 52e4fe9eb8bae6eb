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
from tests.pipeline.worker_harness import Worker
from tests.policy_tools.helpers import _cerbos_binary, _server
from tests.policy_tools.test_eval_vs_cerbos import GLOBALS, INVALID, _bundle, _requests, _strip
from tests.web.helpers import RISK


def _post(url: str, body: Any, content_type: str = "text/plain") -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{url}/api/check/resources",
        data=json.dumps(body).encode(),
        headers={"content-type": content_type},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
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
    binary = _cerbos_binary()
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
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:5])
    assert sum(len(e["actions"]) for r in requests for e in r["resources"]) > 900
