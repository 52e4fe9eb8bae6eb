"""Finds newer policy bundles while a worker runs, and compiles them off the event loop.

Two sources, newest event wins:

* the compacted topic ``vigil.policy-bundles`` (``vigil policy push``): every worker reads it
  (no consumer group), so all workers see the same bundles and confirmations;
* in development, the ``--policies`` directory: edits are picked up by polling its files.

A record is checked before anything else happens (``Bundle.from_bytes``: digest format, file
paths, sizes), then its signature when public keys are configured, then it is compiled; any
failure refuses it (log line, ``vigil_policy_bundle_rejected_total{reason}``) and the running
bundle stays. The watcher only offers bundles: whether and when the worker switches is the
runner's blast-radius guard (``streams.processing.switch``).

After a restart, the bundle the worker ran (kept as ``running.json`` in its bundle directory
when it came from the topic) is the starting point; see ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streams import metrics
from streams.bundles.bundle import Bundle, BundleError, Confirmation, parse_record
from streams.bundles.signing import verify
from streams.kafka.quirks import read_to_end
from streams.policy import PolicyCompileError, PolicyEngine

log = logging.getLogger(__name__)

RUNNING_FILE = "running.json"
DIRECTORY_MARKER = "directory"  # running.json of a worker that runs its --policies directory


def directory_fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector: (path, mtime, size) of every file under the directory."""
    out = []
    for path in sorted(directory.rglob("*")):
        with contextlib.suppress(OSError):
            if path.is_file():
                st = path.stat()
                out.append((path.relative_to(directory).as_posix(), st.st_mtime_ns, st.st_size))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Offer:
    """A compiled bundle the worker may switch to; ``raw`` is the verified topic record
    (None for the ``--policies`` directory)."""

    source: str  # "push" | "directory" | "restart"
    engine: PolicyEngine
    raw: bytes | None = None

    @property
    def digest(self) -> str:
        return self.engine.digest


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
        public_keys: dict[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.policies_dir = policies_dir
        self.workdir = workdir
        self.poll_seconds = poll_seconds
        self.public_keys = public_keys
        self.confirmed: set[str] = set()  # digests an operator confirmed (verified records)
        self._latest_digest = running_digest
        self._ready: Offer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._fingerprint = directory_fingerprint(policies_dir) if policies_dir else ()

    async def start(self) -> Offer | None:
        """Read the bundle topic to its end and choose the bundle to start on.

        * The bundle this worker ran before the restart (``running.json``: the topic record,
          verified again with the current keys, or a marker for its ``--policies`` directory)
          is kept: the worker's grants were judged by it.
        * Without one (a new data dir), the newest valid pushed bundle wins over
          ``--policies``, as the other workers run it.
        * A newer pushed bundle than the one started on is then offered (``poll``) and goes
          through the runner's blast-radius guard like a live push.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=500
        )
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        records: list[bytes | None] = []
        await read_to_end(self._consumer, [tp], lambda rec: records.append(rec.value))
        newest: Offer | None = None
        for raw in reversed(records):
            record = self._check(raw)
            if isinstance(record, Confirmation):
                self.confirmed.add(record.digest)
            elif record is not None and newest is None:
                engine = await self._compile(record)
                if engine is not None:
                    newest = Offer("push", engine, raw)
        kept, running = await self._load_running()
        start = running if kept else newest
        if start is not None and start.digest != self._latest_digest:
            self._latest_digest = start.digest
        else:
            start = None
        if newest is not None and newest.digest != self._latest_digest:
            self._offer(newest)
        self._tasks = [asyncio.create_task(self._watch_topic(tp))]
        if self.policies_dir is not None:
            self._tasks.append(asyncio.create_task(self._watch_directory(self.policies_dir)))
        return start

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.stop()

    def poll(self) -> Offer | None:
        """The newest compiled bundle not yet taken."""
        ready, self._ready = self._ready, None
        return ready

    def remember_running(self, offer: Offer) -> None:
        """Keep the record of the bundle now running for the next start; for a directory bundle
        a marker (after a restart ``--policies`` is read again)."""
        path = self.workdir / RUNNING_FILE
        raw = offer.raw
        if raw is None:
            raw = orjson.dumps({"kind": DIRECTORY_MARKER, "digest": offer.digest})
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)

    async def _load_running(self) -> tuple[bool, Offer | None]:
        """(whether this data dir ran a bundle before, that bundle if it came from the topic
        and is still valid; None for the ``--policies`` directory)."""
        path = self.workdir / RUNNING_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return False, None
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(raw)
            if isinstance(doc, dict) and doc.get("kind") == DIRECTORY_MARKER:
                return True, None
        record = self._check(raw, "restart")
        if not isinstance(record, Bundle):
            return False, None
        engine = await self._compile(record, "restart")
        return engine is not None, (Offer("restart", engine, raw) if engine else None)

    def _offer(self, offer: Offer) -> None:
        if offer.digest == self._latest_digest:
            return
        self._latest_digest = offer.digest
        self._ready = offer
        log.warning("policy bundle %s from %s compiled", offer.digest, offer.source)

    def _reject(self, source: str, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, BundleError) else "compile"
        metrics.POLICY_BUNDLE_REJECTED.labels(source, reason).inc()
        log.error("refused a policy bundle record from %s (%s): %s", source, reason, exc)

    def _check(self, raw: bytes | None, source: str = "push") -> Bundle | Confirmation | None:
        """Parse and (when keys are configured) verify a record; None if refused."""
        try:
            record = parse_record(raw)
            if self.public_keys is not None:
                verify(self.public_keys, record.signed_bytes(), record.key_id, record.signature)
            return record
        except BundleError as exc:
            self._reject(source, exc)
            return None

    async def _compile(self, bundle: Bundle, source: str = "push") -> PolicyEngine | None:
        try:
            return await asyncio.to_thread(bundle.compile, self.workdir)
        except (BundleError, PolicyCompileError, OSError) as exc:
            self._reject(source, exc)
            return None

    async def _watch_topic(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(tp, timeout_ms=1000)
            for records in batch.values():
                for rec in records:
                    record = self._check(rec.value)
                    if isinstance(record, Confirmation):
                        self.confirmed.add(record.digest)
                        log.warning(
                            "policy bundle %s confirmed by %s", record.digest, record.source
                        )
                    elif record is not None:
                        engine = await self._compile(record)
                        if engine is not None:
                            self._offer(Offer("push", engine, rec.value))

    async def _watch_directory(self, directory: Path) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            fingerprint = directory_fingerprint(directory)
            if fingerprint == self._fingerprint:
                continue
            self._fingerprint = fingerprint
            try:
                engine = await asyncio.to_thread(PolicyEngine.from_directory, directory)
            except PolicyCompileError as exc:
                metrics.POLICY_BUNDLE_REJECTED.labels("directory", "compile").inc()
                log.error("refused the edited policy directory %s:\n%s", directory, exc)
                continue
            self._offer(Offer("directory", engine))
