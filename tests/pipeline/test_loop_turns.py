"""The check API runs on the worker's event loop between the pipeline's steps, so the pipeline
frees the loop between pieces of work: the background sweep between chunks of ``SWEEP_CHUNK``
subjects, a batch step between partitions. Seen by a task that counts loop turns: each piece
must start on a later turn than the one before (no timing involved)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from streams.app import build_pipeline
from streams.processing.records import BatchResult, InRecord
from streams.processing.runner import SWEEP_CHUNK, PipelineRunner, RunnerConfig
from streams.settings import Settings
from streams.state.store import MemoryStore, PartitionStore, grant_key
from streams.state.subject import new_grant_state
from tests.pipeline.test_pipeline_e2e import device_signal
from tests.pipeline.worker_harness import ROOT, Worker


class Turns:
    """Counts event-loop turns while it runs."""

    def __init__(self) -> None:
        self.count = 0

    async def _tick(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Turns]:
        task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def settings(broker: str, topics: dict[str, str] | None = None) -> Settings:
    return Settings(
        broker=broker,
        policies=ROOT / "policies",
        risk_model=ROOT / "risk" / "model.yaml",
        **{f"topic_{name}": topic for name, topic in (topics or {}).items()},
    )


async def test_the_sweep_frees_the_loop_between_chunks_and_keeps_its_rate() -> None:
    conf = settings("127.0.0.1:1")  # no Kafka: nothing the sweep finds needs producing
    runner = PipelineRunner(
        RunnerConfig(
            bootstrap="127.0.0.1:1",
            group_id="g",
            input_topics=conf.input_topics,
            changelog_topic="c",
            data_dir=None,
        ),
        build_pipeline(conf),
    )
    store = MemoryStore()
    store.write(
        {grant_key(f"user:u{i:03d}".encode()): orjson.dumps(new_grant_state()) for i in range(100)}
    )
    runner.stores[0] = store
    seen: list[tuple[int, int]] = []  # (loop turn, subjects) per chunk
    sweep = runner.pipeline.sweep

    def counted(keys: Sequence[bytes], st: PartitionStore, now_ms: int) -> BatchResult:
        seen.append((turns.count, len(keys)))
        return sweep(keys, st, now_ms)

    runner.pipeline.sweep = counted  # type: ignore[method-assign]
    runner._sweep_budget, runner._sweep_at = 100.0, time.monotonic()  # one budget, due now
    async with Turns().running() as turns:
        await runner._expiry_step()
    assert sum(n for _, n in seen) == 100  # the whole budget in this step, as before
    assert len(seen) > 1
    assert all(n <= SWEEP_CHUNK for _, n in seen)
    chunk_turns = [t for t, _ in seen]
    assert chunk_turns == sorted(set(chunk_turns)), f"chunks on the same loop turn: {seen}"


async def test_a_batch_step_frees_the_loop_between_partitions(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    harness = start_worker()  # only for its topics, group and helpers: no subprocess
    await harness.create_topics()
    run = uuid.uuid4().hex[:6]
    users = [f"lt{run}-{i}" for i in range(80)]  # spread over the 4 partitions
    await harness.produce(
        "device",
        [device_signal(f"{u}-ok", u, "D1", "compliant", "2026-11-29T08:00:00Z") for u in users],
    )
    runner = PipelineRunner(
        RunnerConfig(
            bootstrap=harness.bootstrap,
            group_id=harness.group,
            input_topics=settings(harness.bootstrap, harness.topics).input_topics,
            changelog_topic=harness.topics["changelog"],
            data_dir=tmp_path / "state",
            commit_interval_s=0.1,
        ),
        build_pipeline(settings(harness.bootstrap, harness.topics)),
    )
    seen: list[tuple[int, int]] = []  # (loop turn, records) per partition batch
    process = runner.pipeline.process

    def counted(records: Sequence[InRecord], st: PartitionStore, now_ms: int) -> Any:
        seen.append((turns.count, len(records)))
        return process(records, st, now_ms)

    runner.pipeline.process = counted  # type: ignore[method-assign]
    await runner.start()
    async with Turns().running() as turns:
        task = asyncio.create_task(runner.run())
        try:
            await harness.wait_processed(timeout=120)
        finally:
            await runner.stop()
            task.cancel()
    assert sum(n for _, n in seen) == len(users)
    assert len(seen) > 1
    batch_turns = [t for t, _ in seen]
    assert batch_turns == sorted(set(batch_turns)), f"batches on the same loop turn: {seen}"
