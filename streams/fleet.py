"""The fleet view behind ``/workers``: workers whose heartbeats on ``vigil.workers`` keep coming.

Every worker beats every few seconds with its partitions and policy bundle digest. A worker that
misses ``MISSED_BEATS`` beats in a row (killed, hung, cut off) drops out of the view; one that
stops cleanly sends a ``leaving`` beat and drops out at once. Liveness is judged by the beat's
own ``at`` time, so beats replayed from the topic when a worker starts do not bring dead workers
back.
"""

from __future__ import annotations

from typing import Any

MISSED_BEATS = 3


class Fleet:
    """The newest beat of every live worker."""

    __slots__ = ("_beats", "expiry_ms")

    def __init__(self, heartbeat_seconds: float, missed_beats: int = MISSED_BEATS) -> None:
        self.expiry_ms = round(heartbeat_seconds * missed_beats * 1000)
        self._beats: dict[str, dict[str, Any]] = {}

    def observe(self, beat: dict[str, Any]) -> None:
        """Record one beat; raises ``KeyError``/``TypeError``/``ValueError`` on a malformed one."""
        worker_id = str(beat["worker_id"])
        at = int(beat["at"])
        known = self._beats.get(worker_id)
        if known is not None and int(known["at"]) > at:
            return  # an older beat (replay) changes nothing
        if beat.get("leaving"):
            self._beats.pop(worker_id, None)
        else:
            self._beats[worker_id] = beat

    def live(self, now_ms: int) -> list[dict[str, Any]]:
        """Workers heard from within the expiry, sorted by id; forgets the others."""
        oldest = now_ms - self.expiry_ms
        for worker_id in [w for w, b in self._beats.items() if int(b["at"]) < oldest]:
            del self._beats[worker_id]
        return [self._beats[w] for w in sorted(self._beats)]
