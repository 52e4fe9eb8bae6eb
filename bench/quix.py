"""Driver for the Quix Streams peer: subprocess, progress parsing, readiness."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from bench.worker import REPO, Sample


class QuixPeer:
    """``python -m bench.quix_app`` as a subprocess; ``sample()`` gives its processed count."""

    def __init__(
        self, bootstrap: str, group: str, state_dir: Path, output: str, inputs: list[str]
    ) -> None:
        self.args = [bootstrap, group, str(state_dir), output, *inputs]
        self.state_dir = state_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.count = 0.0
        self.tail: list[str] = []  # non-progress output (errors), for the report
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.quix_app",
            *self.args,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            parts = line.split(" ")
            if len(parts) == 2 and parts[1].isdigit():
                self.count = float(parts[1])
            else:
                self.tail = [*self.tail[-40:], line]

    async def sample(self) -> Sample:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(f"quix app exited ({self.proc.returncode}): " + "\n".join(self.tail))
        return Sample(time.perf_counter(), {"processed": self.count})

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
