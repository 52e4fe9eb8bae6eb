"""``vigil worker --processes N``: N worker processes on one host, one command.

A worker process uses one core (the CEL library holds the GIL), and the design scales by
consumer-group members (invariant 7), so the supervisor starts N ordinary ``vigil worker``
processes in the same group; Kafka assigns each its partitions. Each child gets its own data
dir (``<data-dir>/process-<i>``; RocksDB locks a store per process) and its own ports
(``--web-port`` + i, ``--api-port`` + i, so ``/metrics``, ``/healthz`` and the check API of
process i are on the base ports plus i).

The supervisor does no Kafka work. SIGTERM or SIGINT is passed on to every child, which stops
cleanly (commits what it applied, leaves the group); a child still running after
``STOP_TIMEOUT_S`` is killed. A child that exits on its own stops the others and the supervisor
exits with that child's status, so the process manager above (systemd, Kubernetes) restarts
the whole set instead of running with fewer members than asked for. Children get SIGTERM
when the supervisor dies (Linux parent-death signal), so none is left orphaned.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: How long children get to stop after SIGTERM before they are killed.
STOP_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


def child_args(
    argv: Sequence[str], index: int, data_dir: Path, web_port: int, api_port: int
) -> list[str]:
    """The command line of child ``index``: the supervisor's own (``argv`` after the program
    name) without ``--processes``, then its data dir and ports (click keeps the last value)."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        args.append(arg)
    own_dir = data_dir if str(data_dir) == ":memory:" else data_dir / f"process-{index}"
    return [
        *args,
        "--processes",
        "1",
        "--data-dir",
        str(own_dir),
        "--web-port",
        str(web_port + index if web_port else 0),
        "--api-port",
        str(api_port + index if api_port else 0),
    ]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: children outlive a killed supervisor (documented)


def supervise(commands: Sequence[Sequence[str]]) -> int:
    """Run ``commands`` as children until a signal or a child's exit; return the exit status."""
    children = [
        subprocess.Popen(list(cmd), preexec_fn=_die_with_parent)  # noqa: S603 - our own argv
        for cmd in commands
    ]
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        while not stopping:
            exited = [c for c in children if c.poll() is not None]
            if exited:
                status = exited[0].returncode or 1
                print(
                    f"vigil worker: process {children.index(exited[0])} (pid {exited[0].pid}) "
                    f"exited with {exited[0].returncode}; stopping the others",
                    file=sys.stderr,
                )
                on_signal(signal.SIGTERM, None)
                break
            time.sleep(0.2)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.returncode not in (0, -signal.SIGTERM) and not status:
                status = child.returncode if child.returncode > 0 else 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status


def executable() -> list[str]:
    """How to start ``vigil`` again: this interpreter and the CLI module."""
    return [sys.executable, "-m", "streams.cli"]
