"""The Vigil worker under test: a ``vigil worker`` subprocess with its own topics and group,
plus a poller for its Prometheus counters (the only progress signal that costs it nothing extra).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from streams.kafka.admin import ensure_topics
from streams.kafka.broker import free_port

REPO = Path(__file__).resolve().parent.parent
COUNTERS = {
    "signals": "vigil_signals_total",
    "grants": "vigil_grant_events_total",
    "decisions": "vigil_decisions_total",
    "revocations": "vigil_revocations_total",
    "deadletters": "vigil_deadletters_total",
}


def free_ports(n: int) -> int:
    """A port p such that p … p + n - 1 are all free now (one per worker process)."""
    while True:
        port = free_port()
        taken = False
        for extra in range(1, n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + extra))
                except OSError:
                    taken = True
                    break
        if not taken:
            return port


async def create_worker_topics(bootstrap: str, topics: dict[str, str], partitions: int) -> None:
    """The topics of ``topic_names``: the changelog compacted, the rest with delete retention."""
    await ensure_topics(
        bootstrap,
        [t for r, t in topics.items() if r != "changelog"],
        partitions,
        compacted=[topics["changelog"]],
    )


def topic_names(prefix: str) -> dict[str, str]:
    """Topic per role, all under ``prefix`` so bench runs never share topics with anything."""
    return {
        "identity": f"{prefix}signals.identity",
        "device": f"{prefix}signals.device",
        "network": f"{prefix}signals.network",
        "risk": f"{prefix}signals.risk",
        "grants": f"{prefix}authz.grants",
        "decisions": f"{prefix}authz.decisions",
        "revocations": f"{prefix}authz.revocations",
        "deadletter": f"{prefix}signals.deadletter",
        "changelog": f"{prefix}vigil.state-changelog",
        "subscriptions": f"{prefix}vigil.subscriptions",
    }


def snapshot(ref: str, dest: Path) -> str:
    """``git archive`` of streams/, policies/ and schemas/ at ``ref`` into ``dest`` (a worker
    ``source``): a fixed version to run while the working tree changes. Returns ``git REF (sha)``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", ref, "streams", "policies", "schemas"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    rev = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True
    )
    return f"git {ref} ({rev.stdout.strip()})"


def parse_counters(text: str) -> dict[str, float]:
    """Sum every labelled sample of each counter we watch (``*_total`` lines only)."""
    sums = dict.fromkeys(COUNTERS, 0.0)
    names = {v: k for k, v in COUNTERS.items()}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        key = names.get(name)
        if key is not None:
            sums[key] += float(line.rsplit(" ", 1)[1])
    return sums


@dataclass(slots=True)
class Sample:
    t: float
    counts: dict[str, float]


