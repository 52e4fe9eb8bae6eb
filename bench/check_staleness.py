"""How stale can a check answer be? Signal produced → visible to a check, on the owner of the
subject's partition and on a worker that does not own it (the changelog-fed replica).

Starts an embedded broker and two real workers (the test harness), then for N rounds flips a
subject's risk between HIGH and LOW with one signal and polls both workers' check APIs (every
~2 ms) until the answer flips. Prints p50/p90/p99/max per worker role and the replica's own
changelog → visible histogram. Not a test (no thresholds): ``python -m bench.check_staleness``.

    .venv/bin/python -m bench.check_staleness --rounds 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from bench.latency import percentiles
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.security import PLAINTEXT
from streams.state.replica import partition_of
from tests.pipeline.worker_harness import PARTITIONS, Worker


def _check(pid: str) -> bytes:
    return json.dumps(
        {
            "principal": {"id": pid, "roles": ["employee"]},
            "resources": [{"resource": {"kind": "document", "id": "d"}, "actions": ["read"]}],
        }
    ).encode()


async def _allowed(session: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    async with session.post(f"{url}/api/check/resources", data=body) as resp:
        data = await resp.json(content_type=None)
    return bool(data["results"][0]["actions"]["read"] == "EFFECT_ALLOW")


async def _until(session: aiohttp.ClientSession, url: str, body: bytes, want: bool) -> float:
    deadline = time.monotonic() + 30
    while await _allowed(session, url, body) != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} never answered allowed={want}")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def main(rounds: int) -> None:
    with EmbeddedBroker() as broker:
        root = Path(tempfile.mkdtemp(prefix="vigil-staleness-"))
        first = Worker(broker.bootstrap, root / "a")
        second = first.replacement(root / "b")
        try:
            await first.start()
            await second.start()
            while not all(len(w.health()["partitions"]) == 1 for w in (first, second)):
                await asyncio.sleep(0.3)
            pid = next(
                f"u{i}"
                for i in range(1000)
                if partition_of(f"user:u{i}".encode(), PARTITIONS) in first.health()["partitions"]
            )
            body = _check(pid)
            results: dict[str, list[float]] = {"owner": [], "non-owner": []}
            producer = AIOKafkaProducer(
                bootstrap_servers=broker.bootstrap, linger_ms=0, **PLAINTEXT.client_kwargs()
            )
            await producer.start()
            async with aiohttp.ClientSession() as session:
                for n in range(1, rounds + 1):
                    level = "HIGH" if n % 2 else "LOW"
                    record = {
                        "event_id": f"stale-{n}",
                        "subject": {"type": "user", "id": pid},
                        "source": "bench",
                        "event_time": int(time.time() * 1000),
                        "type": "risk-level-change",
                        "attributes": {"current_level": level},
                    }
                    sent = time.perf_counter()
                    await producer.send_and_wait(
                        first.topics["risk"],
                        json.dumps(record).encode(),
                        key=f"user:{pid}".encode(),
                        headers=[("content-type", b"application/json")],
                    )
                    want = level == "LOW"
                    done = await asyncio.gather(
                        _until(session, first.api_url, body, want),
                        _until(session, second.api_url, body, want),
                    )
                    results["owner"].append(done[0] - sent)
                    results["non-owner"].append(done[1] - sent)
                    await asyncio.sleep(0.2)
            await producer.stop()
            print(f"rounds: {rounds} (signal produced -> check answer changed)")
            for role, values in results.items():
                print(f"  {role:10s} {percentiles(values)}")
            print("  replica changelog->visible histogram (non-owner /metrics):")
            for name in ("_count", "_sum"):
                metric = f"vigil_signal_replica_delay_seconds{name}"
                print(f"    {metric} {second.metric(metric)}")
        finally:
            first.stop()
            second.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    asyncio.run(main(parser.parse_args().rounds))
