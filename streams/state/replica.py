"""A read replica of every partition's signal state, fed by the state changelog.

The check API answers for any principal on any worker, but a worker's partition stores hold only
the partitions it owns. Every worker therefore reads the whole changelog (``vigil.state-
changelog``, keys are store keys) with a group-less consumer and keeps the newest *signal* state
of every subject (grant states are skipped: a check does not read them). The owner of a partition
answers from its own store (fresher by the changelog's round trip); the replica serves the others.

The replica lives in RocksDB of its own (``<data dir>/replica``), with bounded memory
(``REPLICA_MEMORY``), not in the Python heap: at 1M subjects a dict of their values was ≈645 MiB.
Each step of the follow loop (one fetch) is ONE write batch: the values, the position reached in
every partition (with a fingerprint of the record there), the subject count and the time. A
restarted worker resumes from those positions, unless anything says they may not describe this
changelog (another topic or partition count, a log that was recreated or truncated, a fingerprint
that differs, data older than ``RESUME_MAX_AGE_SECONDS``): then it wipes the replica and reads the
changelog from the beginning. docs/check-api.md has the choice and the measured staleness.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from streams import metrics
from streams.kafka.follow import TopicFollower
from streams.kafka.quirks import end_offsets
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.state.store import SIGNAL_PREFIX, RocksMemory, RocksStore

log = logging.getLogger(__name__)

#: The replica's RocksDB memory: two 32 MiB memtables and a 16 MiB block cache (which also holds
#: the index and filter blocks) — at most ≈80 MiB whatever the number of subjects. Smaller
#: memtables cost more compaction: at 480k records 8 MiB ones took 3.6 CPU s of RocksDB's
#: background threads, 32 MiB ones 1.1 s (bench/replica_catchup.py, docs/performance.md).
REPLICA_MEMORY = RocksMemory(
    write_buffer_bytes=32 << 20, write_buffers=2, block_cache_bytes=16 << 20
)
#: A stored replica older than this is rebuilt, not resumed: a compacted changelog drops a
#: tombstone ``delete.retention.ms`` (Kafka's default: 24 h) after cleaning it, so a replica that
#: stopped reading longer ago could miss a deletion and keep a subject's ended state.
RESUME_MAX_AGE_SECONDS = 12 * 3600
#: Bumped whenever what the replica stores changes: another format is rebuilt.
REPLICA_FORMAT = b"1"

_META = b"m:replica:"  # the changelog's keys start with s: or g:, never with m:
FORMAT_KEY = _META + b"format"
TOPIC_KEY = _META + b"topic"
PARTITIONS_KEY = _META + b"partitions"
SUBJECTS_KEY = _META + b"subjects"
SAVED_AT_KEY = _META + b"saved-at"
#: Seconds to wait for the records the stored fingerprints are compared with.
PROBE_TIMEOUT_SECONDS = 10.0


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as aiokafka, the Java client and
    librdkafka's ``murmur2_random``) gives a keyed record: where the subject's state lives."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def position_key(partition: int) -> bytes:
    return _META + b"partition:%d" % partition


def fingerprint(record: Any) -> list[Any]:
    """What identifies a changelog record: offset, timestamp, checksums of key and value. The
    same offset holding another record means the log is not the one the replica read."""
    value = record.value
    return [
        record.offset,
        record.timestamp,
        zlib.crc32(record.key or b""),
        None if value is None else zlib.crc32(value),
    ]


class SignalReplica(TopicFollower):
    """``get(subject_key)``: the newest signal state bytes the changelog holds for a subject.

    ``path`` None: a temporary directory, removed at ``stop`` (``--data-dir :memory:``). The
    database is opened by ``start`` (building a worker that never starts opens nothing)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        path: Path | None,
        security: KafkaSecurity = PLAINTEXT,
        fetch_max_wait_ms: int = 10,
        resume_max_age_seconds: float = RESUME_MAX_AGE_SECONDS,
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            topic=topic,
            security=security,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._temporary = path is None
        self.path = path  # opened at start (a temporary directory is made then)
        self.resume_max_age_seconds = resume_max_age_seconds
        self._store: RocksStore | None = None
        self._subjects = 0
        # this step's records, written as one batch at its end: changelog key -> value (None:
        # delete), and the last record seen per partition (its position and fingerprint)
        self._pending: dict[bytes, bytes | None] = {}
        self._last: dict[int, Any] = {}
        self.resumed = False  # whether start continued from stored positions
        self.records_read = 0  # changelog records applied since this process started

    @property
    def store(self) -> RocksStore:
        assert self._store is not None, "the replica was stopped"
        return self._store

    def open(self) -> None:
        """Open the database (``start`` does; the temporary directory is made here)."""
        if self._store is not None:
            return
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="vigil-replica-"))
        self._store = RocksStore(self.path, REPLICA_MEMORY)
        self._subjects = int(self._store.get(SUBJECTS_KEY) or 0)

    def get(self, subject_key: bytes) -> bytes | None:
        return self.store.get(SIGNAL_PREFIX + subject_key)

    def __len__(self) -> int:
        return self._subjects

    async def start(self, timeout: float = 30.0) -> None:
        """Resume from the stored positions (or rebuild), read the changelog to its end (then
        ``ready``) and keep following it in the background."""
        began = time.perf_counter()
        self.open()
        await super().start(timeout)
        metrics.SIGNAL_REPLICA_SUBJECTS.set(self._subjects)
        log.info(
            "signal replica: %d subjects from %d partitions, %s, %d records read in %.2fs",
            self._subjects,
            self.partitions,
            "resumed from stored positions" if self.resumed else "read from the beginning",
            self.records_read,
            time.perf_counter() - began,
        )

    async def stop(self) -> None:
        await super().stop()
        if self._store is None:
            return
        try:
            if self.following:  # complete up to the last fetch: record when that was
                self._flush()
                self._store.write({SAVED_AT_KEY: b"%d" % time.time()})
        finally:
            self._store.close()
            self._store = None
            if self._temporary and self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)

    # -- resume or rebuild ------------------------------------------------------------------

    async def _start_offsets(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int] | None:
        """The stored positions if they provably belong to this changelog, else None (after
        wiping the replica: it is read from the beginning)."""
        reason = self._stored_refusal(len(tps))
        last: dict[TopicPartition, list[Any]] = {}
        if reason is None:
            for tp in tps:
                raw = self.store.get(position_key(tp.partition))
                if raw is not None:
                    last[tp] = orjson.loads(raw)
            reason = await self._log_refusal(consumer, last)
        if reason is not None:
            if self.store.get(FORMAT_KEY) is not None:
                log.warning("signal replica: rebuilding from the changelog: %s", reason)
            self._reset(len(tps))
            return None
        self.resumed = True
        return {tp: fp[0] + 1 for tp, fp in last.items()}

    def _stored_refusal(self, partitions: int) -> str | None:
        """Why the stored replica cannot be resumed, judged from what it stored itself."""
        store = self.store
        stored_format = store.get(FORMAT_KEY)
        if stored_format is None:
            return "nothing stored"
        if stored_format != REPLICA_FORMAT:
            return f"stored in format {stored_format!r}, this code writes {REPLICA_FORMAT!r}"
        topic = store.get(TOPIC_KEY)
        if topic != self.topic.encode():
            return f"stored from topic {topic!r}, not {self.topic!r}"
        stored_partitions = store.get(PARTITIONS_KEY)
        if stored_partitions != b"%d" % partitions:
            return f"stored from {stored_partitions!r} partitions, the topic has {partitions}"
        saved = store.get(SAVED_AT_KEY)
        if saved is None:
            return "no complete step stored"
        age = time.time() - int(saved)
        if age > self.resume_max_age_seconds:
            return (
                f"stored {age:.0f}s ago, more than {self.resume_max_age_seconds:.0f}s "
                "(tombstones may have been compacted away since)"
            )
        return None

    async def _log_refusal(
        self, consumer: AIOKafkaConsumer, last: dict[TopicPartition, list[Any]]
    ) -> str | None:
        """Why the changelog as it is now is not the one the stored positions were read from:
        the log ends before them or starts after them, or another record is where the last
        applied one was (a topic deleted and recreated, then grown past the old positions)."""
        if not last:
            return None
        parts = list(last)
        begins = await consumer.beginning_offsets(parts)
        ends = await end_offsets(consumer, parts)
        for tp, (offset, *_) in last.items():
            if offset + 1 > ends[tp]:
                return (
                    f"partition {tp.partition}: stored position {offset + 1} is past the log end "
                    f"{ends[tp]} (changelog recreated or truncated)"
                )
            if offset < begins[tp]:
                return (
                    f"partition {tp.partition}: the log now starts at {begins[tp]}, after the "
                    f"last record applied ({offset})"
                )
        found = await self._records_at({tp: fp[0] for tp, fp in last.items()})
        for tp, fp in last.items():
            record = found.get(tp)
            if record is None or fingerprint(record) != fp:
                return (
                    f"partition {tp.partition}: offset {fp[0]} no longer holds the record "
                    "applied there (changelog recreated, or the record compacted away)"
                )
        return None

    async def _records_at(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
        """The first record at or after each offset, read by a consumer of its own (the
        follower's positions stay untouched). A partition that gives none in time is left out."""
        consumer = self._new_consumer()
        await consumer.start()
        try:
            consumer.assign(list(offsets))
            for tp, offset in offsets.items():
                consumer.seek(tp, offset)
            found: dict[TopicPartition, Any] = {}
            deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
            while len(found) < len(offsets) and time.monotonic() < deadline:
                batch = await consumer.getmany(
                    *(tp for tp in offsets if tp not in found), timeout_ms=200
                )
                for tp, records in batch.items():
                    if records:
                        found.setdefault(tp, records[0])
            return found
        finally:
            await consumer.stop()

    def _reset(self, partitions: int) -> None:
        """Wipe the replica: an empty one for this changelog, to be read from the beginning."""
        assert self.path is not None
        self.store.close()
        shutil.rmtree(self.path)
        self._store = RocksStore(self.path, REPLICA_MEMORY)
        self._store.write(
            {
                FORMAT_KEY: REPLICA_FORMAT,
                TOPIC_KEY: self.topic.encode(),
                PARTITIONS_KEY: b"%d" % partitions,
                SUBJECTS_KEY: b"0",
            }
        )
        self._subjects = 0
        self._pending.clear()
        self._last.clear()

    # -- applying records ---------------------------------------------------------------------

    def _apply(self, record: Any) -> None:
        self._last[record.partition] = record  # grant records move the position too
        self.records_read += 1
        key = record.key
        if key is None or not key.startswith(SIGNAL_PREFIX):
            return  # grant states: a check does not read them
        self._pending[key] = record.value  # None: a tombstone, the subject's state was deleted
        if self.following:
            metrics.SIGNAL_REPLICA_DELAY_SECONDS.observe(
                max(0.0, time.time() - record.timestamp / 1000)
            )

    def _flush(self) -> None:
        """Write this step as ONE batch: values, deletions, each partition's position (the last
        record's fingerprint), the subject count (a key new to the store adds one, a deleted
        one takes one away, decided against the store before the write) and the time."""
        if not self._last:
            return
        keys = list(self._pending)
        subjects = self._subjects
        for key, old in zip(keys, self.store.get_many(keys), strict=True):
            subjects += (self._pending[key] is not None) - (old is not None)
        writes = dict(self._pending)  # a failed write leaves the pending step as it was
        for partition, record in self._last.items():
            writes[position_key(partition)] = orjson.dumps(fingerprint(record))
        writes[SUBJECTS_KEY] = b"%d" % subjects
        writes[SAVED_AT_KEY] = b"%d" % time.time()
        self.store.write(writes)
        self._subjects = subjects
        self._pending = {}
        self._last.clear()
        metrics.SIGNAL_REPLICA_SUBJECTS.set(subjects)

    def _catching_up(self, remaining: dict[TopicPartition, int]) -> None:
        self._flush()  # a failed write fails the start: the worker does not turn ready

    def _caught_up(self, positions: dict[TopicPartition, int]) -> None:
        self._flush()

    def _applied_batch(self, records: int) -> None:
        try:
            self._flush()
        except Exception:  # kept pending: the next step writes it with its own records
            log.exception("signal replica: writing %d subjects' states failed", len(self._pending))
