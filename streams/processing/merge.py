"""Order of application for one partition number: offsets within a topic, timestamps across.

The input topics of one partition number (the signal topics and ``authz.grants``) are
co-partitioned: together they are one subject's history. Records of one topic-partition are
applied in offset order, never re-sorted (a grant's ``issued`` and ``released``, a subject's
signals). Across the topics, records are merged the way Kafka Streams' ``PartitionGroup`` does it:
take the buffered head record with the smallest Kafka timestamp (ties: the fixed topic order
given here, signals before grants), so a backlog is applied in the order it was produced whatever
order the fetches came back in.

A topic with nothing buffered that is known (or not yet known not) to have more records on the
broker blocks the merge: taking another topic's head now could apply it before an older record
that simply has not been fetched yet. The merge waits at most ``max_idle_s`` for it (Kafka
Streams' ``max.task.idle.ms``), then goes on without it until that topic has data again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence

from streams.processing.records import InRecord


class PartitionMerger:
    """Per-topic buffers of fetched, not yet applied records of one partition number."""

    __slots__ = ("buffers", "max_idle_s", "gave_up", "_waiting_since")

    def __init__(self, topics: Sequence[str], max_idle_s: float) -> None:
        # dict order is the tie order (the runner passes signals first, then grants)
        self.buffers: dict[str, deque[InRecord]] = {topic: deque() for topic in topics}
        self.max_idle_s = max_idle_s
        self._waiting_since: float | None = None
        self.gave_up = False  # the current wait ran out: going on without the lagging input

    def add(self, topic: str, records: Iterable[InRecord]) -> None:
        self.buffers[topic].extend(records)

    def buffered(self, topic: str) -> int:
        return len(self.buffers[topic])

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def take(self, has_more: Callable[[str], bool], now: float, limit: int) -> list[InRecord]:
        """Up to ``limit`` records in application order; fewer (or none) while waiting for a
        topic that ``has_more(topic)`` says still has unfetched records. ``now`` is any clock in
        seconds (the runner counts only time spent waiting for fetches)."""
        out: list[InRecord] = []
        buffers = self.buffers
        more: dict[str, bool] = {}  # has_more() cannot change during one take (no fetch)
        while len(out) < limit:
            head: deque[InRecord] | None = None
            head_ts = 0
            blocked = False
            for topic, buf in buffers.items():
                if buf:
                    ts = buf[0].timestamp
                    if head is None or ts < head_ts:
                        head, head_ts = buf, ts
                else:
                    known = more.get(topic)
                    if known is None:
                        known = more[topic] = has_more(topic)
                    blocked = blocked or known
            if head is None:
                break
            if blocked:
                if self._waiting_since is None:
                    self._waiting_since = now
                if now - self._waiting_since < self.max_idle_s:
                    break
                self.gave_up = True
            else:
                self._waiting_since = None
                self.gave_up = False
            out.append(head.popleft())
        return out

    def wait_left(self, now: float) -> float | None:
        """Seconds until a blocked merge goes on without the missing topic; None if not waiting."""
        if self._waiting_since is None or not len(self):
            return None
        return max(0.0, self._waiting_since + self.max_idle_s - now)
