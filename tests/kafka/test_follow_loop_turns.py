"""A followed topic's burst (the changelog under signal load, for the check API's replica) is
applied ``FOLLOW_BATCH`` records per event-loop step, so checks on the same loop wait for one
step, not for the burst. Seen by a task that counts loop turns (no timing involved)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from streams.kafka.follow import FOLLOW_BATCH, TopicFollower
from tests.conftest import TopicFactory
from tests.kafka_helpers import produce_json

BURST = 4 * FOLLOW_BATCH


class Recorder(TopicFollower):
    """Remembers on which loop turn each record was applied."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.turn = 0
        self.applied: list[int] = []

    def _apply(self, record: Any) -> None:
        self.applied.append(self.turn)


async def test_a_burst_is_applied_in_steps_with_the_loop_free_between(
    broker: str, topic_factory: TopicFactory
) -> None:
    (topic,) = await topic_factory("follow.turns")
    follower = Recorder(bootstrap=broker, topic=topic)
    await follower.start()

    async def tick() -> None:
        while True:
            follower.turn += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        await produce_json(broker, topic, [{"n": i} for i in range(BURST)], key_fn=None)
        while len(follower.applied) < BURST:
            await asyncio.sleep(0.01)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await follower.stop()
    per_turn: dict[int, int] = {}
    for turn in follower.applied:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) <= FOLLOW_BATCH, per_turn
