"""Read the workers' heartbeats (``vigil.workers``) for ``vigil policy status``."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.quirks import read_to_end


async def read_heartbeats(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    """The newest heartbeat of every worker id on the topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    beats: dict[str, dict[str, Any]] = {}

    def apply(record: Any) -> None:
        try:
            beat = orjson.loads(record.value)
            beats[str(beat["worker_id"])] = beat
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass  # not a heartbeat: the workers count these

    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        await read_to_end(consumer, [TopicPartition(topic, p) for p in sorted(partitions)], apply)
    finally:
        await consumer.stop()
    return beats
