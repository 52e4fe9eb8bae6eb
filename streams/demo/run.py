"""Runs the whole demo: broker, topics, one worker process, the simulator and the live view.

Everything it starts it also stops, in reverse order, on ``--duration``, Ctrl-C or SIGTERM:
simulator, view, worker (SIGTERM, then SIGKILL), broker, temp directory. The broker and the
worker run in their own sessions so a terminal's Ctrl-C (sent to the whole foreground process
group) reaches only the demo, which then shuts them down in order instead of all dying at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aiokafka import AIOKafkaProducer

from streams.defaults import resolve_policies, resolve_risk_model
from streams.demo.simulator import Outgoing, SimTopics, Simulator
from streams.demo.view import DemoStats, LiveView
from streams.kafka.acked import JSON_HEADERS
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.settings import Settings

#: One deliberately bad input this often, so dead letters (with reasons) show throughout.
MALFORMED_EVERY_S = 5.0
#: Producer tick: the rate is honoured on average over ticks of this length.
TICK_S = 0.1
WORKER_READY_TIMEOUT_S = 90.0
WORKER_STOP_TIMEOUT_S = 10.0
#: After the simulator stops, how long the view keeps reading the last decisions.
DRAIN_S = 1.5
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: The checkout this package runs from: default policies and risk model live there.
REPO_ROOT = Path(__file__).resolve().parents[2]


class DemoError(RuntimeError):
    """A part of the demo could not start; the message says which and why."""


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """The options of ``vigil demo``, plus the settings they resolve against."""

    settings: Settings
    external_broker: bool
    duration: float | None
    rate: float
    seed: int
    policies: Path
    risk_model: Path | None = None
    tty: bool | None = None
    #: TLS/SASL of an external broker; the embedded broker is always plaintext
    security: KafkaSecurity = PLAINTEXT


def status(message: str) -> None:
    """Progress on stderr, so stdout carries only the view."""
    print(f"vigil demo: {message}", file=sys.stderr, flush=True)


class WorkerProcess:
    """``python -m streams.cli worker`` with its own data dir, web port and log file."""

    def __init__(
        self,
        bootstrap: str,
        policies: Path,
        workdir: Path,
        risk_model: Path | None = None,
        *,
        embedded_broker: bool = False,
    ) -> None:
        self.bootstrap = bootstrap
        self.embedded_broker = embedded_broker
        self.policies = policies
        self.risk_model = risk_model
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "worker.log"
        self.web_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """The worker's environment: ours, minus TLS/SASL settings when the broker is the
        embedded one (it speaks plaintext only; they are meant for a real cluster)."""
        # The worker runs inside the temp dir (faust writes ``<app id>-data`` into its working
        # directory), so every path it gets is absolute and the repo is on its import path.
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not (self.embedded_broker and k.startswith("VIGIL_KAFKA_"))
            },
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": pythonpath,
            "VIGIL_BROKER": self.bootstrap,
        }
        if self.risk_model is not None:
            env["VIGIL_RISK_MODEL"] = str(self.risk_model)
        return env

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = self.environment()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--broker",
                self.bootstrap,
                "--policies",
                str(self.policies),
                "--data-dir",
                str(self.data_dir),
                "--web-port",
                str(self.web_port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 20) -> str:
        """The end of the worker's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        text = ANSI_ESCAPE.sub("", text)  # faust's spinner writes cursor codes
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    def _get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (OSError, ValueError):
            return 0, b""

    async def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT_S) -> None:
        """Until ``GET /healthz`` says 200 / ``ready: true``; fail fast if the worker dies."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise DemoError(f"worker exited with code {code}:\n{self.log_tail()}")
            code, body = await asyncio.to_thread(self._get, "/healthz")
            if code == 200:
                with contextlib.suppress(ValueError):
                    if json.loads(body).get("ready") is True:
                        return
            if time.monotonic() > deadline:
                raise DemoError(f"worker not ready after {timeout:.0f}s:\n{self.log_tail()}")
            await asyncio.sleep(0.25)

    async def signals_consumed(self) -> int:
        """``vigil_signals_total`` summed over outcomes, from the worker's /metrics."""
        code, body = await asyncio.to_thread(self._get, "/metrics")
        if code != 200:
            return 0
        total = 0.0
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("vigil_signals_total"):
                with contextlib.suppress(ValueError, IndexError):
                    total += float(line.rsplit(" ", 1)[1])
        return int(total)

    async def stop(self, force: asyncio.Event) -> None:
        """SIGTERM, wait up to ``WORKER_STOP_TIMEOUT_S`` (less if ``force`` is set), SIGKILL."""
        proc, self.proc = self.proc, None
        try:
            if proc is None or proc.poll() is not None:
                return
            proc.terminate()
            deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline and not force.is_set():
                await asyncio.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


