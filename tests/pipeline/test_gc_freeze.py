"""A ready worker has moved its startup heap out of the garbage collector's sight (gc.freeze):
full collections then walk only what was built since, instead of stopping the event loop (and
every check waiting on it) for tens to hundreds of ms (docs/performance.md, check API)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.pipeline.worker_harness import Worker


async def test_ready_worker_froze_its_startup_heap(start_worker: Callable[..., Worker]) -> None:
    worker = start_worker()
    await worker.start()  # returns once /healthz says ready
    frozen = 0.0
    for _ in range(50):  # the freeze follows readiness on the event loop, within moments
        frozen = worker.metric("vigil_gc_frozen_objects")
        if frozen:
            break
        await asyncio.sleep(0.1)
    # modules, the compiled bundle and the Kafka clients: tens of thousands of objects
    assert frozen > 10_000
