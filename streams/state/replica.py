"""A read replica of every partition's signal state, fed by the state changelog.

The check API answers for any principal on any worker, but a worker's RocksDB stores hold only
the partitions it owns. Every worker therefore reads the whole changelog (``vigil.state-
changelog``, keys are store keys) with a group-less consumer and keeps the newest *signal*
state of every subject in memory (grant states are skipped: a check does not read them). The
owner of a partition answers from its own store (fresher by the changelog's round trip); the
replica serves the others. docs/check-api.md has the choice and the measured staleness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from streams import metrics
from streams.kafka.quirks import read_to_end
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.state.store import SIGNAL_PREFIX

log = logging.getLogger(__name__)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as aiokafka, the Java client and
    librdkafka's ``murmur2_random``) gives a keyed record: where the subject's state lives."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class SignalReplica:
    """``get(subject_key)``: the newest signal state bytes the changelog holds for a subject."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        security: KafkaSecurity = PLAINTEXT,
        fetch_max_wait_ms: int = 10,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.ready = asyncio.Event()  # set once the changelog has been read to its end
        self.partitions = 0
        self._states: dict[bytes, bytes] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def get(self, subject_key: bytes) -> bytes | None:
        return self._states.get(subject_key)

    def __len__(self) -> int:
        return len(self._states)

    async def start(self, timeout: float = 30.0) -> None:
        """Assign every changelog partition and read it to the end (then ``ready``); keep
        following it in the background."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            **self.security.client_kwargs(),
        )
        await self._consumer.start()
        deadline = time.monotonic() + timeout
        found = self._consumer.partitions_for_topic(self.topic)
        while not found:
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelog topic {self.topic} has no partitions")
            await self._consumer.force_metadata_update()
            found = self._consumer.partitions_for_topic(self.topic)
            if not found:
                await asyncio.sleep(0.2)
        self.partitions = len(found)
        tps = [TopicPartition(self.topic, p) for p in sorted(found)]
        began = time.perf_counter()
        await read_to_end(self._consumer, tps, self._apply_restored)
        metrics.SIGNAL_REPLICA_SUBJECTS.set(len(self._states))
        log.info(
            "signal replica: %d subjects from %d partitions in %.2fs",
            len(self._states),
            len(tps),
            time.perf_counter() - began,
        )
        self.ready.set()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def _apply_restored(self, record: Any) -> None:
        key = record.key
        if key is not None and key.startswith(SIGNAL_PREFIX) and record.value is not None:
            self._states[key[len(SIGNAL_PREFIX) :]] = record.value

    async def _follow(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker hiccup: the consumer reconnects by itself
                log.warning("signal replica: fetch failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            now = time.time()
            for records in batch.values():
                for record in records:
                    key = record.key
                    if key is None or not key.startswith(SIGNAL_PREFIX) or record.value is None:
                        continue
                    self._states[key[len(SIGNAL_PREFIX) :]] = record.value
                    metrics.SIGNAL_REPLICA_DELAY_SECONDS.observe(
                        max(0.0, now - record.timestamp / 1000)
                    )
            if batch:
                metrics.SIGNAL_REPLICA_SUBJECTS.set(len(self._states))
