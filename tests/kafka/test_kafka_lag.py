"""``streams.kafka.lag.has_unfetched`` on the embedded broker: what the merge waits for."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.lag import has_unfetched
from tests.conftest import TopicFactory
from tests.kafka_helpers import produce_json

pytestmark = pytest.mark.broker


async def test_a_partition_lags_until_everything_up_to_its_high_watermark_is_handed_out(
    broker: str, topic_factory: TopicFactory
) -> None:
    topic, other = await topic_factory("signals.device", "authz.grants", partitions=1)
    await produce_json(broker, topic, [{"n": i} for i in range(5)], key_fn=None)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert has_unfetched(consumer, tp)  # not assigned: unknown, so wait
        consumer.assign([tp])
        assert has_unfetched(consumer, tp)  # no fetch response yet: unknown
        got = []
        while len(got) < 5:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=2)).values():
                got.extend(records)
                if len(got) < 5:
                    assert has_unfetched(consumer, tp)  # the high watermark says 5
        assert not has_unfetched(consumer, tp)  # caught up
        assert has_unfetched(consumer, TopicPartition(other, 0))  # someone else's, or not yet
    finally:
        await consumer.stop()
