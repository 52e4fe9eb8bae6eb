"""A read replica of every partition's signal state, fed by the state changelog.

The check API answers for any principal on any worker, but a worker's RocksDB stores hold only
the partitions it owns. Every worker therefore reads the whole changelog (``vigil.state-
changelog``, keys are store keys) with a group-less consumer and keeps the newest *signal*
state of every subject in memory (grant states are skipped: a check does not read them). The
owner of a partition answers from its own store (fresher by the changelog's round trip); the
replica serves the others. docs/check-api.md has the choice and the measured staleness.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka.partitioner import murmur2

from streams import metrics
from streams.kafka.follow import TopicFollower
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.state.store import SIGNAL_PREFIX

log = logging.getLogger(__name__)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as aiokafka, the Java client and
    librdkafka's ``murmur2_random``) gives a keyed record: where the subject's state lives."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class SignalReplica(TopicFollower):
    """``get(subject_key)``: the newest signal state bytes the changelog holds for a subject."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        security: KafkaSecurity = PLAINTEXT,
        fetch_max_wait_ms: int = 10,
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            topic=topic,
            security=security,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._states: dict[bytes, bytes] = {}

    def get(self, subject_key: bytes) -> bytes | None:
        return self._states.get(subject_key)

    def __len__(self) -> int:
        return len(self._states)

    async def start(self, timeout: float = 30.0) -> None:
        """Read the whole changelog (then ``ready``) and keep following it in the background."""
        began = time.perf_counter()
        await super().start(timeout)
        metrics.SIGNAL_REPLICA_SUBJECTS.set(len(self._states))
        log.info(
            "signal replica: %d subjects from %d partitions in %.2fs",
            len(self._states),
            self.partitions,
            time.perf_counter() - began,
        )

    def _apply(self, record: Any) -> None:
        key = record.key
        if key is None or not key.startswith(SIGNAL_PREFIX) or record.value is None:
            return  # grant states: a check does not read them
        self._states[key[len(SIGNAL_PREFIX) :]] = record.value
        if self.following:
            metrics.SIGNAL_REPLICA_DELAY_SECONDS.observe(
                max(0.0, time.time() - record.timestamp / 1000)
            )

    def _applied_batch(self, records: int) -> None:
        metrics.SIGNAL_REPLICA_SUBJECTS.set(len(self._states))
