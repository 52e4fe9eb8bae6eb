"""The paced load generator of the latency part (c), in its own process.

``python -m bench.loadgen SPEC.json``: offers ``rate`` signals/s for ``seconds`` (10 ms ticks,
producer linger 2 ms) and writes ``SPEC.json``'s ``out`` file: the wall-clock send time and
kind of every ``event_id``, the producer's late ticks, and this process's own CPU seconds (so
the bench can say what share of the machine the generator took). The ``World`` (which subject
has which risk level, zone and device status) comes in and goes back as a pickle, so the next
run continues from the state this one left.

Its own process keeps the generator off the measured path: the bench process only reads the
output topics, and the generator's work does not delay their fetches (nor the reverse).
"""

from __future__ import annotations

import asyncio
import pickle
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.events import World
from bench.kafka import producer


async def offer(spec: dict[str, Any], world: World) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_SELF)  # start-up (imports, the World) excluded
    rng = random.Random(spec.get("seed", 7))
    topics = spec["topics"]
    noop = range(*spec["noop"])
    fresh = iter(range(*spec["fresh"]))
    cross = iter(range(*spec.get("cross", (0, 0))))
    revoke, toggle = spec["revoke_share"], spec["toggle_share"]
    cross_share = spec.get("cross_share", 0.0)
    sent: dict[str, float] = {}
    kinds: dict[str, str] = {}
    prod = producer(spec["bootstrap"], linger_ms=spec.get("linger_ms", 2))
    await prod.start()
    tick = 0.01
    per_tick = spec["rate"] * tick
    owed = 0.0
    lagging_ticks = 0
    started = time.perf_counter()
    next_at = started
    try:
        while time.perf_counter() - started < spec["seconds"]:
            owed += per_tick
            while owed >= 1:
                owed -= 1
                r = rng.random()
                if r < revoke:
                    kind, subject = "revoke", next(fresh)
                elif r < revoke + cross_share:
                    kind, subject = "cross", next(cross)
                elif r < revoke + cross_share + toggle:
                    kind, subject = "toggle", rng.choice(noop)
                else:
                    kind, subject = "noop", rng.choice(noop)
                rec = world.live(subject, kind, rng)
                kinds[rec.event_id] = kind
                sent[rec.event_id] = time.time()
                await prod.send(topics[rec.kind], rec.value, key=rec.key, partition=rec.partition)
            next_at += tick
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lagging_ticks += 1
        elapsed = time.perf_counter() - started
        await prod.flush()
    finally:
        await prod.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "sent": sent,
        "kinds": kinds,
        "seconds": elapsed,
        "producer_late_ticks": lagging_ticks,
        "cpu_s": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime,
    }


def main() -> None:
    spec = orjson.loads(Path(sys.argv[1]).read_bytes())
    world_path = Path(spec["world"])
    world = pickle.loads(world_path.read_bytes())  # noqa: S301 - written by the bench itself
    result = asyncio.run(offer(spec, world))
    world_path.write_bytes(pickle.dumps(world))
    Path(spec["out"]).write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
