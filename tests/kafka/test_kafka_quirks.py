"""Tansu's ListOffsets bug and ``streams.kafka.quirks``' fix, on the embedded broker.

Real Kafka does not have the bug; there ``end_offsets`` equals aiokafka's and these tests'
"plain is short" assertion would not hold, which is why they are marked for the embedded broker.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from streams.kafka.quirks import end_offsets, read_to_end

pytestmark = pytest.mark.broker

BATCHES = 5
PER_BATCH = 100


async def produce_batches(bootstrap: str, topic: str, partition: int, batches: int) -> None:
    """Write ``batches`` record batches of PER_BATCH records, so the log has several batches."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for b in range(batches):
            batch = producer.create_batch()
            for i in range(PER_BATCH):
                n = b * PER_BATCH + i
                assert batch.append(key=b"k%d" % n, value=b"v%d" % n, timestamp=None)
            batch.close()
            await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()


async def new_consumer(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    return consumer


async def test_end_offsets_exact_where_listoffsets_is_short(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("quirks", partitions=3)
    await produce_batches(broker, topic, 0, BATCHES)
    await produce_batches(broker, topic, 1, 1)
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer = await new_consumer(broker)
    try:
        plain = await consumer.end_offsets(tps)
        ours = await end_offsets(consumer, tps)
    finally:
        await consumer.stop()
    total = BATCHES * PER_BATCH
    # The bug as measured: base offset of the last batch + 1. If this starts failing, Tansu was
    # fixed (or this is not Tansu) and quirks.end_offsets is no longer needed there.
    assert plain[tps[0]] == (BATCHES - 1) * PER_BATCH + 1 < total
    assert plain[tps[1]] == 1
    assert ours == {tps[0]: total, tps[1]: PER_BATCH, tps[2]: 0}


async def test_end_offsets_leaves_consumer_state_alone(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("quirks-state")
    await produce_batches(broker, topic, 0, 3)
    tp = TopicPartition(topic, 0)
    consumer = await new_consumer(broker)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 10)
        first = await consumer.getmany(tp, timeout_ms=2000, max_records=5)
        assert [r.offset for r in first[tp]] == [10, 11, 12, 13, 14]
        assert await end_offsets(consumer, [tp]) == {tp: 300}
        assert consumer.assignment() == {tp}
        assert await consumer.position(tp) == 15
        after = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
        assert [r.offset for r in after[tp]] == [15]
    finally:
        await consumer.stop()


async def test_end_offsets_tracks_new_batches(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("quirks-grow")
    tp = TopicPartition(topic, 0)
    consumer = await new_consumer(broker)
    try:
        assert await end_offsets(consumer, [tp]) == {tp: 0}
        await produce_batches(broker, topic, 0, 1)
        assert await end_offsets(consumer, [tp]) == {tp: PER_BATCH}
        await produce_batches(broker, topic, 0, 2)
        assert await end_offsets(consumer, [tp]) == {tp: 3 * PER_BATCH}
        assert await end_offsets(consumer, []) == {}
    finally:
        await consumer.stop()


async def test_read_to_end_replays_every_record(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("quirks-replay", partitions=2)
    await produce_batches(broker, topic, 0, BATCHES)
    await produce_batches(broker, topic, 1, 2)
    tps = [TopicPartition(topic, p) for p in range(2)]
    seen: dict[int, list[int]] = {0: [], 1: []}

    async def handler(record: ConsumerRecord[bytes, bytes]) -> None:
        seen[record.partition].append(record.offset)

    consumer = await new_consumer(broker)
    try:
        positions = await read_to_end(consumer, tps, handler, timeout=30)
        assert positions == {tps[0]: BATCHES * PER_BATCH, tps[1]: 2 * PER_BATCH}
        assert seen[0] == list(range(BATCHES * PER_BATCH))
        assert seen[1] == list(range(2 * PER_BATCH))

        # From given offsets, sync handler; an already-complete partition is not read again.
        seen_sync: list[tuple[int, int]] = []
        positions = await read_to_end(
            consumer,
            tps,
            lambda r: seen_sync.append((r.partition, r.offset)),
            start={tps[0]: 450, tps[1]: 2 * PER_BATCH},
        )
        assert seen_sync == [(0, o) for o in range(450, 500)]
        assert positions[tps[1]] == 2 * PER_BATCH
    finally:
        await consumer.stop()


async def test_read_to_end_reports_progress_to_the_true_end(broker: str, topic_factory) -> None:
    """``progress`` (vigil_changelog_restore_remaining_records) counts down from the fetch
    high watermark, never from Tansu's short ListOffsets, and ends at nothing left."""
    (topic,) = await topic_factory("quirks-progress", partitions=1)
    await produce_batches(broker, topic, 0, BATCHES)
    tp = TopicPartition(topic, 0)
    reports: list[dict[TopicPartition, int]] = []
    consumer = await new_consumer(broker)
    try:
        await read_to_end(consumer, [tp], lambda r: None, timeout=30, progress=reports.append)
    finally:
        await consumer.stop()
    assert reports[0] == {tp: BATCHES * PER_BATCH}
    assert reports[-1] == {}
    remaining = [r[tp] for r in reports[:-1]]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] > 0


async def test_read_to_end_times_out(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("quirks-timeout")
    await produce_batches(broker, topic, 0, 2)
    tp = TopicPartition(topic, 0)

    async def slow(record: ConsumerRecord[bytes, bytes]) -> None:
        await asyncio.sleep(0.01)

    consumer = await new_consumer(broker)
    try:
        with pytest.raises(TimeoutError):
            await read_to_end(consumer, [tp], slow, timeout=0.3, max_records=10)
    finally:
        await consumer.stop()
