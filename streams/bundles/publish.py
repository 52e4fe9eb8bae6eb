"""Publish a policy bundle to the compacted bundle topic that every worker follows."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from streams.bundles.bundle import Bundle
from streams.kafka.admin import ensure_topics
from streams.kafka.security import PLAINTEXT, KafkaSecurity

BUNDLE_KEY = b"bundle"  # one key: compaction keeps only the newest bundle


async def push_bundle(
    bootstrap: str, topic: str, bundle: Bundle, *, security: KafkaSecurity = PLAINTEXT
) -> int:
    """Produce the bundle (partition 0, acks=all); return its offset."""
    await ensure_topics(bootstrap, [], 1, compacted=[topic], security=security)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_request_size=16 * 1024 * 1024,
        **security.client_kwargs(),
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, bundle.to_bytes(), key=BUNDLE_KEY, partition=0)
        return int(meta.offset)
    finally:
        await producer.stop()
