"""Every worker's own view of ``authz.revocations``, for PEPs that do not read Kafka.

A ``RevocationFeed`` reads every partition of the revocations topic with a group-less consumer
(each worker reads all of it, so an SSE listener on *any* worker sees every revocation, not only
those of the partitions its worker owns), keeps the newest ``history`` revocations of each
partition in memory, and hands new ones to the subscribed streams.

Positions are Kafka's: a ``Cursor`` is the next offset to deliver per partition. The same
record has the same partition and offset for every consumer, so a cursor written by one worker
means exactly the same on another: a client that reconnects anywhere with its last cursor gets
every later revocation once (``streams.web.revocation_stream``; docs/check-api.md). A cursor
older than a worker's in-memory history is served by reading the gap back from Kafka.

A subscriber's queue is bounded: when it is full the subscriber is dropped (its connection
aborted and counted), never waited for; the feed's loop never blocks on a client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams import metrics
from streams.codecs import DecodeError, decode_any
from streams.kafka.follow import TopicFollower
from streams.kafka.quirks import end_offsets
from streams.kafka.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

#: partition -> next offset to deliver
Cursor = dict[int, int]


class CursorError(ValueError):
    """A ``Last-Event-ID`` that is not a cursor this server wrote."""


def format_cursor(cursor: Mapping[int, int]) -> str:
    """``0:17,1:4``: partition:next-offset pairs, by partition."""
    return ",".join(f"{p}:{o}" for p, o in sorted(cursor.items()))


def parse_cursor(text: str) -> Cursor:
    cursor: Cursor = {}
    if len(text) > 4096:
        raise CursorError("Last-Event-ID is too long")
    for part in text.strip().split(","):
        p, sep, o = part.partition(":")
        if not sep or not p.isdigit() or not o.isdigit() or int(p) in cursor:
            raise CursorError(f"Last-Event-ID {text[:100]!r} is not a revocation stream id")
        cursor[int(p)] = int(o)
    return cursor


@dataclass(frozen=True, slots=True)
class RevocationFilter:
    """Which revocations a stream or webhook wants; an empty set matches everything.

    ``grant_ids`` match a grant id exactly or as the prefix of ``<id>/<index>``, the ids of
    the per-resource grants of a watched check with several resources."""

    subjects: frozenset[str] = frozenset()
    session_ids: frozenset[str] = frozenset()
    grant_ids: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        principals: Iterable[str] = (),
        principal_type: str = "user",
        session_ids: Iterable[str] = (),
        grant_ids: Iterable[str] = (),
    ) -> RevocationFilter:
        """``principals`` are principal ids as a check sends them; their subject key is
        ``<principal_type>:<id>`` (the ``vigil.principal_type`` annotation, default user)."""
        return cls(
            frozenset(f"{principal_type}:{p}" for p in principals),
            frozenset(session_ids),
            frozenset(grant_ids),
        )

    def matches(self, revocation: Mapping[str, Any]) -> bool:
        if self.subjects and revocation.get("subject") not in self.subjects:
            return False
        if self.session_ids and revocation.get("session_id") not in self.session_ids:
            return False
        if self.grant_ids:
            gid = revocation.get("grant_id") or ""
            if gid not in self.grant_ids and gid.rpartition("/")[0] not in self.grant_ids:
                return False
        return True


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    partition: int
    offset: int
    revocation: dict[str, Any]
    data: bytes  # the revocation as JSON, encoded once for every stream


def decode_revocation(
    record: ConsumerRecord[Any, Any], registry_url: str | None
) -> dict[str, Any] | None:
    """The revocation's JSON shape (as ``vigil tail`` prints it), or None if it is not one."""
    if record.value is None:
        return None
    try:
        kind, value = decode_any(record.value, list(record.headers or ()), registry_url)
    except DecodeError as exc:
        log.error(
            "%s[%d]@%d: not a revocation: %s", record.topic, record.partition, record.offset, exc
        )
        return None
    if kind not in ("Revocation", None) or "grant_id" not in value:
        log.error("%s[%d]@%d: not a revocation", record.topic, record.partition, record.offset)
        return None
    return value


@dataclass(eq=False)
class Subscriber:
    """One stream's mailbox. ``None`` in the queue means: stop (the feed is closing)."""

    queue: asyncio.Queue[RevocationEvent | None]
    abort: Callable[[], None]
    dropped: bool = False
    closed: bool = field(default=False)