class Sender:
    """Produces simulator records as JSON keyed by subject, and counts them in ``DemoStats``."""

    def __init__(self, producer: AIOKafkaProducer, stats: DemoStats) -> None:
        self.producer = producer
        self.stats = stats

    async def send(self, records: list[Outgoing]) -> None:
        for out in records:
            self.stats.record_sent(out, int(time.time() * 1000))
            await self.producer.send(
                out.topic, out.value, key=out.key.encode(), headers=JSON_HEADERS
            )


async def _wait_applied(
    worker: WorkerProcess, at_least: int, stop: asyncio.Event, timeout: float = 15.0
) -> None:
    """Until the worker has consumed the initial signals, so grants see a healthy state.

    Signals and grants travel on different topics, whose relative order the worker does not
    promise; a grant evaluated before its subject's device signal would be revoked at once.
    """
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        if await worker.signals_consumed() >= at_least:
            return
        await asyncio.sleep(0.2)
    if not stop.is_set():
        status("worker has not confirmed the initial signals; issuing grants anyway")


async def watch_worker(worker: WorkerProcess, stop: asyncio.Event) -> int | None:
    """The worker's exit code if it dies while the demo runs (then ``stop`` is set), else None.

    A crashed worker would otherwise leave the view silently frozen.
    """
    while not stop.is_set():
        proc = worker.proc
        if proc is not None and proc.poll() is not None:
            stop.set()
            return proc.returncode
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return None


async def simulate(sim: Simulator, sender: Sender, config: DemoConfig, stop: asyncio.Event) -> None:
    """Feed the simulator's steady stream at ``config.rate`` until ``stop`` or the duration."""
    loop = asyncio.get_running_loop()
    started = last = last_bad = loop.time()
    owed = 0.0
    while not stop.is_set():
        now = loop.time()
        if config.duration is not None and now - started >= config.duration:
            return
        owed += config.rate * (now - last)
        last = now
        count = int(owed)
        owed -= count
        records = sim.step(int(time.time() * 1000), count)
        if now - last_bad >= MALFORMED_EVERY_S:  # bad input keeps coming, as in real life
            last_bad = now
            records.append(sim.one_malformed(int(time.time() * 1000)))
        await sender.send(records)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)


