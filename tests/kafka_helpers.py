"""Kafka helpers shared by every test that talks to the embedded broker.

Import them (``from tests.kafka_helpers import produce_json, consume_all``) rather than
rewriting producers/consumers per test: ``consume_all`` reads to the *true* end of a topic,
which on Tansu is not what ``end_offsets()`` says (see ``streams.kafka.quirks``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from streams.kafka.quirks import end_offsets

KeyFn = Callable[[Mapping[str, Any]], str | bytes | None]


def unique_name(prefix: str) -> str:
    """A topic name no other test uses (the broker lives for the whole session)."""
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def subject_key(record: Mapping[str, Any]) -> str | None:
    """The canonical key of a signal (``subject``) or grant (``principal``): ``type:id``."""
    for field, default_type in (("subject", None), ("principal", "user")):
        ref = record.get(field)
        if isinstance(ref, Mapping) and "id" in ref:
            kind = ref.get("type") or default_type
            if kind:
                return f"{kind}:{ref['id']}"
    return None


def _key_bytes(key: str | bytes | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return key.encode()


async def produce_json(
    bootstrap: str,
    topic: str,
    records: Iterable[Mapping[str, Any]],
    key_fn: KeyFn | None = subject_key,
    *,
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] = (("content-type", b"application/json"),),
) -> int:
    """Produce ``records`` as JSON with keys from ``key_fn``; return how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for record in records:
            key = _key_bytes(key_fn(record)) if key_fn else None
            value = json.dumps(record, separators=(",", ":")).encode()
            futures.append(
                await producer.send(
                    topic, value, key=key, partition=partition, headers=list(headers)
                )
            )
        await producer.flush()
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topic: str,
    timeout: float = 10.0,
    expected: int | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` (all partitions, no consumer group), in per-partition order.

    With ``expected``: wait (up to ``timeout``) until at least that many records are there, for
    outputs that another process is still producing. Without: read to the true end as of now.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions after {timeout}s")
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        ends = await end_offsets(consumer, tps)
        while True:
            if expected is None:
                done = all([await consumer.position(tp) >= ends[tp] for tp in tps])
            else:
                done = len(out) >= expected
            if done:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{topic}: got {len(out)} records, expected "
                    f"{expected if expected is not None else ends} after {timeout}s"
                )
            batch = await consumer.getmany(timeout_ms=int(min(left, 0.2) * 1000))
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()


def values(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[Any]:
    """The JSON-decoded values of ``records``."""
    return [json.loads(r.value) if r.value is not None else None for r in records]
