"""Throughput of a consumer draining a backlog, from progress counters polled every ~0.25 s.

Rates are taken between two polls (exact counts, exact times), so the partial interval before
the first poll that saw progress never inflates or deflates a figure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.worker import Sample

Sampler = Callable[[], Awaitable[Sample]]


@dataclass(slots=True)
class Drain:
    """Polls recorded while a backlog was produced and drained."""

    key: str
    base: Sample
    samples: list[Sample] = field(default_factory=list)
    produced_at: float = 0.0  # perf_counter when the producer had every ack

    def _window(self, start: Sample, end: Sample, key: str) -> float:
        dt = end.t - start.t
        return (end.counts[key] - start.counts[key]) / dt if dt > 0 else 0.0

    def summary(self, extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """Overall (first progress → done) and drain-only (producer finished → done) rates."""
        key = self.key
        moved = [s for s in self.samples if s.counts[key] > self.base.counts[key]]
        if len(moved) == 1:
            # the worker's counters move once per batch: a backlog drained in one or two batches
            # shows one step; measure from the poll before it (the rate is then a lower bound)
            moved.insert(0, self.samples[self.samples.index(moved[0]) - 1])
        if len(moved) < 2:
            return {"error": "too few progress samples"}
        first, last = moved[0], moved[-1]
        after = [s for s in moved if s.t >= self.produced_at]
        out: dict[str, Any] = {
            "processed": last.counts[key] - self.base.counts[key],
            "seconds": round(last.t - first.t, 2),
            "rate": self._window(first, last, key),
        }
        for k in extra:
            out[f"{k}_total"] = last.counts[k] - self.base.counts[k]
            out[f"{k}_rate"] = self._window(first, last, k)
        if len(after) >= 2 and after[-1].t - after[0].t >= 1.0:
            out["drain_seconds"] = round(after[-1].t - after[0].t, 2)
            out["drain_rate"] = self._window(after[0], after[-1], key)
            for k in extra:
                out[f"drain_{k}_rate"] = self._window(after[0], after[-1], k)
        return out


async def measure_drain(
    sample: Sampler,
    key: str,
    expected: int,
    produce: Callable[[], Awaitable[Any]],
    *,
    timeout: float,
    every: float = 0.25,
) -> tuple[Drain, Any]:
    """Run ``produce()`` while polling ``sample()`` until ``key`` grew by ``expected``."""
    base = await sample()
    drain = Drain(key, base, [base])
    target = base.counts[key] + expected

    async def run_producer() -> Any:
        result = await produce()
        drain.produced_at = time.perf_counter()
        return result

    task = asyncio.create_task(run_producer())
    deadline = time.monotonic() + timeout
    try:
        while True:
            await asyncio.sleep(every)
            s = await sample()
            drain.samples.append(s)
            if s.counts[key] >= target and task.done():
                break
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key}: {s.counts[key] - base.counts[key]:.0f}/{expected}")
        return drain, await task
    finally:
        if not task.done():
            task.cancel()
