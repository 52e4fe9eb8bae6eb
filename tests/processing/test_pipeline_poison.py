"""Poison input and event time at the pipeline: the exact values from the review that used to stop
a worker, future-dated signals, and the rule that a failure while processing one record
dead-letters that record alone (never the other records of its subject or batch).

Real policies, real codecs, an in-memory store; no broker (tests/pipeline has the worker test).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.processing import pipeline as pipeline_module
from streams.processing.pipeline import EVENT_TIME_IN_FUTURE, Pipeline
from streams.state.store import MemoryStore, grant_key
from tests.processing.support import (
    NOW,
    ROOT,
    TOPICS,
    Feed,
    grant,
    outputs,
    project_pipeline,
    risk,
)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return project_pipeline(output_format="json")


def deadletters(error: str) -> float:
    return REGISTRY.get_sample_value("vigil_deadletters_total", {"error": error}) or 0.0


def with_grant(pipeline: Pipeline, store: MemoryStore, feed: Feed) -> None:
    setup = pipeline.process([feed("authz.grants", grant("g1"))], store, NOW)
    assert [d["effect"] for d in outputs(setup, "authz.decisions")] == ["EFFECT_ALLOW"]
    store.write(setup.changed_states)


# -- the findings, exactly --------------------------------------------------------------------


def test_a_64_bit_overflowing_event_time_is_dead_lettered_and_the_batch_goes_on(
    pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    with_grant(pipeline, store, feed)
    poison = orjson.dumps(risk("r-poison", "HIGH", 0)).replace(
        b'"event_time":0', b'"event_time":18446744073709551616'
    )
    batch = [feed("signals.risk", poison), feed("signals.risk", risk("r1", "HIGH"))]
    result = pipeline.process(batch, store, NOW)
    [dead] = outputs(result, "signals.deadletter")
    assert dead["error"] == "validation" and dead["offset"] == batch[0].offset
    assert "event_time" in dead["reason"] and "valid time range" in dead["reason"]
    assert "9999-12-31" in dead["reason"]
    [rev] = outputs(result, "authz.revocations")
    assert rev["grant_id"] == "g1" and rev["cause"]["event_id"] == "r1"
    for value in result.changed_states.values():
        orjson.loads(value)  # the state can be stored


def test_a_grant_issued_in_year_31_million_does_not_take_its_subjects_signals_along(
    pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    with_grant(pipeline, store, feed)
    batch = [
        feed("authz.grants", grant("g-poison", issued_at=1e18)),
        feed("signals.risk", risk("r1", "HIGH")),  # the valid revoking signal of the same subject
    ]
    result = pipeline.process(batch, store, NOW)
    [dead] = outputs(result, "signals.deadletter")
    assert dead["offset"] == batch[0].offset and dead["error"] == "validation"
    assert dead["reason"].startswith("issued_at:") and "valid time range" in dead["reason"]
    [rev] = outputs(result, "authz.revocations")
    assert rev["grant_id"] == "g1" and rev["cause"]["event_id"] == "r1"


def test_a_1970_issued_at_is_reported_as_out_of_range_not_as_missing(pipeline: Pipeline) -> None:
    feed = Feed()
    record = feed("authz.grants", grant("g0", issued_at="1970-01-01T00:00:00Z"))
    [dead] = outputs(pipeline.process([record], MemoryStore(), NOW), "signals.deadletter")
    assert "needs" not in dead["reason"]
    assert dead["reason"].startswith("issued_at:") and "1970-01-01T00:00:00Z" in dead["reason"]


@pytest.mark.parametrize(
    ("where", "value", "reason"),
    [
        ("principal", {"attr": {"k": list(range(2000))}}, "principal.attr: Value error, more than"),
        ("resource", {"attr": {"deep": [[[[[[[[[1]]]]]]]]]}}, "nested deeper than 8"),
        ("resource", {"attr": {"big": "x" * 70_000}}, "more than 65536"),
        ("grant_id", "g" * 300, "grant_id: String should have at most 256"),
    ],
)
def test_oversized_grant_values_are_refused_with_the_limit(
    pipeline: Pipeline, where: str, value: Any, reason: str
) -> None:
    body = grant("g1")
    if isinstance(value, dict):
        body[where] = {**body[where], **value}
    else:
        body[where] = value
    [dead] = outputs(
        pipeline.process([Feed()("authz.grants", body)], MemoryStore(), NOW), "signals.deadletter"
    )
    assert reason in dead["reason"]
    assert len(dead["reason"]) <= pipeline_module.MAX_REASON_CHARS


# -- event time -----------------------------------------------------------------------------


def test_a_signal_dated_beyond_the_skew_is_dead_lettered_and_counted(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    with_grant(pipeline, store, feed)
    before = deadletters(EVENT_TIME_IN_FUTURE)
    future = NOW + pipeline.max_future_skew_ms + 1000
    result = pipeline.process([feed("signals.risk", risk("r-f", "HIGH", future))], store, NOW)
    pipeline.flush_metrics()  # as the runner does once the batch's effects are persisted
    [dead] = outputs(result, "signals.deadletter")
    assert dead["error"] == EVENT_TIME_IN_FUTURE == "event-time-in-future"
    assert dead["reason"].startswith("event-time-in-future: ")
    assert "worker's clock" in dead["reason"]
    assert outputs(result, "authz.revocations") == [] and result.changed_states == {}
    assert deadletters(EVENT_TIME_IN_FUTURE) == before + 1


def test_a_signal_within_the_skew_is_applied(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    with_grant(pipeline, store, feed)
    soon = NOW + pipeline.max_future_skew_ms - 1000
    result = pipeline.process([feed("signals.risk", risk("r-s", "HIGH", soon))], store, NOW)
    assert outputs(result, "signals.deadletter") == []
    assert [r["grant_id"] for r in outputs(result, "authz.revocations")] == ["g1"]


def test_a_replayed_backlog_is_judged_against_each_records_kafka_timestamp(
    pipeline: Pipeline,
) -> None:
    """A day-old backlog: the signal was dated an hour after it was produced. The worker's clock
    alone would accept it; its record timestamp shows it was future-dated when sent."""
    feed = Feed()
    produced = NOW - 86_400_000
    at = produced + 3_600_000
    rec = feed("signals.risk", risk("r-b", "HIGH", at), timestamp=produced)
    [dead] = outputs(pipeline.process([rec], MemoryStore(), NOW), "signals.deadletter")
    assert dead["error"] == EVENT_TIME_IN_FUTURE and "Kafka timestamp" in dead["reason"]
    # Without a record timestamp (-1) only the clock applies: the same signal is applied.
    rec = feed("signals.risk", risk("r-b2", "HIGH", at), timestamp=-1)
    assert outputs(pipeline.process([rec], MemoryStore(), NOW), "signals.deadletter") == []


def test_the_skew_is_configurable(pipeline: Pipeline) -> None:
    relaxed = Pipeline(TOPICS, pipeline.engine, pipeline.risk, max_future_skew_ms=24 * 3600_000)
    rec = Feed()("signals.risk", risk("r-r", "HIGH", NOW + 3600_000), timestamp=NOW)
    assert [o.topic for o in relaxed.process([rec], MemoryStore(), NOW).outputs] == []


def test_a_very_old_signal_is_applied_by_the_event_time_rule(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    with_grant(pipeline, store, feed)
    old = pipeline.process(
        [feed("signals.risk", risk("r-old", "HIGH", "2001-09-09T01:46:41Z"))], store, NOW
    )
    assert [r["grant_id"] for r in outputs(old, "authz.revocations")] == ["g1"]


# -- one failing record is dead-lettered alone ---------------------------------------------


@pytest.fixture
def failing_grant(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fault injection: evaluating grant ``g-bad`` raises; evaluating ``g-rot`` leaves an integer
    in the grant state that cannot be stored (what a value missed by validation would do)."""
    real = pipeline_module.evaluate_grant

    def evaluate(engine: Any, grant: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if grant["grant_id"] == "g-bad":
            raise RuntimeError("boom")
        if grant["grant_id"] == "g-rot":
            grant["resource"]["attr"]["n"] = 2**70
        return real(engine, grant, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "evaluate_grant", evaluate)
    yield


BOB = {"id": "bob", "roles": ["employee"], "attr": {}}


@pytest.mark.parametrize("bad", ["g-bad", "g-rot"])
def test_a_record_that_fails_in_processing_is_dead_lettered_alone(
    pipeline: Pipeline, failing_grant: None, bad: str
) -> None:
    store, feed = MemoryStore(), Feed()
    with_grant(pipeline, store, feed)
    batch = [
        feed("authz.grants", grant("g2")),
        feed("authz.grants", grant(bad)),
        feed("signals.risk", risk("r1", "HIGH")),
        feed("authz.grants", grant("g3", principal=BOB), key="user:bob"),  # another subject
    ]
    result = pipeline.process(batch, store, NOW)
    [dead] = outputs(result, "signals.deadletter")
    assert dead["offset"] == batch[1].offset and dead["error"] == "processing"
    revoked = sorted(r["grant_id"] for r in outputs(result, "authz.revocations"))
    assert revoked == ["g1", "g2"]  # the valid revoking signal after the poison still applied
    decided = [d["grant_id"] for d in outputs(result, "authz.decisions")]
    assert bad not in decided and "g3" in decided
    store.write(result.changed_states)
    state = orjson.loads(store.get(grant_key(b"user:alice")) or b"{}")
    assert sorted(state["revoked"]) == ["g1", "g2"] and bad not in state["grants"]


def test_the_slow_path_keeps_expiry_outputs_of_the_subject(
    pipeline: Pipeline, failing_grant: None
) -> None:
    """Grants that expired since the subject was stored are published once, even when the
    record that first read them is the one that fails."""
    store, feed = MemoryStore(), Feed()
    setup = pipeline.process(
        [feed("authz.grants", grant("g-exp", expires_at="2026-11-29T11:30:00Z"))], store, NOW
    )
    store.write(setup.changed_states)
    later = NOW + 3600_000
    batch = [feed("authz.grants", grant("g-bad")), feed("authz.grants", grant("g2"))]
    result = pipeline.process(batch, store, later)
    [dead] = outputs(result, "signals.deadletter")
    assert dead["offset"] == batch[0].offset
    [rev] = outputs(result, "authz.revocations")
    assert rev["grant_id"] == "g-exp" and rev["cause"]["kind"] == "expiry"
    store.write(result.changed_states)
    state = orjson.loads(store.get(grant_key(b"user:alice")) or b"{}")
    assert sorted(state["grants"]) == ["g2"] and "g-exp" in state["revoked"]


def test_the_skew_setting_reaches_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.app import build_pipeline
    from streams.settings import Settings

    monkeypatch.setenv("VIGIL_MAX_FUTURE_SKEW_SECONDS", "7")
    settings = Settings(policies=ROOT / "policies", risk_model=ROOT / "risk" / "model.yaml")
    assert settings.max_future_skew_seconds == 7
    assert build_pipeline(settings).max_future_skew_ms == 7000
    monkeypatch.delenv("VIGIL_MAX_FUTURE_SKEW_SECONDS")
    assert Settings().max_future_skew_seconds == 300
