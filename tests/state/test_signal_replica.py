"""The signal replica catches up with the raw replay (``raw_catch_up``) and then follows the
changelog from exactly where the catch-up ended: the newest signal state of every subject of
every partition, grant states skipped, nothing applied twice or missed. Real broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from streams.state.replica import SignalReplica

pytestmark = pytest.mark.broker


async def send(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes]]) -> None:
    """(partition, key, value) records, one produce batch per call and partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batches = {}
        for partition, key, value in records:
            batch = batches.setdefault(partition, producer.create_batch())
            assert batch.append(key=key, value=value, timestamp=None)
        for partition, batch in batches.items():
            batch.close()
            await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()


async def test_replica_catches_up_raw_then_follows(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("changelog", partitions=2, compacted=("changelog",))
    expected: dict[bytes, bytes] = {}
    for version in range(3):  # three batches per partition: older versions must lose
        records = []
        for i in range(40):
            key = b"user:u%d" % i
            value = b'{"v":%d,"u":%d}' % (version, i)
            records.append((i % 2, b"s:" + key, value))
            records.append((i % 2, b"g:" + key, b"grants"))
            expected[key] = value
        await send(broker, topic, records)
    replica = SignalReplica(bootstrap=broker, topic=topic)
    assert replica.raw_catch_up
    await replica.start()
    try:
        assert len(replica) == 40
        assert {k: replica.get(k) for k in expected} == expected
        # followed from the catch-up's end: a new state shows up, once
        await send(broker, topic, [(1, b"s:user:new", b'{"new":1}')])
        for _ in range(100):
            if replica.get(b"user:new") is not None:
                break
            await asyncio.sleep(0.1)
        assert replica.get(b"user:new") == b'{"new":1}'
        assert len(replica) == 41
    finally:
        await replica.stop()
