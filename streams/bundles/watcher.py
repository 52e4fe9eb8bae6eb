"""Finds newer policy bundles while a worker runs, and compiles them off the event loop.

Two sources, newest event wins:

* the compacted topic ``vigil.policy-bundles`` (``vigil policy push``): every worker reads it
  (no consumer group), so all workers switch to the same bundle;
* in development, the ``--policies`` directory: edits are picked up by polling its files.

A bundle that does not compile is refused (logged, counted); the running one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import metrics
from streams.bundles.bundle import Bundle, BundleError
from streams.kafka.quirks import read_to_end
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.policy import PolicyCompileError, PolicyEngine
from streams.policy.api import build_engine

log = logging.getLogger(__name__)


def directory_fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector: (path, mtime, size) of every file under the directory."""
    out = []
    for path in sorted(directory.rglob("*")):
        with contextlib.suppress(OSError):
            if path.is_file():
                st = path.stat()
                out.append((path.relative_to(directory).as_posix(), st.st_mtime_ns, st.st_size))
    return tuple(out)


class BundleWatcher:
    """Delivers compiled engines for bundles newer than the running one via ``poll()``."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        policies_dir: Path | None,
        workdir: Path,
        running_digest: str,
        poll_seconds: float = 1.0,
        security: KafkaSecurity = PLAINTEXT,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.engine_options = engine_options or {}  # the worker's, for every bundle it compiles
        self.bootstrap = bootstrap
        self.security = security
        self.topic = topic
        self.policies_dir = policies_dir
        self.workdir = workdir
        self.poll_seconds = poll_seconds
        self._latest_digest = running_digest
        self._ready: tuple[str, PolicyEngine] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._fingerprint = directory_fingerprint(policies_dir) if policies_dir else ()

    async def start(self) -> PolicyEngine | None:
        """Read the bundle topic to its end; return the engine of the newest pushed bundle if
        it differs from the running one (a restarted worker must run what was pushed)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=500,
            **self.security.client_kwargs(),
        )
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        newest: list[bytes] = []
        await read_to_end(self._consumer, [tp], lambda rec: newest.append(rec.value))
        engine = None
        for raw in reversed(newest):
            engine = await self._compile_record(raw)
            if engine is not None:
                break
        if engine is not None and engine.digest != self._latest_digest:
            self._latest_digest = engine.digest
        else:
            engine = None
        self._tasks = [asyncio.create_task(self._watch_topic(tp))]
        if self.policies_dir is not None:
            self._tasks.append(asyncio.create_task(self._watch_directory(self.policies_dir)))
        return engine

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.stop()

    def poll(self) -> tuple[str, PolicyEngine] | None:
        """The newest compiled bundle not yet taken, with its source ("push" or "directory")."""
        ready, self._ready = self._ready, None
        return ready

    def _offer(self, source: str, engine: PolicyEngine) -> None:
        if engine.digest == self._latest_digest:
            return
        self._latest_digest = engine.digest
        self._ready = (source, engine)
        log.warning("policy bundle %s from %s compiled; switching", engine.digest, source)

    async def _compile_record(self, raw: bytes | None) -> PolicyEngine | None:
        try:
            if raw is None:
                raise BundleError("empty bundle record")
            bundle = Bundle.from_bytes(raw)
            return await asyncio.to_thread(bundle.compile, self.workdir, **self.engine_options)
        except (BundleError, PolicyCompileError, OSError) as exc:
            metrics.POLICY_BUNDLE_REJECTED.labels("push").inc()
            log.error("refused a pushed policy bundle: %s", exc)
            return None

    async def _watch_topic(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(tp, timeout_ms=1000)
            for records in batch.values():
                for rec in records:
                    engine = await self._compile_record(rec.value)
                    if engine is not None:
                        self._offer("push", engine)

    async def _watch_directory(self, directory: Path) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            fingerprint = directory_fingerprint(directory)
            if fingerprint == self._fingerprint:
                continue
            self._fingerprint = fingerprint
            try:
                engine = await asyncio.to_thread(build_engine, directory, **self.engine_options)
            except PolicyCompileError as exc:
                metrics.POLICY_BUNDLE_REJECTED.labels("directory").inc()
                log.error("refused the edited policy directory %s:\n%s", directory, exc)
                continue
            self._offer("directory", engine)
