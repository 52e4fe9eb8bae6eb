"""``ensure_topics`` on the embedded broker: explicit configs, idempotence, Tansu auto-creation."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafka.admin import DEFAULT_RETENTION_MS, ensure_topics
from tests.kafka_helpers import unique_name

pytestmark = pytest.mark.broker


async def describe(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """``{topic: (partition count, explicit configs)}``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        meta = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
        configs = {
            name: {e[0]: e[1] for e in entries}
            for r in responses
            for _code, _msg, _type, name, entries in r.resources
        }
        return {n: (meta[n], configs[n]) for n in names}
    finally:
        await admin.close()


async def test_creates_with_explicit_configs(broker: str) -> None:
    plain, other, changelog = (unique_name(p) for p in ("adm.plain", "adm.other", "adm.log"))
    await ensure_topics(broker, [plain, other], 3, compacted=[changelog])
    got = await describe(broker, [plain, other, changelog])
    assert got[plain] == (
        3,
        {"cleanup.policy": "delete", "retention.ms": str(DEFAULT_RETENTION_MS)},
    )
    assert got[other][0] == 3
    assert got[changelog] == (3, {"cleanup.policy": "compact", "retention.ms": "-1"})


async def test_is_idempotent_and_keeps_existing_topics(broker: str) -> None:
    name = unique_name("adm.again")
    await ensure_topics(broker, [name], 2)
    await ensure_topics(broker, [name, name], 5)  # exists: no error, partitions unchanged
    assert (await describe(broker, [name]))[name][0] == 2
    await ensure_topics(broker, [], 1)


async def test_adds_configs_to_auto_created_topic(broker: str) -> None:
    """Tansu auto-creates a topic on first produce, without configs; ensure_topics fixes that."""
    name = unique_name("adm.auto")
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        await producer.send_and_wait(name, b"x")
    finally:
        await producer.stop()
    before = await describe(broker, [name])
    assert "retention.ms" not in before[name][1]
    await ensure_topics(broker, [name], 1, extra_configs={name: {"retention.ms": "1000"}})
    after = await describe(broker, [name])
    assert after[name][1] == {"cleanup.policy": "delete", "retention.ms": "1000"}
    assert after[name][0] == before[name][0]  # partition count is never changed
