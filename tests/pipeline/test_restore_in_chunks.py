"""A restore writes RocksDB every ``RESTORE_WRITE_RECORDS`` changelog records, each write with the
changelog position it reached: the memory a restore holds is one chunk, not the whole state (a
1M-subject partition no longer sits in one Python dict), and an interrupted restore resumes from
the last chunk. Real broker, real RocksDB; only the chunk size is made small."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.app import build_pipeline
from streams.processing import runner as runner_module
from streams.processing.runner import PipelineRunner, RunnerConfig
from streams.state.store import CHANGELOG_OFFSET, SIGNAL_PREFIX, RocksStore, count_keys
from tests.pipeline.worker_harness import Worker
from tests.state.test_pruning_live import settings_for

RECORDS = 25


class RecordingStore(RocksStore):
    writes: list[dict[bytes, bytes]] = []

    def write(self, puts: dict[bytes, bytes]) -> None:
        RecordingStore.writes.append(dict(puts))
        super().write(puts)


async def test_restore_writes_in_chunks_with_the_position_reached(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = Worker(broker, tmp_path / "harness")  # topics and group; no subprocess
    await harness.create_topics()
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        for i in range(RECORDS):
            key = SIGNAL_PREFIX + f"user:u{i}".encode()
            await producer.send_and_wait(harness.topics["changelog"], b"{}", key=key, partition=0)
    finally:
        await producer.stop()

    monkeypatch.setattr(runner_module, "RESTORE_WRITE_RECORDS", 10)
    monkeypatch.setattr(runner_module, "open_store", lambda d, name: RecordingStore(d / name))
    RecordingStore.writes = []
    settings = settings_for(harness, retention_seconds=3600)
    runner = PipelineRunner(
        RunnerConfig(
            bootstrap=broker,
            group_id=harness.group,
            input_topics=settings.input_topics,
            changelog_topic=harness.topics["changelog"],
            data_dir=tmp_path / "state",
        ),
        build_pipeline(settings),
    )
    # only the restore consumer: no group member that would restore the partition on its own
    runner._restorer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await runner._restorer.start()
    try:
        store = (await runner._restore([0]))[0]
        assert count_keys(store, SIGNAL_PREFIX) == RECORDS
        assert store.get(CHANGELOG_OFFSET) == str(RECORDS).encode()
        store.close()
    finally:
        await runner._restorer.stop()
    # two full chunks (10 records + the position after them), then the last 5 + the end position
    assert [len(w) for w in RecordingStore.writes] == [11, 11, 6]
    assert [w[CHANGELOG_OFFSET] for w in RecordingStore.writes] == [b"10", b"20", b"25"]
