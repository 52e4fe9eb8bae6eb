"""Fixtures that run real ``vigil worker`` processes on the session's embedded broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.pipeline.worker_harness import Worker


@pytest.fixture
async def start_worker(broker: str, tmp_path: Path) -> AsyncIterator[Callable[..., Worker]]:
    """``w = make(); await w.start()``; every worker made here is stopped at the end."""
    made: list[Worker] = []

    def make(data_dir: Path | None = None, like: Worker | None = None) -> Worker:
        data_dir = data_dir or tmp_path / f"data{len(made)}"
        worker = like.replacement(data_dir) if like else Worker(broker, data_dir)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()
