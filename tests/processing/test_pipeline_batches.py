"""The batch pipeline without Kafka: real policies, real codecs, an in-memory store.

Covers the rules that need no broker: revocation is terminal, expiry, key/subject mismatch,
release, and one state write per subject per batch.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline
from streams.state.risk import RiskModel
from streams.state.store import MemoryStore
from tests.processing.support import (
    NOW,
    ROOT,
    TOPICS,
    Feed,
    grant,
    outputs,
    persist,
    risk,
)


def test_revocation_is_terminal_and_reissue_of_the_same_id_is_refused(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    first = pipeline.process([feed("authz.grants", grant("g1", ["read"]))], store, NOW)
    assert [d["effect"] for d in outputs(first, "authz.decisions")] == ["EFFECT_ALLOW"]
    persist(store, first)

    high = pipeline.process([feed("signals.risk", risk("r1", "HIGH"))], store, NOW)
    [rev] = outputs(high, "authz.revocations")
    assert rev["rule"] == "deny-high-risk" and rev["cause"]["event_id"] == "r1"
    persist(store, high)

    # Risk recovers; the revoked grant stays revoked; the same grant id cannot be re-issued.
    later = pipeline.process(
        [
            feed("signals.risk", risk("r2", "LOW", "2026-11-29T10:40:00Z")),
            feed("authz.grants", grant("g1", ["read"], issued_at="2026-11-29T10:45:00Z")),
            feed("authz.grants", grant("g2", ["read"], issued_at="2026-11-29T10:45:00Z")),
        ],
        store,
        NOW,
    )
    assert outputs(later, "authz.revocations") == []
    [dead] = outputs(later, "signals.deadletter")
    assert "revocation is terminal" in dead["reason"]
    assert [d["grant_id"] for d in outputs(later, "authz.decisions")] == ["g2"]


def test_replaying_a_revoking_batch_yields_identical_ids(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    setup = pipeline.process([feed("authz.grants", grant("g1", ["read"]))], store, NOW)
    persist(store, setup)
    batch = [feed("signals.risk", risk("r1", "HIGH"))]
    once = pipeline.process(batch, store, NOW)  # state not persisted: as after a crash
    again = pipeline.process(batch, store, NOW + 5)
    assert (
        outputs(once, "authz.revocations")[0]["revocation_id"]
        == (outputs(again, "authz.revocations")[0]["revocation_id"])
    )
    assert [d["decision_id"] for d in outputs(once, "authz.decisions")] == [
        d["decision_id"] for d in outputs(again, "authz.decisions")
    ]


def test_expired_and_released_grants_are_not_re_evaluated(pipeline: Pipeline) -> None:
    """g1 expired (published with cause expiry, see test_pipeline_time.py), g2 was released:
    the HIGH risk signal evaluates neither."""
    store, feed = MemoryStore(), Feed()
    setup = pipeline.process(
        [
            feed("authz.grants", grant("g1", ["read"], expires_at=NOW + 1000)),
            feed("authz.grants", grant("g2", ["read"])),
            feed("authz.grants", {"op": "released", "grant_id": "g2"}),
        ],
        store,
        NOW,
    )
    persist(store, setup)
    result = pipeline.process([feed("signals.risk", risk("r1", "HIGH"))], store, NOW + 2000)
    assert [d["cause"]["kind"] for d in outputs(result, "authz.decisions")] == ["expiry"]
    assert [r["cause"]["kind"] for r in outputs(result, "authz.revocations")] == ["expiry"]
    state = orjson.loads(result.changed_states[b"g:user:alice"])
    assert state["grants"] == {}


def test_record_key_must_match_subject(pipeline: Pipeline) -> None:
    feed = Feed()
    result = pipeline.process(
        [feed("signals.risk", risk("r1", "HIGH"), key="user:mallory")], MemoryStore(), NOW
    )
    [dead] = outputs(result, "signals.deadletter")
    assert "does not match the subject key" in dead["reason"]
    assert result.next_offsets == {"signals.risk": feed.offset + 0 + 1}


def test_one_state_write_per_subject_per_batch(pipeline: Pipeline) -> None:
    feed = Feed()
    batch = [
        feed("signals.risk", risk(f"r{i}", "LOW", f"2026-11-29T10:3{i}:00Z")) for i in range(5)
    ]
    result = pipeline.process(batch, MemoryStore(), NOW)
    assert list(result.changed_states) == [b"s:user:alice"]  # grants not even read
    assert result.next_offsets == {"signals.risk": batch[-1].offset + 1}


def test_default_deny_without_a_matching_rule_is_encoded_and_revokes(pipeline: Pipeline) -> None:
    """An agent above LOW risk matches no tool rule: DENY with policy key and a null rule."""
    store, feed = MemoryStore(), Feed()
    agent_grant = {
        "op": "issued",
        "grant_id": "a1",
        "principal": {"id": "bot", "type": "agent", "roles": ["agent"], "attr": {}},
        "resource": {"kind": "tool", "id": "search", "attr": {}},
        "actions": ["invoke"],
        "session_id": "s1",
        "issued_at": "2026-11-29T10:00:00Z",
    }
    low = risk("r0", "LOW", "2026-11-29T09:00:00Z") | {"subject": {"type": "agent", "id": "bot"}}
    setup = pipeline.process(
        [
            feed("signals.risk", low, key="agent:bot"),
            feed("authz.grants", agent_grant, key="agent:bot"),
        ],
        store,
        NOW,
    )
    assert [d["effect"] for d in outputs(setup, "authz.decisions")] == ["EFFECT_ALLOW"]
    persist(store, setup)
    medium = risk("r1", "MEDIUM") | {"subject": {"type": "agent", "id": "bot"}}
    result = pipeline.process([feed("signals.risk", medium, key="agent:bot")], store, NOW)
    [decision] = outputs(result, "authz.decisions")
    assert decision["actions"][0]["rule"] is None
    assert decision["actions"][0]["policy"] == "resource.tool.vdefault"
    [rev] = outputs(result, "authz.revocations")
    assert rev["grant_id"] == "a1" and rev["rule"] is None


def test_a_failure_inside_one_subject_dead_letters_its_records_and_spares_the_rest() -> None:
    class Exploding(PolicyEngine):
        def check(self, principal: Any, resource: Any, actions: Any, **kw: Any) -> Any:
            if resource["id"] == "boom":
                raise RuntimeError("engine bug")
            return super().check(principal, resource, actions, **kw)

    engine = Exploding.from_directory(ROOT / "policies")
    pipe = Pipeline(TOPICS, engine, RiskModel())
    feed = Feed()
    bad = grant("g1", ["read"]) | {"resource": {"kind": "document", "id": "boom", "attr": {}}}
    other = grant("g2", ["read"]) | {"principal": {"id": "bob", "roles": ["employee"], "attr": {}}}
    result = pipe.process(
        [feed("authz.grants", bad), feed("authz.grants", other, key="user:bob")],
        MemoryStore(),
        NOW,
    )
    [dead] = outputs(result, "signals.deadletter")
    assert dead["error"] == "processing" and "engine bug" in dead["reason"]
    assert [d["subject"] for d in outputs(result, "authz.decisions")] == ["user:bob"]
    assert list(result.changed_states) == [b"g:user:bob"]


def test_expiry_sweep_removes_expired_grants_without_any_event(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    setup = pipeline.process(
        [
            feed("authz.grants", grant("g1", ["read"], expires_at=NOW + 1000)),
            feed("authz.grants", grant("g2", ["read"])),
        ],
        store,
        NOW,
    )
    persist(store, setup)
    assert pipeline.sweep([b"g:user:alice"], store, NOW + 500).changed_states == {}
    swept = pipeline.sweep([b"g:user:alice", b"g:user:nobody"], store, NOW + 1000)
    state = orjson.loads(swept.changed_states[b"g:user:alice"])
    assert list(state["grants"]) == ["g2"]
    assert [r["grant_id"] for r in outputs(swept, "authz.revocations")] == ["g1"]


def test_batch_metrics_are_counted_once_per_batch_and_exact(pipeline: Pipeline) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        """Sum of the samples whose labels include ``labels`` (other labels summed over)."""
        return sum(
            sample.value
            for metric in REGISTRY.collect()
            for sample in metric.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def values() -> tuple[float, ...]:
        return (
            value("vigil_signals_total", outcome="applied"),
            value("vigil_signals_total", outcome="duplicate"),
            value("vigil_decisions_total", effect="EFFECT_ALLOW", cause="grant-issued"),
        )

    before = values()
    feed = Feed()
    event = risk("r1", "LOW")
    batch = [
        feed("authz.grants", grant("g1", ["read"])),
        feed("signals.risk", event),
        feed("signals.risk", event),
    ]
    pipeline.process(batch, MemoryStore(), NOW)
    assert values() == before  # nothing counted until the runner has persisted the effects
    pipeline.discard_metrics()  # e.g. the produce failed: the batch will be processed again
    result = pipeline.process(batch, MemoryStore(), NOW)
    pipeline.flush_metrics()
    after = values()
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert result.active_grants_delta == 1  # vigil_active_grants: the runner adds it per partition
