"""The check API runs on the worker's event loop between the pipeline's steps, so the background
sweep frees the loop between chunks of ``SWEEP_CHUNK`` subjects (its first ``SWEEP_YIELDS``
chunks of a step that applied no records; the rest of a large budget, and the sweep of a step
that applied records, go in one piece, so an overloaded loop does not starve the signals). Seen
by a task that counts loop turns (no timing involved)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import orjson

from streams.app import build_pipeline
from streams.processing.records import BatchResult
from streams.processing.runner import SWEEP_CHUNK, SWEEP_YIELDS, PipelineRunner, RunnerConfig
from streams.settings import Settings
from streams.state.store import MemoryStore, PartitionStore, grant_key
from streams.state.subject import new_grant_state
from tests.pipeline.worker_harness import ROOT


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


async def sweep_step(budget: float, yielding: bool = True) -> list[tuple[int, int]]:
    """One sweep step with ``budget`` over 1,000 grant states: (loop turn, subjects) per chunk."""
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
    empty = orjson.dumps(new_grant_state())
    store.write({grant_key(f"user:u{i:04d}".encode()): empty for i in range(1000)})
    runner.stores[0] = store
    seen: list[tuple[int, int]] = []
    sweep = runner.pipeline.sweep

    def counted(keys: Sequence[bytes], st: PartitionStore, now_ms: int) -> BatchResult:
        seen.append((turns.count, len(keys)))
        return sweep(keys, st, now_ms)

    runner.pipeline.sweep = counted  # type: ignore[method-assign]
    runner._sweep_budget, runner._sweep_at = budget, time.monotonic()  # one budget, due now
    async with Turns().running() as turns:
        await runner._expiry_step(yielding=yielding)
    return seen


async def test_the_sweep_frees_the_loop_between_chunks_and_keeps_its_rate() -> None:
    seen = await sweep_step(100.0)
    assert sum(n for _, n in seen) == 100  # the whole budget in this step, as before
    assert len(seen) > 1
    assert all(n <= SWEEP_CHUNK for _, n in seen)
    chunk_turns = [t for t, _ in seen]
    assert chunk_turns == sorted(set(chunk_turns)), f"chunks on the same loop turn: {seen}"


async def test_a_large_budget_adds_only_a_few_loop_turns_to_a_step() -> None:
    seen = await sweep_step(500.0)  # the loop was slow: 500 subjects are due
    assert sum(n for _, n in seen) == 500  # all of them, still in this step
    assert len(seen) == SWEEP_YIELDS + 1  # the first chunks apart, the rest in one piece
    assert [n for _, n in seen[:-1]] == [SWEEP_CHUNK] * SWEEP_YIELDS


async def test_a_step_that_applied_signals_sweeps_in_one_piece() -> None:
    # while signals flow, a yield would make the pipeline wait a round of queued checks
    seen = await sweep_step(100.0, yielding=False)
    assert [n for _, n in seen] == [100]
