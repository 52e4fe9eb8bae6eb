"""The merge of co-partitioned inputs (streams.processing.merge), without Kafka: offsets within a
topic, Kafka timestamps across topics, a bounded wait for an input that lags."""

from __future__ import annotations

import pytest

from streams.processing.merge import PartitionMerger
from streams.processing.records import InRecord

TOPICS = ["signals.device", "signals.risk", "authz.grants"]


def rec(topic: str, offset: int, timestamp: int) -> InRecord:
    return InRecord(topic, 0, offset, b"user:alice", b"{}", [], timestamp)


def order(records: list[InRecord]) -> list[tuple[str, int]]:
    return [(r.topic, r.offset) for r in records]


def nothing_more(topic: str) -> bool:
    return False


def test_records_of_one_topic_keep_offset_order_whatever_their_timestamps() -> None:
    merger = PartitionMerger(TOPICS, max_idle_s=0.5)
    # an issued with a later producer timestamp than its release, in offset order
    merger.add("authz.grants", [rec("authz.grants", 7, 2000), rec("authz.grants", 8, 1000)])
    assert order(merger.take(nothing_more, 0.0, 100)) == [("authz.grants", 7), ("authz.grants", 8)]


def test_topics_are_merged_by_head_timestamp_with_ties_in_topic_order() -> None:
    merger = PartitionMerger(TOPICS, max_idle_s=0.5)
    merger.add("authz.grants", [rec("authz.grants", 0, 100), rec("authz.grants", 1, 300)])
    merger.add("signals.risk", [rec("signals.risk", 0, 200), rec("signals.risk", 1, 300)])
    merger.add("signals.device", [rec("signals.device", 0, 100)])
    assert order(merger.take(nothing_more, 0.0, 100)) == [
        ("signals.device", 0),  # 100, before the grant at 100: signals first on a tie
        ("authz.grants", 0),
        ("signals.risk", 0),
        ("signals.risk", 1),  # 300, before the grant at 300
        ("authz.grants", 1),
    ]
    assert len(merger) == 0


def test_an_input_with_unfetched_records_is_waited_for_up_to_the_idle_time() -> None:
    merger = PartitionMerger(TOPICS, max_idle_s=0.5)
    merger.add("authz.grants", [rec("authz.grants", 0, 500)])

    def device_lags(topic: str) -> bool:
        return topic == "signals.device"

    assert merger.take(device_lags, 10.0, 100) == []
    assert merger.wait_left(10.2) == pytest.approx(0.3)
    assert merger.take(device_lags, 10.4, 100) == []
    # the device records arrive in time: older ones go first
    merger.add("signals.device", [rec("signals.device", 0, 100), rec("signals.device", 1, 600)])
    assert order(merger.take(device_lags, 10.45, 100)) == [
        ("signals.device", 0),
        ("authz.grants", 0),
        ("signals.device", 1),
    ]
    assert merger.wait_left(10.45) is None  # nothing buffered, nothing to wait for


def test_after_the_idle_time_the_merge_goes_on_without_the_lagging_input() -> None:
    merger = PartitionMerger(TOPICS, max_idle_s=0.5)

    def risk_lags(topic: str) -> bool:
        return topic == "signals.risk"

    merger.add("authz.grants", [rec("authz.grants", 0, 100)])
    assert merger.take(risk_lags, 0.0, 100) == []
    assert not merger.gave_up
    assert order(merger.take(risk_lags, 0.5, 100)) == [("authz.grants", 0)]
    assert merger.gave_up  # the runner counts and logs this
    # still lagging: later records do not wait again
    merger.add("authz.grants", [rec("authz.grants", 1, 200)])
    assert order(merger.take(risk_lags, 0.6, 100)) == [("authz.grants", 1)]
    # once the input has data again, a new lag waits again
    merger.add("signals.risk", [rec("signals.risk", 0, 50)])
    assert order(merger.take(risk_lags, 0.7, 100)) == [("signals.risk", 0)]
    assert not merger.gave_up
    merger.add("authz.grants", [rec("authz.grants", 2, 300)])
    merger.add("signals.risk", [rec("signals.risk", 1, 250)])
    assert order(merger.take(risk_lags, 0.8, 100)) == [("signals.risk", 1)]
    assert merger.take(risk_lags, 0.9, 100) == []


def test_an_input_that_is_caught_up_is_not_waited_for() -> None:
    merger = PartitionMerger(TOPICS, max_idle_s=60)
    merger.add("authz.grants", [rec("authz.grants", 0, 100)])
    assert order(merger.take(nothing_more, 0.0, 100)) == [("authz.grants", 0)]
    assert merger.wait_left(0.0) is None


def test_take_returns_at_most_limit_records() -> None:
    merger = PartitionMerger(TOPICS, max_idle_s=0.5)
    merger.add("signals.risk", [rec("signals.risk", i, i) for i in range(5)])
    assert order(merger.take(nothing_more, 0.0, 3)) == [("signals.risk", i) for i in range(3)]
    assert merger.buffered("signals.risk") == 2
