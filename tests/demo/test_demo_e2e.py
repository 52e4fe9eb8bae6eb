"""``vigil demo`` end to end, as CI runs it: no terminal, fixed duration, its own broker.

Asserts the contract a user (and ``make demo`` in CI) relies on: exit code 0 after
``--duration``, at least one revocation and the dead letters of the deliberately malformed
inputs in the output, and nothing left behind (no broker or worker process, no temp dir).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_revokes_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["TMPDIR"] = str(tmp_path)  # the demo's temp dir lands here, so we can check it is gone
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--duration", "20", "--rate", "100"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    summary = re.search(r"^summary: .*$", proc.stdout, re.MULTILINE)
    assert summary, output[-3000:]
    revocations = int(re.search(r"revocations=(\d+)", summary.group(0)).group(1))  # type: ignore[union-attr]
    dead = int(re.search(r"dead_letters=(\d+)", summary.group(0)).group(1))  # type: ignore[union-attr]
    assert revocations >= 1, output[-3000:]
    assert dead >= 1, output[-3000:]
    assert re.search(r"REVOKED \S+ grant=\S+ denied=\S+ rule=\S+", proc.stdout)
    assert "DEAD-LETTER" in proc.stdout
    assert not list(tmp_path.glob("vigil-demo-*")), "temp dir left behind"