async def run_demo(config: DemoConfig) -> int:
    """The whole demo; returns the exit code (0 also after Ctrl-C)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()  # first Ctrl-C / SIGTERM: wind down in order
    force = asyncio.Event()  # second one: do not wait for the worker
    main = asyncio.current_task()
    starting = True

    def on_signal() -> None:
        if stop.is_set():
            force.set()
            status("stopping now")
            return
        stop.set()
        status("stopping ...")
        if starting and main is not None:
            main.cancel()  # interrupt whatever start-up step is waiting

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="vigil-demo-"))
    cleanups: list[Callable[[], Awaitable[None]]] = []
    settings = config.settings
    tasks: list[asyncio.Task[None]] = []
    code = 0
    try:
        bootstrap = settings.bootstrap_servers
        if not config.external_broker:
            broker = EmbeddedBroker(
                own_session=True,
            )

            async def stop_broker() -> None:
                await asyncio.to_thread(broker.stop)

            cleanups.append(stop_broker)
            status("starting the embedded broker ...")
            bootstrap = await asyncio.to_thread(broker.start)
        status(f"broker {bootstrap}; creating topics")
        await ensure_topics(
            bootstrap,
            [*settings.input_topics, *settings.output_topics],
            settings.partitions,
            compacted=settings.compacted_topics,
            security=config.security,
        )
        worker = WorkerProcess(
            bootstrap,
            config.policies,
            workdir,
            config.risk_model,
            embedded_broker=not config.external_broker,
        )

        async def stop_worker() -> None:
            await worker.stop(force)

        cleanups.append(stop_worker)
        worker.start()
        assert worker.proc is not None
        status(f"worker pid {worker.proc.pid}, web port {worker.web_port}; waiting for /healthz")
        await worker.wait_ready()

        stats = DemoStats()
        view = LiveView(
            bootstrap,
            stats,
            decisions_topic=settings.topic_decisions,
            revocations_topic=settings.topic_revocations,
            deadletter_topic=settings.topic_deadletter,
            info={
                "broker": bootstrap,
                "worker": f"pid {worker.proc.pid} :{worker.web_port}",
                "rate": f"{config.rate:g}/s",
                "seed": str(config.seed),
            },
            tty=config.tty,
            security=config.security,
        )
        await view.start()
        cleanups.append(view.stop)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, **config.security.client_kwargs()
        )
        await producer.start()
        cleanups.append(producer.stop)
        sender = Sender(producer, stats)
        sim = Simulator(
            config.seed,
            run_id=f"r{int(time.time()) % 100000:05d}",
            topics=SimTopics(
                identity=settings.topic_identity,
                device=settings.topic_device,
                network=settings.topic_network,
                risk=settings.topic_risk,
                grants=settings.topic_grants,
            ),
        )
        status("ready; simulating" + (f" for {config.duration:g}s" if config.duration else ""))
        view_task = asyncio.create_task(view.run(stop))
        watchdog = asyncio.create_task(watch_worker(worker, stop))
        tasks.append(view_task)
        starting = False
        initial = sim.initial_signals(int(time.time() * 1000))
        await sender.send(initial)
        await producer.flush()
        await _wait_applied(worker, len(initial), stop)
        if not stop.is_set():
            now_ms = int(time.time() * 1000)
            await sender.send(sim.initial_grants(now_ms) + sim.malformed(now_ms))
            await simulate(sim, sender, config, stop)
        await producer.flush()
        if not force.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(force.wait(), DRAIN_S)
        stop.set()
        await view_task
        died = await watchdog
        if died is not None:
            status(f"error: the worker exited with code {died}:\n{worker.log_tail()}")
            code = 1
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        if main is not None:
            main.uncancel()  # interrupted during start-up on purpose: clean up normally
    except DemoError as exc:
        status(f"error: {exc}")
        code = 1
    except Exception as exc:  # broker, topics, Kafka clients: say what failed, then clean up
        status(f"error: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        stop.set()
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception as exc:  # keep cleaning up the rest
                status(f"while stopping: {exc!r}")
        shutil.rmtree(workdir, ignore_errors=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    status("stopped")
    return code


def default_policies(settings: Settings) -> Path:
    """The configured policy directory if it exists, else the checkout's ``policies/``."""
    return resolve_policies(settings.policies, explicit=False)[0]


def default_risk_model(settings: Settings) -> Path | None:
    """The configured risk model file if it exists, else the checkout's; None if neither.

    Absolute, because the worker runs in the temp dir; None leaves the worker's own default.
    """
    return resolve_risk_model(settings.risk_model, explicit=False)[0]


def run(config: DemoConfig) -> int:
    """Synchronous entry point for the click command."""
    return asyncio.run(run_demo(config))


__all__ = ["DemoConfig", "DemoError", "default_policies", "default_risk_model", "run", "run_demo"]
