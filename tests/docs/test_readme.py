"""README.md's shell blocks, run as written from a fresh directory, so the README cannot drift.

Every ```sh block of README.md is joined, in order, into one bash script (``set -euo pipefail``)
and run in an empty temporary directory with ``.venv/bin`` first on PATH. Changes to the text,
all explicit and listed here:

- ``EXCLUDED``: lines that are not run, each with the reason (long-running targets).
- ``PORTS``: the README's fixed ports are replaced by free ones, so the test never collides with
  a broker or worker someone runs by hand (or another test run) on this shared machine.

The script gets its own embedded broker (the README's ``vigil broker &`` line, on a free port):
the README uses the default topic names and consumer group, which other tests on the session
broker may use too. Background jobs (broker, worker) are stopped when the script ends.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.kafka.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

#: Lines not run, with the reason.
EXCLUDED = {
    "make demo": "runs until Ctrl-C (its pieces are tested in tests/demo)",
    "make test": "the test suite itself (this test is part of it)",
}
#: Fixed ports of the README -> replaced by free ports at run time.
PORTS = {"9092": "Kafka bootstrap port", "6066": "the worker's web port"}
#: the check API's default port: the README's worker uses it without a flag, so the test gives
#: that worker a free port through VIGIL_API_PORT and points the README's curl at it
API_PORT = "3592"


def shell_blocks(text: str) -> list[str]:
    """The bodies of the ```sh blocks, in order."""
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def runnable(blocks: list[str]) -> tuple[str, list[str]]:
    """The script to run, and the excluded lines that were found (each must still be there)."""
    lines: list[str] = []
    excluded: list[str] = []
    for block in blocks:
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command in EXCLUDED:
                excluded.append(command)
                continue
            lines.append(line)
    return "\n".join(lines) + "\n", excluded


def test_readme_blocks_are_found() -> None:
    script, excluded = runnable(shell_blocks(README.read_text()))
    assert sorted(excluded) == sorted(EXCLUDED), "an EXCLUDED line is gone: update EXCLUDED"
    for port in [*PORTS, API_PORT]:
        assert port in script, f"port {port} no longer in the README: update PORTS"
    assert "vigil worker" in script and "vigil policy eval" in script


@pytest.mark.timeout(300)
def test_readme_runs_as_written(tmp_path: Path) -> None:
    script, _ = runnable(shell_blocks(README.read_text()))
    for port in PORTS:
        script = re.sub(rf"\b{port}\b", str(free_port()), script)
    api_port = str(free_port())
    script = re.sub(rf"\b{API_PORT}\b", api_port, script)
    runner = tmp_path / "readme.sh"
    runner.write_text(
        "set -euo pipefail\n"
        # stop the README's background jobs (broker, worker) whatever happens
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
    )
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_API_PORT"] = api_port
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", str(runner)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = done.stdout
    assert done.returncode == 0, f"README script failed:\n{out}\n--- stderr ---\n{done.stderr}"
    assert "\x1b" not in out  # no terminal escapes in piped output (faust's spinner)
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # what the README promises the reader will see
    assert any(r.get("ready") is True for r in records)  # vigil health --wait
    revocations = [r for r in records if "revocation_id" in r]
    assert [(r["grant_id"], r["rule"], r["cause"]) for r in revocations] == [
        (
            "g1",
            "write-needs-compliant-device",
            {"kind": "signal", "event_id": "e2", "signal_type": "device-compliance-change"},
        )
    ]
    decisions = {r["cause"]["kind"]: r["effect"] for r in records if "effect" in r}
    assert decisions == {"grant-issued": "EFFECT_ALLOW", "signal": "EFFECT_DENY"}
    answers = {r["requestId"]: r["results"][0]["actions"] for r in records if "requestId" in r}
    assert answers == {
        "r1": {"read": "EFFECT_ALLOW", "write": "EFFECT_DENY"},  # curl: after the revocation
        "ok": {"write": "EFFECT_ALLOW"},
        "bad": {"write": "EFFECT_DENY"},
    }
    # curl on the revocation stream: the ready event, then g1's revocation (principal alice)
    streamed = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("data: ")]
    assert [e.get("grant_id") for e in streamed] == [None, "g1"]
    assert "cursor" in streamed[0]
    assert "using the checkout's" in done.stderr  # a fresh directory has no ./policies
