"""Run a real ``vigil worker`` process against the session broker, with its own topics and group.

Each harness gets uuid-suffixed topic names and group id (tests share one broker), a data dir,
and a free web port. ``wait_processed`` waits until the worker's committed offsets reach the true
end of every input partition (``streams.kafka.quirks.end_offsets``), so a test can assert that
something did *not* happen.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.codecs import decode_any
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import free_port
from streams.kafka.quirks import end_offsets
from tests.kafka_helpers import consume_all, produce_json, unique_name

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
TOPIC_SETTINGS = {
    "identity": "signals.identity",
    "device": "signals.device",
    "network": "signals.network",
    "risk": "signals.risk",
    "grants": "authz.grants",
    "subscriptions": "vigil.subscriptions",
    "decisions": "authz.decisions",
    "revocations": "authz.revocations",
    "deadletter": "signals.deadletter",
    "changelog": "vigil.state-changelog",
    "bundles": "vigil.policy-bundles",
}


class Worker:
    def __init__(self, bootstrap: str, data_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.topics = {name: unique_name(default) for name, default in TOPIC_SETTINGS.items()}
        self.group = unique_name("vigil-test")
        self.web_port = free_port()
        self.web_host = "127.0.0.1"  # VIGIL_WEB_HOST; any 127.x address is loopback too
        self.api_port = free_port()  # the check API (Cerbos' 3592 is shared by every worker)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-worker.log"
        self.policies = ROOT / "policies"
        self.extra_env: dict[str, str] = {}  # e.g. VIGIL_* settings a test needs

    def replacement(self, data_dir: Path) -> Worker:
        """A new worker for the same topics and group (takes over this one's partitions)."""
        other = Worker(self.bootstrap, data_dir)
        other.topics = dict(self.topics)
        other.group = self.group
        other.extra_env = dict(self.extra_env)
        return other

    @property
    def inputs(self) -> list[str]:
        names = ("identity", "device", "network", "risk", "grants", "subscriptions")
        return [self.topics[n] for n in names]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({f"VIGIL_TOPIC_{name.upper()}": topic for name, topic in self.topics.items()})
        env.update(
            {
                "VIGIL_BROKER": self.bootstrap,
                "VIGIL_GROUP_ID": self.group,
                "VIGIL_PARTITIONS": str(PARTITIONS),
                "VIGIL_POLICIES": str(self.policies),
                "VIGIL_RISK_MODEL": str(ROOT / "risk" / "model.yaml"),
                "VIGIL_DATA_DIR": str(self.data_dir),
                "VIGIL_WEB_PORT": str(self.web_port),
                "VIGIL_WEB_HOST": self.web_host,
                "VIGIL_API_PORT": str(self.api_port),
            }
        )
        env.update(self.extra_env)
        return env

    async def create_topics(self) -> None:
        await ensure_topics(
            self.bootstrap,
            [t for n, t in self.topics.items() if n not in ("changelog", "bundles")],
            PARTITIONS,
            compacted=[self.topics["changelog"]],
        )
        await ensure_topics(self.bootstrap, [], 1, compacted=[self.topics["bundles"]])

    async def start(self, timeout: float = 180.0) -> None:
        await self.create_topics()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        url = f"http://{self.web_host}:{self.web_port}/healthz"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready after {timeout}s: {self.log()}")
            await asyncio.sleep(0.2)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def health(self) -> dict[str, Any]:
        url = f"http://{self.web_host}:{self.web_port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return dict(json.loads(resp.read()))

    def health_status(self) -> tuple[int, dict[str, Any]]:
        """``/healthz`` HTTP status and body, also when it answers 503."""
        try:
            with urllib.request.urlopen(
                f"http://{self.web_host}:{self.web_port}/healthz", timeout=2
            ) as resp:
                return resp.status, dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return exc.code, dict(json.loads(exc.read()))

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples (all label sets) from the worker's /metrics."""
        url = f"http://{self.web_host}:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    async def produce(self, topic: str, records: list[dict[str, Any]]) -> None:
        await produce_json(self.bootstrap, self.topics[topic], records)

    async def produce_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(self.topics[topic], value, key=key)
        finally:
            await producer.stop()

    async def wait_processed(self, timeout: float = 30.0) -> None:
        """Wait until the worker has committed every input record produced so far."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in self.inputs for p in range(PARTITIONS)]
            ends = await end_offsets(consumer, tps)
            deadline = time.monotonic() + timeout
            while True:
                behind = {}
                for tp in tps:
                    committed = await consumer.committed(tp) or 0
                    if committed < ends[tp]:
                        behind[tp] = (committed, ends[tp])
                if not behind:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker still behind: {behind}\n{self.log()}")
                await asyncio.sleep(0.1)
        finally:
            await consumer.stop()

    async def wait_for_records(self, topic: str, count: int, timeout: float = 30.0) -> None:
        """Return as soon as ``topic`` holds ``count`` records (the worker is mid-stream)."""
        await consume_all(self.bootstrap, self.topics[topic], timeout=timeout, expected=count)

    async def read(self, topic: str) -> list[dict[str, Any]]:
        """Every record of an output topic, decoded (Avro or JSON) to its JSON shape."""
        records = await consume_all(self.bootstrap, self.topics[topic], timeout=15)
        registry = self.extra_env.get("VIGIL_SCHEMA_REGISTRY_URL")
        return [
            decode_any(r.value, list(r.headers), registry)[1]
            for r in records
            if r.value is not None
        ]
