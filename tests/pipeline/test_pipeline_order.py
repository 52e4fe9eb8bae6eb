"""Order and keys end to end: a real worker process on the embedded broker.

A backlog produced before the worker starts must be applied in the order it was produced,
whatever order the fetches come back in (invariant 9); records whose key is not their subject's
are dead-lettered, not applied on the wrong partition.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.pipeline.test_pipeline_e2e import device_signal, grant, of
from tests.pipeline.worker_harness import Worker

BACKLOG = 2000
ROUNDS = 4


async def test_a_backlog_of_signals_then_grants_revokes_nothing(
    start_worker: Callable[..., Worker],
) -> None:
    """Devices reported compliant, then grants that need compliance, all produced before the
    worker starts. The grants come after the signals, so none may be judged without them; a
    merge that follows fetch order instead would revoke (for good) those whose batch came first.
    The fault depends on fetch order, so it runs several times on fresh topics."""
    outcomes, notes = [], []
    for _ in range(ROUNDS):
        worker = start_worker()
        await worker.create_topics()
        run = uuid.uuid4().hex[:6]
        users = [f"bl{run}-{i}" for i in range(BACKLOG)]
        await worker.produce(
            "device",
            [device_signal(f"{u}-ok", u, "D1", "compliant", "2026-11-29T08:00:00Z") for u in users],
        )
        await worker.produce("grants", [grant(f"{u}-g", u, ["read", "write"], "D1") for u in users])
        await worker.start()
        await worker.wait_processed(timeout=120)
        revoked = {r["grant_id"] for r in await worker.read("revocations")}
        # at least once: a rebalance may repeat a decision (same id), never change it
        issued = {
            d["decision_id"]: d["effect"]
            for d in await worker.read("decisions")
            if d["cause"]["kind"] == "grant-issued"
        }
        outcomes.append((len(revoked), dict(Counter(issued.values()))))
        notes.append((worker.metric("vigil_merge_idle_expired_total"), worker.log()[-1500:]))
        worker.stop()
    assert outcomes == [(0, {"EFFECT_ALLOW": BACKLOG})] * ROUNDS, (outcomes, notes)


async def test_unkeyed_and_mis_keyed_records_are_dead_lettered(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    await worker.start()
    user = f"key-{uuid.uuid4().hex[:6]}"
    ok = device_signal(f"{user}-ok", user, "D1", "compliant", "2026-11-29T08:00:00Z")
    await worker.produce("device", [ok])
    await worker.produce("grants", [grant(f"{user}-g", user, ["read", "write"], "D1")])
    await worker.wait_processed()
    # A non-compliance signal without a key, and one keyed for somebody else: neither may land.
    bad = device_signal(f"{user}-bad", user, "D1", "not-compliant", "2026-11-29T10:00:00Z")
    body = json.dumps(bad).encode()
    await worker.produce_raw("device", None, body)
    await worker.produce_raw("device", b"user:somebody-else", body)
    await worker.wait_processed()
    assert of(await worker.read("revocations"), user) == []
    dead = [d for d in await worker.read("deadletter") if d["error"] == "key-mismatch"]
    assert len(dead) == 2
    assert {d["key"] for d in dead} == {None, b"user:somebody-else"}
    assert all(f"user:{user}" in d["reason"] for d in dead)
    assert worker.metric("vigil_deadletters_total") >= 2


async def produce_at(worker: Worker, topic: str, records: list[tuple[dict[str, Any], int]]) -> None:
    """Produce ``(record, timestamp_ms)`` pairs keyed by subject, in this (offset) order."""
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, linger_ms=50)
    await producer.start()
    try:
        futures = [
            await producer.send(
                worker.topics[topic],
                json.dumps(record).encode(),
                key=f"user:{record['principal']['id']}".encode(),
                timestamp_ms=ts,
            )
            for record, ts in records
        ]
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()


async def test_a_release_with_an_earlier_timestamp_than_its_issuance_still_ends_the_grant(
    start_worker: Callable[..., Worker],
) -> None:
    """issued then released in the log, but the release's producer clock is behind: offsets
    decide, the grant is released and a later signal finds nothing to revoke."""
    worker = start_worker()
    await worker.create_topics()
    user = f"rel-{uuid.uuid4().hex[:6]}"
    issued = grant(f"{user}-g", user, ["read"], "D1")
    released = {"op": "released", "grant_id": f"{user}-g", "principal": issued["principal"]}
    now = int(time.time() * 1000)
    await produce_at(worker, "grants", [(issued, now + 60_000), (released, now)])
    await worker.start()
    await worker.wait_processed()
    high = {
        "event_id": f"{user}-high",
        "type": "risk-level-change",
        "subject": {"type": "user", "id": user},
        "source": "ueba",
        "event_time": "2026-11-29T12:00:00Z",
        "attributes": {"current_level": "HIGH"},
    }
    await worker.produce("risk", [high])
    await worker.wait_processed()
    assert of(await worker.read("revocations"), user) == []
    causes = [d["cause"]["kind"] for d in of(await worker.read("decisions"), user)]
    assert causes == ["grant-issued", "release"]