class RevocationFeed(TopicFollower):
    """The last ``history`` revocations of every partition in memory, then the topic as it
    grows, for the SSE streams of this worker."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        history: int = 1000,
        registry_url: str | None = None,
        security: KafkaSecurity = PLAINTEXT,
        fetch_max_wait_ms: int = 10,
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            topic=topic,
            security=security,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self.history = history
        self.registry_url = registry_url
        self.positions: Cursor = {}  # next offset the feed will read, per partition
        self.floors: Cursor = {}  # history is complete from here on, per partition
        self._history: dict[int, deque[RevocationEvent]] = {}
        self._subscribers: set[Subscriber] = set()

    async def _start_offsets(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Only the last ``history`` records of each partition are read at start."""
        ends = await end_offsets(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        start = {tp: max(begins[tp], ends[tp] - self.history) for tp in tps}
        for tp in tps:
            self.floors[tp.partition] = self.positions[tp.partition] = start[tp]
            self._history[tp.partition] = deque()
        return start

    def _caught_up(self, positions: dict[TopicPartition, int]) -> None:
        for tp, position in positions.items():
            self.positions[tp.partition] = max(self.positions[tp.partition], position)

    async def stop(self) -> None:
        self.close_streams()
        await super().stop()

    def close_streams(self) -> None:
        """Tell every stream to end (the worker stops)."""
        for sub in list(self._subscribers):
            sub.closed = True
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                sub.abort()

    # -- subscribers --------------------------------------------------------------------------

    def subscribe(
        self, cursor: Cursor | None, capacity: int, abort: Callable[[], None]
    ) -> tuple[Subscriber, Cursor, list[RevocationEvent], dict[int, tuple[int, int]]]:
        """Register a stream starting at ``cursor`` (None: from now; a partition it lacks: from
        the beginning). Returns the subscriber, its start cursor, the held revocations at or
        after it, and the gaps ``partition -> (from, to)`` to read back from Kafka first. New
        revocations go to the queue from now on (no await in between: nothing is missed)."""
        sub = Subscriber(asyncio.Queue(maxsize=capacity), abort)
        self._subscribers.add(sub)
        metrics.REVOCATION_STREAMS.set(len(self._subscribers))
        if cursor is None:
            start = dict(self.positions)
        else:
            start = {p: cursor.get(p, 0) for p in self.positions}
        held = [
            event
            for partition, events in self._history.items()
            for event in events
            if event.offset >= start[partition]
        ]
        gaps = {p: (start[p], self.floors[p]) for p in start if start[p] < self.floors[p]}
        return sub, start, held, gaps

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        metrics.REVOCATION_STREAMS.set(len(self._subscribers))

    @property
    def streams(self) -> int:
        return len(self._subscribers)

    async def read_back(
        self, gaps: Mapping[int, tuple[int, int]]
    ) -> AsyncIterator[RevocationEvent]:
        """Revocations of ``partition`` in ``[from, to)`` for each gap, read from Kafka (older
        than this worker's history; records removed by retention are gone)."""
        consumer = self._new_consumer(100)
        await consumer.start()
        try:
            tps = {TopicPartition(self.topic, p): gap for p, gap in gaps.items()}
            consumer.assign(list(tps))
            for tp, (first, _) in tps.items():
                consumer.seek(tp, first)
            pending = {tp for tp, (first, end) in tps.items() if first < end}
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=1000)
                for tp, records in batch.items():
                    end = tps[tp][1]
                    for record in records:
                        if record.offset >= end:
                            break
                        event = self._event(record)
                        if event is not None:
                            yield event
                for tp in list(pending):
                    if await consumer.position(tp) >= tps[tp][1]:
                        pending.discard(tp)
        finally:
            await consumer.stop()

    # -- the topic ----------------------------------------------------------------------------

    def _event(self, record: ConsumerRecord[Any, Any]) -> RevocationEvent | None:
        revocation = decode_revocation(record, self.registry_url)
        if revocation is None:
            return None
        return RevocationEvent(
            record.partition, record.offset, revocation, orjson.dumps(revocation)
        )

    def _apply(self, record: ConsumerRecord[Any, Any]) -> None:
        partition = record.partition
        self.positions[partition] = record.offset + 1
        event = self._event(record)
        if event is None:
            return
        held = self._history[partition]
        held.append(event)
        if len(held) > self.history:
            self.floors[partition] = held.popleft().offset + 1
        for sub in self._subscribers:
            if sub.dropped or sub.closed:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:  # a slow client: cut it off, it resumes from its cursor
                sub.dropped = True
                metrics.REVOCATION_STREAM_SLOW.inc()
                sub.abort()
