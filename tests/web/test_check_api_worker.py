"""The check API of real ``vigil worker`` processes, driven by the unchanged Cerbos Python SDK.

One worker: live state reaches checks right after the signal is processed, spoofed signal
attributes change nothing, every checked action is audited on ``authz.decisions``. Two workers:
the one that does not own the principal's partition answers with the principal's state too (from
its changelog-fed replica).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from cerbos.sdk.client import CerbosClient
from cerbos.sdk.model import (
    PlanResourcesFilterKind,
    Principal,
    Resource,
    ResourceAction,
    ResourceDesc,
    ResourceList,
)

from streams.state.replica import partition_of
from tests.pipeline.worker_harness import PARTITIONS, Worker
from tests.web.helpers import signal

READ = Resource("d1", "document")
SPOOF_LOW = {
    "signals": {
        "risk": {"level": "LOW", "score": 0.0},
        "identity": {"account_status": "enabled", "credential_compromised": False},
        "session": {"revoked": False},
    }
}


def _employee(pid: str, attr: dict[str, Any] | None = None) -> Principal:
    return Principal(pid, roles={"employee"}, attr=attr or {})


async def _risk(worker: Worker, subject: str, level: str, n: int) -> None:
    await worker.produce(
        "risk", [signal(subject, "risk-level-change", {"current_level": level}, n)]
    )


async def test_sdk_live_state_spoofing_and_audit(start_worker: Callable[..., Worker]) -> None:
    worker = start_worker()
    await worker.start()
    with CerbosClient(worker.api_url, timeout_secs=5) as cerbos:
        assert cerbos.is_healthy()
        assert cerbos.is_allowed("read", _employee("alice"), READ)
        await _risk(worker, "user:alice", "HIGH", 1)
        await worker.wait_processed()
        # right after the risky signal: denied, whatever the caller claims about signals
        assert not cerbos.is_allowed("read", _employee("alice"), READ)
        assert not cerbos.is_allowed("read", _employee("alice", SPOOF_LOW), READ)
        plan = cerbos.plan_resources("read", _employee("alice"), ResourceDesc("document"))
        assert plan.filter is not None and plan.filter.kind == PlanResourcesFilterKind.ALWAYS_DENIED
        plan = cerbos.plan_resources(["read"], _employee("bob"), ResourceDesc("document"))
        assert plan.filter is not None
        assert plan.filter.kind == PlanResourcesFilterKind.ALWAYS_ALLOWED
        spoof_bad = {"signals": {"identity": {"credential_compromised": True}}}
        assert cerbos.is_allowed("read", _employee("bob", spoof_bad), READ)
        resources = ResourceList(
            [
                ResourceAction(Resource("d2", "document"), {"read", "write"}),
                ResourceAction(Resource("d3", "document"), {"read"}),
            ]
        )
        resp = cerbos.check_resources(_employee("bob"), resources, request_id="req-audit-1")
        resp.raise_if_failed()
        assert [r.resource.id for r in resp.results] == ["d2", "d3"]
        assert resp.get_resource("d2").is_allowed("read")
        assert not resp.get_resource("d2").is_allowed("write")
    assert worker.metric("vigil_check_spoofed_attributes_total") == 2
    deadline = time.monotonic() + 20
    while True:
        audited = [
            d for d in await worker.read("decisions") if d.get("request_id") == "req-audit-1"
        ]
        if len(audited) == 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert sorted(
        (d["request"]["resource"]["id"], d["actions"][0]["action"], d["effect"]) for d in audited
    ) == [
        ("d2", "read", "EFFECT_ALLOW"),
        ("d2", "write", "EFFECT_DENY"),
        ("d3", "read", "EFFECT_ALLOW"),
    ]
    assert {d["cause"]["kind"] for d in audited} == {"check"}
    assert len({d["call_id"] for d in audited}) == 1
    assert all(d["subject"] == "user:bob" and d["grant_id"] is None for d in audited)
    assert all(d["request"]["principal"]["attr"]["signals"]["risk"] for d in audited)
    assert worker.metric("vigil_check_audit_dropped_total") == 0


async def _balanced(workers: list[Worker], timeout: float = 60.0) -> None:
    """Until every worker owns one partition (the group has settled)."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [w.health()["partitions"] for w in workers]
        if all(len(p) == PARTITIONS // len(workers) for p in owned):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions never balanced: {owned}")
        await asyncio.sleep(0.3)


async def test_non_owner_answers_with_the_principals_state(
    start_worker: Callable[..., Worker],
) -> None:
    first = start_worker()
    await first.start()
    second = start_worker(like=first)
    await second.start()
    await _balanced([first, second])
    partition = partition_of(b"user:carol", PARTITIONS)
    owner, other = (first, second) if partition in first.health()["partitions"] else (second, first)
    assert partition not in other.health()["partitions"]
    with CerbosClient(other.api_url, timeout_secs=5) as cerbos:
        assert cerbos.is_healthy()
        assert cerbos.is_allowed("read", _employee("carol"), READ)
        await _risk(owner, "user:carol", "HIGH", 1)
        await owner.wait_processed()
        assert not CerbosClient(owner.api_url).is_allowed("read", _employee("carol"), READ)
        # the replica follows the changelog: visible within its (bounded, measured) staleness
        deadline = time.monotonic() + 15
        while cerbos.is_allowed("read", _employee("carol"), READ):
            assert time.monotonic() < deadline, "the non-owner never saw the risky signal"
            await asyncio.sleep(0.05)
        assert not cerbos.is_allowed("read", _employee("carol", SPOOF_LOW), READ)
        await _risk(owner, "user:carol", "LOW", 2)
        deadline = time.monotonic() + 15
        while not cerbos.is_allowed("read", _employee("carol"), READ):
            assert time.monotonic() < deadline, "the non-owner never saw the recovery"
            await asyncio.sleep(0.05)


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{url}/api/check/resources", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def _records_until(
    worker: Worker, topic: str, match: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in await worker.read(topic) if match(r)]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def test_watched_check_becomes_a_grant_the_owner_revokes(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    await worker.start()
    watch = {"annotations": {"vigil.watch": {"grant_id": "w-dave", "ttl_seconds": 600}}}
    body = {
        "principal": {"id": "dave", "roles": ["employee"]},
        "resources": [{"resource": {"kind": "document", "id": "d1"}, "actions": ["read", "write"]}],
        "requestContext": watch,
    }
    status, answer = _post(worker.api_url, body)
    assert status == 200, answer
    assert answer["results"][0]["actions"] == {"read": "EFFECT_ALLOW", "write": "EFFECT_DENY"}
    issued = await _records_until(
        worker,
        "decisions",
        lambda d: d["grant_id"] == "w-dave" and d["cause"]["kind"] == "grant-issued",
    )
    assert [a["action"] for a in issued[0]["actions"]] == ["read"]  # denied write: not watched
    assert issued[0]["effect"] == "EFFECT_ALLOW"
    await _risk(worker, "user:dave", "HIGH", 1)
    revoked = await _records_until(worker, "revocations", lambda r: r["grant_id"] == "w-dave")
    assert revoked and revoked[0]["cause"]["kind"] == "signal"
    # a watched check whose actions are all denied creates no grant
    body["requestContext"] = {"annotations": {"vigil.watch": {"grant_id": "w-x", "ttl_seconds": 5}}}
    status, answer = _post(worker.api_url, body)
    assert status == 200 and answer["results"][0]["actions"]["read"] == "EFFECT_DENY"
    await worker.wait_processed()
    grant_ids = {g.get("grant_id") for g in await worker.read("grants")}
    assert "w-dave" in grant_ids and "w-x" not in grant_ids
