"""A worker's state restored into an empty data dir, every partition at once (one fetch loop per
changelog partition, ``streams.kafka.replay``), is exactly the state the worker had: every
subject's signal and grant state, the changelog position, and the subject and active-grant
counts (taken after the restore, from a snapshot). Real worker process, real broker, real
RocksDB on both sides; several changelog records per key (grants issued, then revoked) and
chunked writes, so last-wins and chunk ends count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.processing import runner as runner_module
from streams.state.store import CHANGELOG_OFFSET, GRANT_PREFIX, SIGNAL_PREFIX, RocksStore
from tests.pipeline.test_pipeline_e2e import device_signal
from tests.pipeline.test_pipeline_recovery import seed
from tests.pipeline.worker_harness import PARTITIONS, Worker
from tests.state.test_pruning_live import runner_for


def dump(store: RocksStore) -> dict[bytes, bytes]:
    """Every subject state (signal and grant) of one partition store."""
    return {k: v for prefix in (SIGNAL_PREFIX, GRANT_PREFIX) for k, v in store.items(prefix)}


async def test_concurrent_restore_equals_the_source_state(
    start_worker: Callable[..., Worker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = start_worker()
    await source.start()
    users = await seed(source, "cr")
    # a second version of half the grant states (their read+write grant revoked)
    await source.produce(
        "device",
        [
            device_signal(f"{u}-bad", u, "D1", "not-compliant", "2026-11-29T11:00:00Z")
            for u in users[::2]
        ],
    )
    await source.wait_processed(timeout=60)
    source.stop()  # a clean stop closes its stores

    expected: dict[int, dict[bytes, bytes]] = {}
    positions: dict[int, bytes | None] = {}
    for partition in range(PARTITIONS):
        store = RocksStore(source.data_dir / "state" / f"p{partition}")
        expected[partition] = dump(store)
        positions[partition] = store.get(CHANGELOG_OFFSET)
        store.close()
    assert all(expected.values()), "every partition holds state"

    monkeypatch.setattr(runner_module, "RESTORE_WRITE_RECORDS", 37)  # chunk ends mid-response
    runner = runner_for(source, tmp_path / "restored", retention_seconds=0)
    runner._restorer = AIOKafkaConsumer(bootstrap_servers=source.bootstrap)
    await runner._restorer.start()
    try:
        stores = await runner._restore(list(range(PARTITIONS)))
    finally:
        await runner._restorer.stop()
    try:
        # A batch committed after the restore, before the counts are done: a new subject. The
        # runner adds its delta; the count reads the snapshot taken at the restore, so the
        # subject is counted once, not twice.
        late = SIGNAL_PREFIX + b"user:late"
        stores[0].write({late: orjson.dumps({"dims": {}, "recent": []})})
        runner._subjects[0] += 1
        expected[0][late] = stores[0].get(late) or b""
        while runner._counting:
            runner._count_step()
        for partition in range(PARTITIONS):
            store = stores[partition]
            assert isinstance(store, RocksStore)
            assert dump(store) == expected[partition]
            assert store.get(CHANGELOG_OFFSET) == positions[partition]
            subjects = sum(1 for k in expected[partition] if k.startswith(SIGNAL_PREFIX))
            grants = sum(
                len(orjson.loads(v)["grants"])
                for k, v in expected[partition].items()
                if k.startswith(GRANT_PREFIX)
            )
            assert runner._subjects[partition] == subjects
            assert runner._grants[partition] == grants
        assert sum(runner._grants.values()) == len(users) + len(users[1::2])
    finally:
        for store in stores.values():
            store.close()
