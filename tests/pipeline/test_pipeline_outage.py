"""Outages back off in place: a real worker process whose schema registry or broker goes away and
comes back keeps running (same pid), says so on /healthz and in metrics, and then processes the
record it was holding exactly once, without dead-lettering it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.codecs import OutputEncoder
from tests.kafka_proxy import KafkaProxy, ProxiedBroker
from tests.pipeline.test_pipeline_e2e import device_signal, grant
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


@dataclass
class ProxiedWorker:
    """A worker behind a proxy in front of its own broker, holding one compliant grant."""

    proxy: KafkaProxy
    broker: ProxiedBroker
    worker: Worker
    user: str
    pid: int


@asynccontextmanager
async def proxied_worker(tmp_path: Path, name: str) -> AsyncIterator[ProxiedWorker]:
    proxy = KafkaProxy()
    broker = ProxiedBroker(advertised_port=proxy.port)
    broker.start()
    proxy.start(broker.port)
    worker = Worker(f"127.0.0.1:{proxy.port}", tmp_path / "data")
    try:
        await worker.start()
        assert worker.proc is not None
        user = f"{name}-{uuid.uuid4().hex[:6]}"
        await worker.produce(
            "device", [device_signal(f"{user}-ok", user, "D1", "compliant", "2026-11-29T08:00:00Z")]
        )
        await worker.produce("grants", [grant(f"{user}-g1", user, ["read", "write"], "D1")])
        await worker.wait_processed()
        yield ProxiedWorker(proxy, broker, worker, user, worker.proc.pid)
    finally:
        worker.stop()
        proxy.stop()
        broker.stop()


async def test_broker_refusing_produce_backs_off_then_resumes(tmp_path: Path) -> None:
    """The worker's produce path fails (the proxy in front of a separate embedded broker drops
    every produce request for the worker's output topics): the worker backs off in place, says
    so, and once produce works again the revocation comes out exactly once."""
    async with proxied_worker(tmp_path, "pia") as setup:
        proxy, worker = setup.proxy, setup.worker
        outputs = ("decisions", "revocations", "deadletter", "changelog")
        proxy.blocked_topics = frozenset(worker.topics[name] for name in outputs)
        bad = device_signal(
            f"{setup.user}-bad", setup.user, "D1", "not-compliant", "2026-11-29T11:00:00Z"
        )
        await worker.produce("device", [bad])
        # aiokafka retries a batch until its request timeout (40 s) before the send fails
        await wait_until(
            "no backoff", lambda: worker.metric("vigil_backoff_total") >= 1, worker, timeout=150
        )
        assert proxy.refused >= 1
        status, body = worker.health_status()
        assert status == 503 and body["status"] == "degraded"
        assert any("broker unavailable" in r for r in body["reasons"]), body
        assert worker.proc is not None and worker.proc.poll() is None

        proxy.blocked_topics = frozenset()
        await worker.wait_processed(timeout=150)
        assert worker.proc.poll() is None and worker.proc.pid == setup.pid  # never restarted
        revocations = [
            r for r in await worker.read("revocations") if r["subject"] == f"user:{setup.user}"
        ]
        assert [r["grant_id"] for r in revocations] == [f"{setup.user}-g1"]  # once, not lost
        by_signal = [
            d
            for d in await worker.read("decisions")
            if d["cause"].get("event_id") == f"{setup.user}-bad"
        ]
        assert len(by_signal) == 1, by_signal
        # Metrics count what was persisted: the failed attempts are not counted again.
        assert worker.metric("vigil_revocations_total") == 1
        assert worker.metric("vigil_decisions_total") == 2  # grant issued, then the signal
        assert worker.metric("vigil_active_grants") == 0
        status, body = worker.health_status()
        assert (status, body["status"]) == (200, "ok")


async def test_unreachable_broker_is_reported_and_survived(tmp_path: Path) -> None:
    """The proxy in front of a separate embedded broker closes every connection and refuses new
    ones (the broker keeps its data): the idle worker stays up, /healthz says the broker is
    unreachable, and after the broker is back a new signal revokes exactly once."""
    async with proxied_worker(tmp_path, "ida") as setup:
        worker = setup.worker
        setup.proxy.stop()
        await wait_until(
            "/healthz still ok",
            lambda: worker.health_status()[1]["status"] == "degraded",
            worker,
            timeout=60,
        )
        status, body = worker.health_status()
        assert status == 503
        assert any(r.startswith("broker unreachable since") for r in body["reasons"]), body
        assert worker.metric("vigil_degraded") == 1

        setup.proxy.start(setup.broker.port)
        user = setup.user
        bad = device_signal(f"{user}-bad", user, "D1", "not-compliant", "2026-11-29T11:00:00Z")
        await worker.produce("device", [bad])
        await worker.wait_processed(timeout=120)
        assert worker.proc is not None and worker.proc.poll() is None
        assert worker.proc.pid == setup.pid  # never restarted
        revocations = [
            r for r in await worker.read("revocations") if r["subject"] == f"user:{user}"
        ]
        assert [r["grant_id"] for r in revocations] == [f"{user}-g1"]
        await wait_until(
            "/healthz still degraded",
            lambda: worker.health_status()[1]["status"] == "ok",
            worker,
            timeout=60,
        )