class Worker:
    """``vigil worker`` as a subprocess; ``counters()`` scrapes ``/metrics``."""

    def __init__(
        self,
        bootstrap: str,
        data_dir: Path,
        topics: dict[str, str],
        group: str,
        source: Path | None = None,
        env: dict[str, str] | None = None,
        fetch_trace: Path | None = None,
        processes: int = 1,
    ) -> None:
        self.fetch_trace = fetch_trace  # VIGIL_FETCH_TRACE of the worker (None: off)
        self.processes = processes  # ``--processes``: ports self.port + 0 … processes - 1
        self.source = source  # a ``git archive`` of streams/ + policies/, or None = working tree
        self.extra_env = env or {}  # e.g. the loop probe (bench/loop_probe)
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.topics = topics
        self.group = group
        self.port = free_ports(processes)
        self.api_port = free_port()  # the check API (``--api-port``)
        self.proc: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.log_path = data_dir / "worker.log"
        # longest /healthz probe while waiting for healthy (10 s = no answer: its loop was busy)
        self.slowest_probe_s = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def server_pids(self) -> dict[str, int]:
        """The processes doing the work, for CPU shares: the worker, or with ``processes`` > 1
        the supervisor's children (``/proc/<pid>/task/<pid>/children``)."""
        if self.processes == 1:
            return {"worker": self.pid}
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return {f"worker_{i}": int(pid) for i, pid in enumerate(children, 1)}

    def start(self) -> None:
        # the bench's own embedded broker is plaintext: drop TLS/SASL meant for a real cluster
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_KAFKA_")}
        for role, name in self.topics.items():
            env[f"VIGIL_TOPIC_{role.upper()}"] = name
        env["VIGIL_GROUP_ID"] = self.group
        # several workers per host (older code ignores it)
        env["VIGIL_API_PORT"] = str(self.api_port)
        if self.fetch_trace is not None:
            env["VIGIL_FETCH_TRACE"] = str(self.fetch_trace)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        root = self.source or REPO
        if self.source is None:
            prog = [str(Path(sys.executable).with_name("vigil"))]
        else:  # the same console script, importing ``streams`` from the snapshot (cwd first)
            prog = [sys.executable, "-c", "from streams.cli import main; main()"]
            env["PYTHONPATH"] = str(root)
        for name, value in self.extra_env.items():
            env[name] = (
                os.pathsep.join([env[name], value])
                if name == "PYTHONPATH" and env.get(name)
                else value
            )
        cmd = [
            *prog,
            "worker",
            "--broker",
            self.bootstrap,
            "--data-dir",
            str(self.data_dir),
            "--web-port",
            str(self.port),
            "--policies",
            str(root / "policies"),
        ]
        if self.processes > 1:
            self.api_port = free_ports(self.processes)
            cmd += ["--processes", str(self.processes), "--api-port", str(self.api_port)]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)

    async def wait_healthy(self, timeout: float = 90.0) -> float:
        """Wait for ``/healthz`` = 200 (partitions assigned and restored); return seconds taken."""
        started = time.monotonic()
        urls = [f"http://127.0.0.1:{p}/healthz" for p in self.ports]
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")
            asked = time.monotonic()
            try:
                healthy = 0
                for url in urls:
                    async with self.session().get(url) as resp:
                        healthy += resp.status == 200
                if healthy == len(urls):
                    return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):  # not listening yet, or its loop is busy
                pass
            self.slowest_probe_s = max(self.slowest_probe_s, time.monotonic() - asked)
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"worker not healthy after {timeout}s; see {self.log_path}")
            await asyncio.sleep(0.25)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def wait_api_ready(self, timeout: float = 60.0) -> None:
        """Wait for the check API's ``/_cerbos/health`` = 200 (signal state and replica loaded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with self.session().get(f"{self.api_url}/_cerbos/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"check API not ready after {timeout}s; see {self.log_path}")
            await asyncio.sleep(0.25)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the worker's output: the reason it died, for the report."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no worker log)"

    def session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    @property
    def ports(self) -> list[int]:
        """Web ports of the worker's processes (one unless ``processes`` > 1)."""
        return [self.port + i for i in range(self.processes)]

    async def wait_assigned(self, partitions: int, timeout: float = 120.0) -> None:
        """Wait until the processes together own ``partitions`` partitions, each at least one
        (the group has settled: no rebalance will move state in the middle of a measurement)."""
        deadline = time.monotonic() + timeout
        while True:
            owned = []
            for port in self.ports:
                async with self.session().get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                owned.append(
                    sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in text.splitlines()
                        if line.startswith("vigil_assigned_partitions ")
                    )
                )
            if sum(owned) == partitions and all(owned):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions owned per process {owned} after {timeout}s")
            await asyncio.sleep(0.5)

    async def counters(self) -> Sample:
        """The counters summed over every process of the worker."""
        sums: dict[str, float] = {}
        for port in self.ports:
            async with self.session().get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            for key, value in parse_counters(text).items():
                sums[key] = sums.get(key, 0.0) + value
        return Sample(time.perf_counter(), sums)

    async def wait_for(self, key: str, target: float, timeout: float, every: float = 0.5) -> Sample:
        """Poll until counter ``key`` reaches ``target``; raise on timeout with the last value."""
        deadline = time.monotonic() + timeout
        while True:
            sample = await self.counters()
            if sample.counts[key] >= target:
                return sample
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{key}={sample.counts[key]:.0f} < {target:.0f} after {timeout}s"
                )
            await asyncio.sleep(every)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)
