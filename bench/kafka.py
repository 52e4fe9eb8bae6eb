"""Kafka helpers for the benchmarks: fast batch producing and the raw aiokafka baselines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.events import Out
from streams.kafka.security import PLAINTEXT, KafkaSecurity

BATCH_BYTES = 256 * 1024


def producer(
    bootstrap: str, linger_ms: int = 20, *, security: KafkaSecurity = PLAINTEXT
) -> AIOKafkaProducer:
    """The load-generator producer: the PLATFORM-NOTES settings (linger 20 ms, 256 KiB)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        max_batch_size=BATCH_BYTES,
        max_request_size=4 * 1024 * 1024,
        acks=1,
        **security.client_kwargs(),
    )


async def produce_batched(
    prod: AIOKafkaProducer, records: Iterable[Out], topics: Mapping[str, str]
) -> int:
    """Produce pre-encoded records through explicit per-partition batches; wait for all acks.

    Bypasses ``send()``'s per-record partitioner and future so the generator stays cheap and
    the broker/worker get the CPU (``kind`` of each record is mapped to a topic by ``topics``).
    """
    batches: dict[tuple[str, int], Any] = {}
    futures: list[asyncio.Future[Any]] = []
    count = 0
    for rec in records:
        topic = topics[rec.kind]
        slot = (topic, rec.partition)
        batch = batches.get(slot)
        if batch is None:
            batch = batches[slot] = prod.create_batch()
        if batch.append(key=rec.key, value=rec.value, timestamp=None) is None:
            futures.append(await prod.send_batch(batch, topic, partition=rec.partition))
            batch = batches[slot] = prod.create_batch()
            batch.append(key=rec.key, value=rec.value, timestamp=None)
        count += 1
        if len(futures) > 64:
            await asyncio.gather(*futures)
            futures.clear()
    for (topic, partition), batch in batches.items():
        if batch.record_count():
            futures.append(await prod.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)
    return count


async def baseline_produce(
    bootstrap: str, topic: str, records: list[Out], *, security: KafkaSecurity = PLAINTEXT
) -> float:
    """Raw ``producer.send()`` per record (keyed, default partitioner): events/s to all acks."""
    prod = producer(bootstrap, security=security)
    await prod.start()
    try:
        started = time.perf_counter()
        futures = [await prod.send(topic, value=r.value, key=r.key) for r in records]
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - started)
    finally:
        await prod.stop()


async def baseline_consume(
    bootstrap: str,
    topic: str,
    partitions: int,
    expected: int,
    decode: bool,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> float:
    """Assigned consumer, ``getmany`` from the beginning, optionally ``orjson.loads`` each value."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **security.client_kwargs(),
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        loads = orjson.loads
        while seen < expected:
            data = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in data.values():
                seen += len(messages)
                if decode:
                    for m in messages:
                        loads(m.value)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()
