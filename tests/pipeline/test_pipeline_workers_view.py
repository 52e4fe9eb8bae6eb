"""``/workers`` shows live workers only: a worker that stops cleanly announces that it leaves, and
one killed with SIGKILL drops out once its heartbeats stop (``streams.fleet``)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from streams.app import WORKERS_TOPIC
from tests.kafka_helpers import consume_all, values
from tests.pipeline.worker_harness import Worker


def worker_id(worker: Worker) -> str:
    return f"{socket.gethostname()}:{worker.web_port}"


def view(worker: Worker) -> dict[str, dict[str, Any]]:
    url = f"http://127.0.0.1:{worker.web_port}/workers"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return {w["worker_id"]: w for w in json.loads(resp.read())["workers"]}


async def until(check: Callable[[], bool], what: str, watcher: Worker, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}\n{watcher.log()}"
        await asyncio.sleep(0.5)


async def test_workers_view_forgets_stopped_and_killed_workers(
    broker: str, start_worker: Callable[..., Worker]
) -> None:
    a = start_worker()
    await a.start()
    b = start_worker(like=a)
    await b.start()
    await until(lambda: {worker_id(a), worker_id(b)} <= set(view(a)), "both workers shown", a)
    shown = view(a)[worker_id(a)]
    assert shown["policy_digest"].startswith("sha256:") and "partitions" in shown

    b.stop()  # SIGTERM: a clean stop sends a "leaving" beat
    beats = values(await consume_all(broker, WORKERS_TOPIC, timeout=5))
    assert any(x["worker_id"] == worker_id(b) and x.get("leaving") is True for x in beats)
    await until(lambda: worker_id(b) not in view(a), "stopped worker still shown", a)

    c = start_worker(like=a)
    await c.start()
    await until(lambda: worker_id(c) in view(a), "third worker shown", a)
    c.kill9()  # no goodbye: its beats stop, it must expire
    await until(lambda: worker_id(c) not in view(a), "killed worker still shown", a)
    assert worker_id(a) in view(a)
