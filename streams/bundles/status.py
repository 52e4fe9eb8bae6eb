"""Read the workers' heartbeats (``vigil.workers``) and the bundle topic for
``vigil policy status``."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.bundles.bundle import BundleError, Confirmation, parse_record
from streams.kafka.quirks import read_to_end
from streams.kafka.security import PLAINTEXT, KafkaSecurity


async def read_heartbeats(
    bootstrap: str, topic: str, *, security: KafkaSecurity = PLAINTEXT
) -> dict[str, dict[str, Any]]:
    """The newest heartbeat of every worker id on the topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **security.client_kwargs(),
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


async def read_bundle_topic(
    bootstrap: str, topic: str, *, security: KafkaSecurity = PLAINTEXT
) -> dict[str, Any]:
    """The newest bundle record on the topic (digest, pushed_at, source, key_id; not verified:
    this is what an operator sees, the workers verify) and the digests confirmed there."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **security.client_kwargs(),
    )
    await consumer.start()
    out: dict[str, Any] = {"newest_bundle": None, "confirmed": []}

    def apply(record: Any) -> None:
        try:
            parsed = parse_record(record.value)
        except BundleError:
            return
        if isinstance(parsed, Confirmation):
            out["confirmed"].append(parsed.digest)
        else:
            out["newest_bundle"] = {
                "digest": parsed.digest,
                "pushed_at": parsed.pushed_at,
                "source": parsed.source,
                "key_id": parsed.key_id,
                "offset": record.offset,
            }

    try:
        await read_to_end(consumer, [TopicPartition(topic, 0)], apply)
    finally:
        await consumer.stop()
    return out
