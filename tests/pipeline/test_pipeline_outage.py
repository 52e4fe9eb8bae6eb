"""Outages back off in place: a real worker process whose schema registry goes away and comes
back keeps running (same pid), says so on /healthz and in metrics, and then processes the record
it was holding exactly once, without dead-lettering it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams.codecs import OutputEncoder
from tests.pipeline.worker_harness import Worker
from tests.schema_registry import FakeRegistry

T0 = 1795946400000  # 2026-11-29T10:00:00Z


def grant_event(gid: str, user: str) -> dict[str, Any]:
    """A GrantEvent in the codec's JSON shape (times as epoch ms)."""
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": user, "type": "user", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": f"doc-{gid}", "attr": {"owner": "someone"}},
        "actions": ["read"],
        "session_id": "s1",
        "device_id": "D1",
        "issued_at": T0,
        "expires_at": 4_070_908_800_000,  # 2099
        "on_behalf_of": [],
    }


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    with reg.serving():
        yield reg


async def wait_until(what: str, check: Callable[[], bool], worker: Worker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout}s\n{worker.log()}")
        await asyncio.sleep(0.2)


async def test_registry_outage_backs_off_in_place_then_processes_once(
    start_worker: Callable[..., Worker], registry: FakeRegistry
) -> None:
    worker = start_worker()
    worker.extra_env["VIGIL_SCHEMA_REGISTRY_URL"] = registry.url
    await worker.start()
    assert worker.proc is not None
    pid = worker.proc.pid

    user = f"olga-{uuid.uuid4().hex[:6]}"
    gid = f"{user}-g1"
    # Framed with a schema id the worker has never fetched; then the registry goes away.
    value = OutputEncoder("GrantEvent", registry_url=registry.url, topic="t").encode(
        grant_event(gid, user)
    )
    registry.stop()
    await worker.produce_raw("grants", f"user:{user}".encode(), value)

    await wait_until(
        "no backoff", lambda: worker.metric("vigil_backoff_total") >= 2, worker, timeout=60
    )
    status, body = worker.health_status()
    assert status == 503
    assert body["status"] == "degraded"
    assert any("schema registry unavailable" in r for r in body["reasons"]), body
    assert worker.metric("vigil_degraded") == 1
    assert worker.metric("vigil_deadletters_total") == 0
    assert worker.proc.poll() is None and worker.proc.pid == pid

    registry.start()  # same port, same schemas
    await worker.wait_processed(timeout=60)
    assert worker.proc.poll() is None and worker.proc.pid == pid  # backed off, never restarted
    decisions = [d for d in await worker.read("decisions") if d["grant_id"] == gid]
    assert len(decisions) == 1, decisions  # processed, once
    assert decisions[0]["effect"] == "EFFECT_ALLOW"
    assert await worker.read("deadletter") == []  # a good record is never dead-lettered
    status, body = worker.health_status()
    assert (status, body["status"], body["reasons"]) == (200, "ok", [])
    assert worker.metric("vigil_degraded") == 0
