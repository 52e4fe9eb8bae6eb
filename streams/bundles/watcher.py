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

After a restart, the bundle the worker ran (kept as ``running.json`` in its bundle directory,
whether it came from the topic or from ``--policies``) is the starting point; see ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streams import metrics
from streams.bundles.bundle import Bundle, BundleError, Confirmation, parse_record
from streams.bundles.signing import verify
from streams.kafka.quirks import read_to_end
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.policy import PolicyCompileError, PolicyEngine

log = logging.getLogger(__name__)

RUNNING_FILE = "running.json"  # {"origin": "topic" | "directory", "record": bundle record}


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
    """A compiled bundle the worker may switch to, with its record (a verified topic record, or
    one made from the ``--policies`` directory) so that a restart can run it again."""

    source: str  # "push" | "directory" | "restart" (metric label)
    engine: PolicyEngine
    raw: bytes
    origin: str = "topic"  # "topic" | "directory"

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
        self.public_keys = public_keys
        self.confirmed: set[str] = set()  # digests an operator confirmed (verified records)
        self._latest_digest = running_digest
        self._ready: Offer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._fingerprint = directory_fingerprint(policies_dir) if policies_dir else ()

    async def start(self) -> Offer | None:
        """Read the bundle topic to its end and choose the bundle to start on.

        * The bundle this worker ran before the restart (``running.json``; a topic record is
          verified again with the current keys) is kept: the worker's grants were judged by it.
        * Without one (a new data dir), the newest valid pushed bundle wins over
          ``--policies``, as the other workers run it.
        * Then a different bundle is offered (``poll``) and goes through the runner's
          blast-radius guard like a live push: the newest pushed one, or, for a worker that ran
          its directory, the ``--policies`` directory if it changed while the worker was down.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=500,
            **self.security.client_kwargs(),
        )
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        records: list[bytes | None] = []
        await read_to_end(self._consumer, [tp], lambda rec: records.append(rec.value))
        newest: Offer | None = None
        for raw in reversed(records):
            if newest is not None and not _is_confirmation(raw):
                continue  # older than the bundle found: neither used nor reported again
            record = self._check(raw)
            if isinstance(record, Confirmation):
                self.confirmed.add(record.digest)
            elif record is not None and newest is None:
                engine = await self._compile(record)
                if engine is not None and raw is not None:
                    newest = Offer("push", engine, raw)
        running = await self._load_running()
        start = running or newest
        if start is not None and start.digest != self._latest_digest:
            self._latest_digest = start.digest
        else:
            start = None
        if newest is not None and newest.digest != self._latest_digest:
            self._offer(newest)
        elif running is not None and running.origin == "directory":
            directory = await self._directory_offer()
            if directory is not None:
                self._offer(directory)
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
        """Keep the record of the bundle now running for the next start."""
        path = self.workdir / RUNNING_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"origin": offer.origin, "record": orjson.loads(offer.raw)}))
        os.replace(tmp, path)

    async def remember_directory(self, digest: str) -> None:
        """At first start on ``--policies``: keep that bundle (if the directory still has the
        digest the worker compiled), so that an edit made while the worker is down goes through
        the guard at the next start instead of being run at once."""
        offer = await self._directory_offer()
        if offer is not None and offer.digest == digest:
            self.remember_running(offer)

    async def _directory_offer(self) -> Offer | None:
        if self.policies_dir is None:
            return None
        try:
            bundle = await asyncio.to_thread(
                Bundle.from_directory, self.policies_dir, "directory", **self.engine_options
            )
        except (BundleError, PolicyCompileError, OSError) as exc:
            metrics.POLICY_BUNDLE_REJECTED.labels("directory", _reason(exc)).inc()
            log.error("refused the policy directory %s:\n%s", self.policies_dir, exc)
            return None
        assert bundle.engine is not None
        return Offer("directory", bundle.engine, bundle.to_bytes(), "directory")

    async def _load_running(self) -> Offer | None:
        """The bundle this worker ran before, if its record is still valid. A topic record is
        verified again (a key removed from the key file no longer counts); a directory record
        was made by this worker from its own ``--policies`` and is only checked."""
        path = self.workdir / RUNNING_FILE
        try:
            doc = orjson.loads(path.read_bytes())
            origin, raw = doc["origin"], orjson.dumps(doc["record"])
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self._reject("restart", BundleError(f"{path}: {exc}", "corrupt"))
            return None
        try:
            record = Bundle.from_bytes(raw)
        except BundleError as exc:
            self._reject("restart", exc)
            return None
        if origin != "directory" and self._check(raw, "restart") is None:
            return None
        engine = await self._compile(record, "restart")
        if engine is None:
            return None
        return Offer("restart", engine, raw, "directory" if origin == "directory" else "topic")

    def _offer(self, offer: Offer) -> None:
        if offer.digest == self._latest_digest:
            return
        self._latest_digest = offer.digest
        self._ready = offer
        log.warning("policy bundle %s from %s compiled", offer.digest, offer.source)

    def _reject(self, source: str, exc: Exception) -> None:
        reason = _reason(exc)
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
            return await asyncio.to_thread(bundle.compile, self.workdir, **self.engine_options)
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
                        if engine is not None and rec.value is not None:
                            self._offer(Offer("push", engine, rec.value))

    async def _watch_directory(self, directory: Path) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            fingerprint = directory_fingerprint(directory)
            if fingerprint == self._fingerprint:
                continue
            self._fingerprint = fingerprint
            offer = await self._directory_offer()
            if offer is not None:
                self._offer(offer)


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, BundleError) else "compile"


def _is_confirmation(raw: bytes | None) -> bool:
    try:
        return isinstance(parse_record(raw), Confirmation)
    except BundleError:
        return False
