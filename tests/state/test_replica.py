"""The check API's signal replica: its data lives in RocksDB under its directory (not in the
Python heap), each step is one write batch with the positions it reached, a restart resumes from
them, and anything that says they may not describe the changelog makes it read the changelog
from the beginning instead (real broker, real RocksDB; waits are bounded, never timed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from streams.kafka.admin import ensure_topics
from streams.state.replica import SignalReplica
from streams.state.store import RocksStore
from tests.conftest import TopicFactory

Record = tuple[bytes, bytes | None]


def _signals(prefix: str, n: int, version: int = 1) -> list[Record]:
    return [(f"s:user:{prefix}{i}".encode(), b'{"v":%d,"i":%d}' % (version, i)) for i in range(n)]


async def _send(broker: str, topic: str, records: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for key, value in records]
        await producer.flush()
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _started(broker: str, topic: str, path: Path | None, **kwargs: Any) -> SignalReplica:
    replica = SignalReplica(bootstrap=broker, topic=topic, path=path, **kwargs)
    await replica.start()
    return replica


async def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def _recreate(broker: str, topic: str, partitions: int) -> None:
    """Delete the topic and create it again under the same name (an operator's reset)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    await ensure_topics(broker, [topic], partitions)


def _subjects_gauge() -> float | None:
    return REGISTRY.get_sample_value("vigil_signal_replica_subjects")


async def test_tombstones_delete_grant_states_are_skipped_and_the_count_is_exact(
    broker: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    (topic,) = await topic_factory("changelog", partitions=2)
    await _send(
        broker,
        topic,
        [
            (b"s:user:a", b"a1"),
            (b"s:user:b", b"b1"),
            (b"g:user:a", b"{}"),
            (b"s:user:a", b"a2"),
            (b"s:user:b", None),
            (b"s:user:never", None),
        ],
    )
    replica = await _started(broker, topic, tmp_path / "replica")
    try:
        assert replica.get(b"user:a") == b"a2"
        assert replica.get(b"user:b") is None
        assert replica.store.get(b"g:user:a") is None  # a check never reads grant states
        assert len(replica) == 1
        assert _subjects_gauge() == 1
        # followed: a tombstone deletes, new keys count once, an overwrite does not count
        await _send(
            broker,
            topic,
            [(b"s:user:a", None), (b"s:user:c", b"c1"), (b"s:user:d", b"d1"), (b"s:user:d", b"d2")],
        )
        await _until(
            lambda: replica.get(b"user:a") is None and replica.get(b"user:d") == b"d2",
            "the replica never applied the followed records",
        )
        await _until(lambda: replica.get(b"user:c") == b"c1", "user:c never arrived")
        assert len(replica) == 2
        assert _subjects_gauge() == 2
    finally:
        await replica.stop()


async def test_values_live_in_rocksdb_written_one_batch_per_step(
    broker: str, topic_factory: TopicFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (topic,) = await topic_factory("changelog", partitions=2)
    records = _signals("m", 2000)
    await _send(broker, topic, records)
    writes: list[int] = []
    write = RocksStore.write

    def counted(store: RocksStore, puts: Any) -> None:
        writes.append(len(puts))
        write(store, puts)

    monkeypatch.setattr(RocksStore, "write", counted)
    path = tmp_path / "replica"
    replica = await _started(broker, topic, path)
    try:
        assert len(replica) == 2000
        assert replica.get(b"user:m7") == records[7][1]
        # nothing the replica holds in Python grows with the subjects
        held = {
            name: len(value)
            for name, value in vars(replica).items()
            if isinstance(value, dict | set | list | tuple | frozenset)
        }
        assert all(size <= replica.partitions for size in held.values()), held
    finally:
        await replica.stop()
    # one write per fetch step (each with the positions reached), not one put per record
    assert len(writes) <= len(records) // 10, writes
    # what it served is in RocksDB under its directory
    store = RocksStore(path)
    try:
        assert store.get(b"s:user:m1999") == records[1999][1]
    finally:
        store.close()


async def test_a_restart_resumes_from_the_stored_positions(
    broker: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    (topic,) = await topic_factory("changelog", partitions=2)
    await _send(broker, topic, [*_signals("r", 300), (b"g:user:r0", b"{}")])
    path = tmp_path / "replica"
    first = await _started(broker, topic, path)
    assert not first.resumed
    assert first.records_read == 301
    await first.stop()
    overwritten = _signals("r", 10, version=2)
    deleted: list[Record] = [(key, None) for key, _ in _signals("r", 20)[10:]]
    new = _signals("new", 30)
    await _send(broker, topic, [*overwritten, *deleted, *new])
    second = await _started(broker, topic, path)
    try:
        assert second.resumed
        assert second.records_read == 50  # only what was written while it was down
        assert second.get(b"user:r0") == overwritten[0][1]
        assert second.get(b"user:r15") is None
        assert second.get(b"user:r299") == b'{"v":1,"i":299}'
        assert second.get(b"user:new29") == new[29][1]
        assert len(second) == 300 - 10 + 30
    finally:
        await second.stop()


@pytest.mark.parametrize(
    ("regrown", "reason"),
    [(5, "past the log end"), (150, "no longer holds the record")],
    ids=["recreated-shorter", "recreated-and-grown-past-the-old-positions"],
)
async def test_a_recreated_changelog_is_read_from_the_beginning(
    regrown: int,
    reason: str,
    broker: str,
    topic_factory: TopicFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (topic,) = await topic_factory("changelog", partitions=1)
    await _send(broker, topic, _signals("old", 100))
    path = tmp_path / "replica"
    first = await _started(broker, topic, path)
    await first.stop()
    await _recreate(broker, topic, 1)
    await _send(broker, topic, _signals("fresh", regrown))
    with caplog.at_level(logging.WARNING, logger="streams.state.replica"):
        second = await _started(broker, topic, path)
    try:
        assert not second.resumed
        assert reason in caplog.text
        assert second.records_read == regrown
        assert second.get(b"user:old0") is None  # nothing of the old log is served
        assert second.get(b"user:fresh0") == b'{"v":1,"i":0}'
        assert len(second) == regrown
    finally:
        await second.stop()


async def test_a_replica_of_another_topic_or_too_old_is_rebuilt(
    broker: str, topic_factory: TopicFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one, other = await topic_factory("changelog", "changelog", partitions=1)
    await _send(broker, one, _signals("one", 10))
    await _send(broker, other, _signals("other", 4))
    path = tmp_path / "replica"
    await (await _started(broker, one, path)).stop()
    with caplog.at_level(logging.WARNING, logger="streams.state.replica"):
        foreign = await _started(broker, other, path)
    try:
        assert not foreign.resumed
        assert "stored from topic" in caplog.text
        assert foreign.get(b"user:one0") is None
        assert len(foreign) == 4
    finally:
        await foreign.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streams.state.replica"):
        old = await _started(broker, other, path, resume_max_age_seconds=-1)
    try:
        assert not old.resumed
        assert "tombstones may have been compacted away" in caplog.text
        assert old.records_read == 4
        assert len(old) == 4
    finally:
        await old.stop()


async def test_without_a_path_the_replica_uses_a_temporary_directory(
    broker: str, topic_factory: TopicFactory
) -> None:
    (topic,) = await topic_factory("changelog", partitions=1)
    await _send(broker, topic, _signals("t", 3))
    replica = await _started(broker, topic, None)
    path = replica.path
    try:
        assert replica.get(b"user:t2") == b'{"v":1,"i":2}'
        assert path.is_dir()
    finally:
        await replica.stop()
    assert not path.exists()
