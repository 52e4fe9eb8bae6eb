"""A partition whose state cannot be restored stops the worker (exit 70, for its supervisor)
instead of leaving it owned without a store: its records would be skipped, unseen, until the
next rebalance, and the worker would never report ready."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.pipeline.worker_harness import Worker


async def test_a_store_that_cannot_be_opened_stops_the_worker(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    worker.data_dir.mkdir(parents=True, exist_ok=True)
    (worker.data_dir / "state").mkdir()
    # a file where partition 0's RocksDB directory goes
    (worker.data_dir / "state" / "p0").write_text("not a RocksDB directory")
    with pytest.raises(RuntimeError, match="exited with 70"):
        await worker.start(timeout=90)
    assert "partitions [0, 1]: cannot restore their state" in worker.log()
