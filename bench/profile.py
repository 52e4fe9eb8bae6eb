"""py-spy around the worker: a flame graph (SVG) and a top-functions-by-own-time table.

Two ``py-spy record`` samplers run side by side (``--nonblocking``: they read the worker's memory
without stopping it, so they perturb it least): one writes the SVG, one the collapsed stacks
that ``top_functions`` turns into a table. py-spy writes its output when it gets SIGINT.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 100  # samples per second


def pyspy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found


class Profiler:
    def __init__(self, pid: int, out_dir: Path) -> None:
        self.pid = pid
        self.svg = out_dir / "profile.svg"
        self.raw = out_dir / "profile.txt"
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        for fmt, path in (("flamegraph", self.svg), ("raw", self.raw)):
            cmd = [
                pyspy(),
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                str(RATE),
                "--nonblocking",
                "--format",
                fmt,
                "--output",
                str(path),
            ]
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
                )
            )
        await asyncio.sleep(1.0)  # let py-spy attach before the load starts
        for p in self.procs:
            if p.returncode is not None:
                err = (await p.stderr.read()).decode() if p.stderr else ""
                raise RuntimeError(f"py-spy exited at once: {err.strip()}")

    async def stop(self) -> None:
        for p in self.procs:
            if p.returncode is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 60)
            except TimeoutError:
                p.kill()


_REPO = str(Path(__file__).resolve().parents[1]) + "/"  # any checkout, not one path
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` → ``pkg/mod.py:func``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", _REPO, "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{m.group('func')}"


def top_functions(raw: Path, n: int = 10) -> dict[str, Any]:
    """Own (leaf) and total (anywhere on the stack) sample shares per function."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for f in set(frames):
            total[f] += count

    def share(c: int) -> float:
        return round(100 * c / samples, 1) if samples else 0.0

    return {
        "samples": samples,
        "own": [{"function": f, "pct": share(c)} for f, c in own.most_common(n)],
        "total": [{"function": f, "pct": share(c)} for f, c in total.most_common(n + 15)],
        "streams_total": [
            {"function": f, "pct": share(c)}
            for f, c in total.most_common()
            if f.startswith("streams/") and f != "streams/cli.py:main"
        ][: n + 10],
    }
