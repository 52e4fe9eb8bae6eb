"""Signal → revocation and signal → decision latency at a paced offered load.

The producer records the wall-clock send time of every signal's ``event_id``; assigned consumers
(no group, ``fetch_max_wait_ms`` 5) on the decision and revocation topics decode each record with
``streams.codecs.decode_any`` and take receive time − send time of ``cause.event_id``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.events import World
from bench.kafka import producer
from streams.codecs import decode_any
from streams.kafka.security import PLAINTEXT, KafkaSecurity


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds (nearest-rank)."""
    if not values:
        return {}
    v = sorted(values)

    def rank(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 1)

    return {"p50_ms": rank(0.50), "p90_ms": rank(0.90), "p99_ms": rank(0.99), "max_ms": rank(1.0)}


class OutputWatcher:
    """Reads one output topic from its end and matches records to sent signals."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        sent: dict[str, float],
        *,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.topic = topic
        self.sent = sent
        self.latencies: list[float] = []  # one per matched record
        self.first: dict[str, float] = {}  # first record per cause event
        self.other = 0
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **security.client_kwargs(),
        )
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        # Tansu's ListOffsets is one batch short: old records may come back; they never match.
        await self.consumer.seek_to_end(*self.tps)
        for tp in self.tps:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        sent = self.sent
        while True:
            data = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for messages in data.values():
                for m in messages:
                    _, rec = decode_any(m.value, m.headers)
                    eid = rec.get("cause", {}).get("event_id")
                    at = sent.get(eid)
                    if at is None:
                        self.other += 1
                        continue
                    self.latencies.append(now - at)
                    self.first.setdefault(eid, now - at)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.consumer.stop()


async def paced_run(
    bootstrap: str,
    topics: dict[str, str],
    world: World,
    *,
    rate: int,
    seconds: float,
    noop_subjects: range,
    fresh_subjects: range,
    revoke_share: float,
    toggle_share: float,
    drained: Callable[[int], Awaitable[Any]] | None = None,
    settle: float = 1.0,
    cross_subjects: range = range(0),
    cross_share: float = 0.0,
) -> dict[str, Any]:
    """Offer ``rate`` signals/s for ``seconds``: ``revoke_share`` of them turn a fresh subject's
    device not-compliant (→ its read+write grants are revoked), ``toggle_share`` change risk or
    zone (→ decisions only), ``cross_share`` disable the account of a user an agent acts for
    (``cross_subjects``, loaded with ``World.delegations``: → the agent's grant, on the agent's
    partition, is revoked through the subscriptions topic), the rest are no-op telemetry.
    ``revocation.same_subject`` and ``revocation.cross_subject`` are the first-revocation
    latencies of the two revoking kinds.

    ``drained(sent)`` waits until the worker has consumed every signal, so an overloaded run
    reports its real tail instead of dropping the late outputs.
    """
    rng = random.Random(7)
    sent: dict[str, float] = {}
    kinds: dict[str, str] = {}
    watchers = {
        "revocation": OutputWatcher(bootstrap, topics["revocations"], 4, sent),
        "decision": OutputWatcher(bootstrap, topics["decisions"], 4, sent),
    }
    for w in watchers.values():
        await w.start()
    prod = producer(bootstrap, linger_ms=2)
    await prod.start()
    fresh = iter(fresh_subjects)
    cross = iter(cross_subjects)
    tick = 0.01
    per_tick = rate * tick
    owed = 0.0
    started = time.perf_counter()
    next_at = started
    lagging_ticks = 0
    try:
        while time.perf_counter() - started < seconds:
            owed += per_tick
            while owed >= 1:
                owed -= 1
                r = rng.random()
                if r < revoke_share:
                    kind, subject = "revoke", next(fresh)
                elif r < revoke_share + cross_share:
                    kind, subject = "cross", next(cross)
                elif r < revoke_share + cross_share + toggle_share:
                    kind, subject = "toggle", rng.choice(noop_subjects)
                else:
                    kind, subject = "noop", rng.choice(noop_subjects)
                rec = world.live(subject, kind, rng)
                kinds[rec.event_id] = kind
                sent[rec.event_id] = time.time()
                await prod.send(topics[rec.kind], rec.value, key=rec.key, partition=rec.partition)
            next_at += tick
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lagging_ticks += 1
        elapsed = time.perf_counter() - started
        await prod.flush()
        if drained is not None:  # an overloaded worker is still working off its backlog
            await drained(len(sent))
        await asyncio.sleep(settle)
    finally:
        await prod.stop()
        for w in watchers.values():
            await w.stop()
    names = ("revoke", "cross", "toggle", "noop")
    counts = {k: sum(1 for v in kinds.values() if v == k) for k in names}
    result: dict[str, Any] = {
        "offered_rate": rate,
        "achieved_send_rate": round(len(sent) / elapsed, 1),
        "seconds": round(elapsed, 1),
        "signals_sent": len(sent),
        "signals_by_kind": counts,
        "producer_late_ticks": lagging_ticks,
    }
    for name, w in watchers.items():
        result[name] = {
            "records": len(w.latencies),
            "signals_with_output": len(w.first),
            "unmatched_records": w.other,
            "per_record": percentiles(w.latencies),
            "first_per_signal": percentiles(list(w.first.values())),
        }
    first = watchers["revocation"].first
    revoking = [e for e, k in kinds.items() if k == "revoke"]
    crossing = [e for e, k in kinds.items() if k == "cross"]
    result["revocation"]["revoking_signals_without_revocation"] = sum(
        1 for e in revoking if e not in first
    )
    result["revocation"]["same_subject"] = percentiles([first[e] for e in revoking if e in first])
    if crossing:
        result["revocation"]["cross_subject"] = percentiles(
            [first[e] for e in crossing if e in first]
        )
        result["revocation"]["cross_signals_without_revocation"] = sum(
            1 for e in crossing if e not in first
        )
    return result
