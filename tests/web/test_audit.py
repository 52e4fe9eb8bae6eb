"""The audit path of the check API never blocks a check: a full queue drops, counted."""

from __future__ import annotations

from streams import metrics
from streams.web.audit import AuditPublisher
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
