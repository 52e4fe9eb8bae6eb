"""Publishes the check API's Decision records to ``authz.decisions`` without ever blocking a check.

A check hands its records to ``offer`` (a bounded queue, no await); one background task encodes
them (the pipeline's ``OutputEncoder("Decision")``) and produces them with its own producer. A
full queue (Kafka slow or down) drops the records *counted* (``vigil_check_audit_dropped_total``,
alerted on in deploy/vigil-alerts.yml), and a failed produce is counted too: the audit path can
lose records under overload, loudly, but it can neither delay nor fail a check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from streams import metrics
from streams.codecs import OutputEncoder
from streams.kafka.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)
_WARN_EVERY_S = 10.0
#: Records the drain encodes and hands to the producer between two yields to the event loop.
YIELD_EVERY = 8


class AuditPublisher:
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        capacity: int,
        output_format: str = "avro",
        registry_url: str | None = None,
        security: KafkaSecurity = PLAINTEXT,
        linger_ms: int = 5,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security
        self.linger_ms = linger_ms
        fmt: Any = output_format
        self._encoder = OutputEncoder("Decision", fmt, registry_url=registry_url, topic=topic)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=capacity)
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned_at = 0.0

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=self.linger_ms,
            **self.security.client_kwargs(),
        )
        await self._producer.start()
        self._task = asyncio.create_task(self._drain())

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Produce what is queued (up to ``flush_timeout``), then stop."""
        deadline = time.monotonic() + flush_timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.flush(), timeout=flush_timeout)
            await self._producer.stop()

    def offer(self, decisions: list[dict[str, Any]]) -> int:
        """Queue a check's Decision records; returns how many were dropped (queue full)."""
        dropped = 0
        for decision in decisions:
            try:
                self._queue.put_nowait(decision)
            except asyncio.QueueFull:
                dropped += 1
        if dropped:
            metrics.CHECK_AUDIT_DROPPED.inc(dropped)
            now = time.monotonic()
            if now - self._warned_at > _WARN_EVERY_S:
                self._warned_at = now
                log.error(
                    "check audit queue full (%d): dropping check decisions "
                    "(vigil_check_audit_dropped_total)",
                    self._queue.maxsize,
                )
        metrics.CHECK_AUDIT_QUEUE.set(self._queue.qsize())
        return dropped

    async def _drain(self) -> None:
        assert self._producer is not None
        producer = self._producer
        headers = self._encoder.headers
        produced = 0
        while True:
            decision = await self._queue.get()
            produced += 1
            if produced % YIELD_EVERY == 0:
                # queue.get() and send() return at once while records wait (send waits only
                # when the producer's batch is full): without this the drain could hold the
                # event loop, and the checks, for a whole backlog
                await asyncio.sleep(0)
            try:
                value = self._encoder.encode(decision)
                future = await producer.send(
                    self.topic, value, key=decision["subject"].encode(), headers=headers
                )
                future.add_done_callback(_count_failure)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # encoding bug or producer failure: counted, logged
                metrics.CHECK_AUDIT_FAILED.inc()
                log.error("check decision %s not produced: %s", decision.get("decision_id"), exc)
            metrics.CHECK_AUDIT_QUEUE.set(self._queue.qsize())


def _count_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled() or future.exception() is not None:
        metrics.CHECK_AUDIT_FAILED.inc()
