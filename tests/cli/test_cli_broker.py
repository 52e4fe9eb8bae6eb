"""``vigil broker`` in the foreground: prints its address, creates topics, stops on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka.broker import free_port
from streams.settings import Settings

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


def _ignore_sigint() -> None:
    """As for ``vigil broker &`` in a non-interactive shell: the child starts with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "sigint-ignored"])
@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM])
async def test_broker_command_runs_and_stops(stop_with: signal.Signals, background: bool) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "broker", "--port", str(port), "--partitions", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=_ignore_sigint if background else None,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == f"127.0.0.1:{port}"
        admin = AIOKafkaAdminClient(bootstrap_servers=line.strip())
        await admin.start()
        try:
            topics = {t["topic"]: t for t in await admin.describe_topics(Settings().all_topics)}
        finally:
            await admin.close()
        assert set(topics) == set(Settings().all_topics)
        assert all(len(t["partitions"]) == 2 for t in topics.values())
        proc.send_signal(stop_with)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "stopping the broker" in err
        # The port is released: Tansu really stopped, it was not orphaned.
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_broker_command_port_in_use(broker: str) -> None:
    port = broker.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "broker", "--port", port],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=30,
    )
    assert result.returncode == 1
    assert "already in use" in result.stderr
