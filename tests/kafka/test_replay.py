"""``streams.kafka.replay``: raw concurrent fetch loops read every partition to its true end
(past Tansu's short ListOffsets), from a start offset inside a record batch, in offset order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition

from streams.kafka.replay import Record, replay
from tests.kafka.test_kafka_quirks import BATCHES, PER_BATCH, new_consumer, produce_batches

pytestmark = pytest.mark.broker


async def test_replay_reads_every_partition_to_the_end_from_its_start(
    broker: str, topic_factory
) -> None:
    (topic,) = await topic_factory("replay", partitions=3)
    await produce_batches(broker, topic, 0, BATCHES)
    await produce_batches(broker, topic, 1, 2)
    tps = [TopicPartition(topic, p) for p in range(3)]
    seen: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {0: [], 1: [], 2: []}
    left: list[dict[TopicPartition, int]] = []

    def apply(tp: TopicPartition, records: Sequence[Record]) -> None:
        seen[tp.partition].extend((r.offset, r.key, r.value) for r in records)

    consumer = await new_consumer(broker)
    try:
        # 250 is inside the third batch of partition 0: the fetch returns the whole batch
        start = {tps[0]: 250}
        positions = await replay(consumer, tps, apply, start=start, progress=left.append)
    finally:
        await consumer.stop()
    total = BATCHES * PER_BATCH
    assert positions == {tps[0]: total, tps[1]: 2 * PER_BATCH, tps[2]: 0}
    assert seen[0] == [(n, b"k%d" % n, b"v%d" % n) for n in range(250, total)]
    assert seen[1] == [(n, b"k%d" % n, b"v%d" % n) for n in range(2 * PER_BATCH)]
    assert seen[2] == []
    assert left[0] == {tps[0]: total - 250, tps[1]: 2 * PER_BATCH}
    assert left[-1] == {}


async def test_replay_gives_the_event_loop_a_turn_after_every_batch(
    broker: str, topic_factory
) -> None:
    """A response can hold a whole partition: applying it must not block the loop (a worker's
    health endpoint went unanswered for over 10 s during a 1M-subject restore)."""
    (topic,) = await topic_factory("replay-turns", partitions=1)
    await produce_batches(broker, topic, 0, BATCHES)  # one response holds all five batches
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    seen: list[int] = []
    running = asyncio.create_task(ticker())
    consumer = await new_consumer(broker)
    try:
        await replay(consumer, [TopicPartition(topic, 0)], lambda tp, records: seen.append(ticks))
    finally:
        running.cancel()
        await consumer.stop()
    assert len(seen) == BATCHES
    assert all(a < b for a, b in zip(seen, seen[1:], strict=False))  # the loop ran in between
