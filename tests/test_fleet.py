"""The /workers view: live workers only (heartbeat expiry after missed beats, "leaving" beats)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.fleet import MISSED_BEATS, Fleet

BEAT_S = 5.0
T0 = 1_795_946_400_000


def beat(worker: str, at: int, **extra: Any) -> dict[str, Any]:
    return {"worker_id": worker, "at": at, "partitions": [0], "policy_digest": "sha256:x", **extra}


def test_a_worker_that_misses_beats_drops_out() -> None:
    fleet = Fleet(BEAT_S)
    fleet.observe(beat("a", T0))
    fleet.observe(beat("b", T0))
    expiry = int(BEAT_S * MISSED_BEATS * 1000)
    fleet.observe(beat("a", T0 + expiry))
    assert [w["worker_id"] for w in fleet.live(T0 + expiry)] == ["a", "b"]
    assert [w["worker_id"] for w in fleet.live(T0 + expiry + 1)] == ["a"]


def test_the_view_shows_partitions_and_digest_of_the_newest_beat() -> None:
    fleet = Fleet(BEAT_S)
    fleet.observe(beat("a", T0, partitions=[0, 1]))
    fleet.observe(beat("a", T0 + 5000, partitions=[2], policy_digest="sha256:y"))
    fleet.observe(beat("a", T0 + 1000, partitions=[3]))  # replayed older beat: ignored
    [a] = fleet.live(T0 + 5000)
    assert (a["partitions"], a["policy_digest"]) == ([2], "sha256:y")


def test_a_leaving_beat_removes_the_worker_at_once() -> None:
    fleet = Fleet(BEAT_S)
    fleet.observe(beat("a", T0))
    fleet.observe(beat("a", T0 + 100, leaving=True))
    assert fleet.live(T0 + 100) == []
    fleet.observe(beat("a", T0 + 200))  # restarted
    assert len(fleet.live(T0 + 200)) == 1


def test_replayed_beats_of_long_dead_workers_never_show() -> None:
    fleet = Fleet(BEAT_S)
    fleet.observe(beat("dead", T0 - 3600_000))
    assert fleet.live(T0) == []


@pytest.mark.parametrize("bad", [{}, {"worker_id": "a"}, {"worker_id": "a", "at": "x"}])
def test_a_malformed_beat_raises(bad: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        Fleet(BEAT_S).observe(bad)
