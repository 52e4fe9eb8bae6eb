"""The audit path of the check API never blocks a check: a full queue drops, counted."""

from __future__ import annotations

import asyncio

from streams import metrics
from streams.web.audit import YIELD_EVERY, AuditPublisher
from tests.conftest import TopicFactory
from tests.kafka_helpers import consume_all
from tests.web.helpers import checker, request


async def test_full_audit_queue_drops_and_counts_without_blocking() -> None:
    # never started: nothing drains the queue, as when Kafka is down or slow
    audit = AuditPublisher(bootstrap="127.0.0.1:1", topic="authz.decisions", capacity=2)
    decisions = checker({}).check(request(actions=("read", "write", "delete")), "c").decisions
    before = metrics.CHECK_AUDIT_DROPPED._value.get()
    assert audit.offer(decisions) == 1
    assert audit.offer(decisions) == 3
    assert metrics.CHECK_AUDIT_DROPPED._value.get() == before + 4
    assert metrics.CHECK_AUDIT_QUEUE._value.get() == 2


async def test_the_drain_frees_the_event_loop_while_a_backlog_waits(
    broker: str, topic_factory: TopicFactory
) -> None:
    # queue.get() and send() return at once while records wait: the drain must still let the
    # checks (here: a task counting loop turns) run between every YIELD_EVERY records
    (topic,) = await topic_factory("authz.decisions")
    audit = AuditPublisher(bootstrap=broker, topic=topic, capacity=1000, output_format="json")
    await audit.start()
    try:
        audit.offer(checker({}).check(request(), "warm").decisions)  # metadata known after it
        await consume_all(broker, topic, expected=1)
        decisions = checker({}).check(request(actions=("read", "write", "delete")), "c").decisions
        for _ in range(20):
            audit.offer(decisions)
        sizes = await drained_sizes(audit)
    finally:
        await audit.stop()
    assert sizes[0] == 60
    drops = [before - after for before, after in zip(sizes, sizes[1:], strict=False)]
    assert max(drops) <= YIELD_EVERY, sizes


async def drained_sizes(audit: AuditPublisher) -> list[int]:
    """The audit queue's length at each event-loop turn until it is empty."""
    sizes = [audit._queue.qsize()]
    while sizes[-1]:
        await asyncio.sleep(0)
        sizes.append(audit._queue.qsize())
    return sizes
