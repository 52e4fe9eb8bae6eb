"""``vigil worker --processes 2`` on the embedded broker: two worker processes in one consumer
group share the partitions, both apply records, and SIGTERM to the supervisor stops both."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from streams.commands.supervise import child_args
from streams.kafka.broker import free_port
from tests.pipeline.test_pipeline_e2e import grant
from tests.pipeline.worker_harness import PARTITIONS, ROOT, Worker


def free_pair() -> int:
    """A port p such that p and p + 1 are both free (the two processes' ports)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return -1.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name)] in " {"
    )


async def wait_until(check: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while not check():  # type: ignore[operator]
        assert proc.poll() is None, f"supervisor exited: {log.read_text(errors='replace')[-3000:]}"
        assert time.monotonic() < deadline, f"{what}: {log.read_text(errors='replace')[-3000:]}"
        await asyncio.sleep(0.3)


def children_of(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


async def test_two_processes_share_the_partitions_and_both_apply_records(
    broker: str, tmp_path: Path
) -> None:
    worker = Worker(broker, tmp_path / "data")
    worker.web_port, worker.api_port = free_pair(), free_pair()
    await worker.create_topics()
    ports = (worker.web_port, worker.web_port + 1)
    log = tmp_path / "supervisor.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--processes", "2"],
        env=worker.env(),
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        # both members hold partitions: the group rebalanced over the two processes
        await wait_until(
            lambda: [metric(p, "vigil_assigned_partitions") for p in ports] == [1.0, 1.0],
            "each process owns one of the 2 partitions",
            proc,
            log,
        )
        assert PARTITIONS == 2
        users = [f"u-{uuid.uuid4().hex[:8]}" for _ in range(24)]
        await worker.produce("grants", [grant(f"{u}-g", u, ["read"], "D1") for u in users])
        await wait_until(
            lambda: sum(metric(p, "vigil_grant_events_total") for p in ports) == len(users),
            "every grant applied",
            proc,
            log,
        )
        per_process = [metric(p, "vigil_grant_events_total") for p in ports]
        assert all(n > 0 for n in per_process), per_process  # both processes applied records
        # each has its own data dir under the given one
        assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["process-0", "process-1"]
        children = children_of(proc.pid)
        assert len(children) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
    assert returncode == 0, log.read_text(errors="replace")[-3000:]
    deadline = time.monotonic() + 10
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not any(alive(c) for c in children)


def test_child_arguments_replace_processes_data_dir_and_ports() -> None:
    args = child_args(
        ["worker", "--processes", "3", "--web-port", "7000", "--loglevel=info"],
        2,
        Path("/var/vigil"),
        7000,
        3592,
    )
    assert args == [
        "worker",
        "--web-port",
        "7000",
        "--loglevel=info",
        "--processes",
        "1",
        "--data-dir",
        "/var/vigil/process-2",
        "--web-port",
        "7002",
        "--api-port",
        "3594",
    ]
    assert "--processes=4" not in child_args(["worker", "--processes=4"], 0, Path("d"), 0, 0)
    assert child_args(["worker"], 1, Path(":memory:"), 0, 0)[-6:] == [
        "--data-dir",
        ":memory:",
        "--web-port",
        "0",
        "--api-port",
        "0",
    ]
