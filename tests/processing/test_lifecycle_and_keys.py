"""Grant lifecycle by offsets, release in the audit trail, and key enforcement: the batch
pipeline without Kafka (real policies, real codecs, an in-memory store)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.processing.merge import PartitionMerger
from streams.processing.pipeline import Pipeline
from streams.processing.records import InRecord
from streams.state.store import MemoryStore
from tests.processing.support import NOW, Feed, grant, outputs, persist, risk

RELEASE = {"op": "released", "grant_id": "g1"}


def active(store: MemoryStore) -> dict[str, Any]:
    raw = store.get(b"g:user:alice")
    return {} if raw is None else dict(orjson.loads(raw)["grants"])


@pytest.fixture(autouse=True)
def _metrics_flushed(pipeline: Pipeline) -> None:
    """Counts of earlier tests' batches are applied before a test reads a metric."""
    pipeline.flush_metrics()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_issued_with_a_later_timestamp_than_its_release_cannot_revive_the_grant(
    pipeline: Pipeline,
) -> None:
    """Offsets, not producer timestamps, order a grant's lifecycle: the runner's merge keeps a
    topic's records in offset order, and the pipeline applies them as given."""
    store, feed = MemoryStore(), Feed()
    issued = feed("authz.grants", grant("g1", ["read"]))
    released = feed("authz.grants", RELEASE)
    issued.timestamp, released.timestamp = NOW + 5000, NOW  # producer clocks disagree
    merger = PartitionMerger(["signals.risk", "authz.grants"], max_idle_s=0.5)
    merger.add("authz.grants", [issued, released])
    batch = merger.take(lambda topic: False, 0.0, 100)
    result = pipeline.process(batch, store, NOW)
    persist(store, result)
    assert [d["cause"]["kind"] for d in outputs(result, "authz.decisions")] == [
        "grant-issued",
        "release",
    ]
    assert active(store) == {}
    later = pipeline.process([feed("signals.risk", risk("r1", "HIGH"))], store, NOW)
    assert outputs(later, "authz.decisions") == [] and outputs(later, "authz.revocations") == []


def test_a_release_publishes_a_decision_and_leaves_a_tombstone(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    persist(store, pipeline.process([feed("authz.grants", grant("g1", ["read"]))], store, NOW))
    before = metric("vigil_decisions_total", effect="EFFECT_DENY", cause="release")
    release = feed("authz.grants", RELEASE)
    result = pipeline.process([release], store, NOW + 10)
    persist(store, result)
    [decision] = outputs(result, "authz.decisions")
    assert decision["cause"] == {"kind": "release", "event_id": "g1@1795946400000"}
    assert decision["effect"] == "EFFECT_DENY"
    assert [(a["action"], a["effect"], a["policy"]) for a in decision["actions"]] == [
        ("read", "EFFECT_DENY", "")
    ]
    assert decision["subject"] == "user:alice" and decision["grant_id"] == "g1"
    assert decision["cause_event_time"] == release.timestamp
    assert decision["request"]["resource"]["id"] == "d1"
    assert decision["policy_digest"] == pipeline.engine.digest
    assert outputs(result, "authz.revocations") == []
    pipeline.flush_metrics()  # as the runner does once the effects are persisted
    assert metric("vigil_decisions_total", effect="EFFECT_DENY", cause="release") == before + 1
    state = orjson.loads(store.get(b"g:user:alice") or b"{}")
    assert state["grants"] == {} and state["released"]["g1"][0] == 1795946400000
    # The same release again (a replay, or a producer retry) ends nothing and says nothing.
    again = pipeline.process([release], store, NOW + 20)
    assert again.outputs == []


def test_a_released_grant_id_cannot_be_issued_again_but_a_replay_is_idempotent(
    pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    issued = feed("authz.grants", grant("g1", ["read"]))
    persist(store, pipeline.process([issued, feed("authz.grants", RELEASE)], store, NOW))
    # The issuance replayed after a restore (its offset is before the release): nothing happens.
    replay = pipeline.process([issued], store, NOW)
    assert replay.outputs == [] and active(store) == {}
    # The same grant issued again later in the log: refused, with a reason.
    reissue = pipeline.process([feed("authz.grants", grant("g1", ["read"]))], store, NOW)
    [dead] = outputs(reissue, "signals.deadletter")
    assert dead["error"] == "validation" and "was released" in dead["reason"]
    assert outputs(reissue, "authz.decisions") == []
    assert b"g:user:alice" not in reissue.changed_states


def test_a_release_of_an_unknown_grant_is_dead_lettered_and_blocks_its_issuance(
    pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    before = metric("vigil_deadletters_total", error="unknown-grant")
    result = pipeline.process(
        [feed("authz.grants", RELEASE), feed("authz.grants", grant("g1", ["read"]))], store, NOW
    )
    dead = outputs(result, "signals.deadletter")
    assert [d["error"] for d in dead] == ["unknown-grant", "validation"]
    assert "not active for subject 'user:alice'" in dead[0]["reason"]
    assert outputs(result, "authz.decisions") == []
    pipeline.flush_metrics()  # as the runner does once the effects are persisted
    assert metric("vigil_deadletters_total", error="unknown-grant") == before + 1


def test_releasing_a_revoked_grant_is_quiet(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    persist(store, pipeline.process([feed("authz.grants", grant("g1", ["read"]))], store, NOW))
    persist(store, pipeline.process([feed("signals.risk", risk("r1", "HIGH"))], store, NOW))
    result = pipeline.process([feed("authz.grants", RELEASE)], store, NOW)
    assert result.outputs == []


def test_unkeyed_and_mis_keyed_records_are_dead_lettered_as_key_mismatch(
    pipeline: Pipeline,
) -> None:
    feed = Feed()
    unkeyed = feed("signals.risk", risk("r1", "HIGH"))
    unkeyed.key = None
    mis_keyed = feed("signals.risk", risk("r2", "HIGH"), key="user:mallory")
    grant_elsewhere = feed("authz.grants", grant("g1", ["read"]), key="user:bob")
    release_unkeyed = feed("authz.grants", {"op": "released", "grant_id": "g9"})
    release_unkeyed.key = None
    release_not_a_subject = feed("authz.grants", RELEASE, key="g1")
    before = metric("vigil_deadletters_total", error="key-mismatch")
    result = pipeline.process(
        [unkeyed, mis_keyed, grant_elsewhere, release_unkeyed, release_not_a_subject],
        MemoryStore(),
        NOW,
    )
    dead = outputs(result, "signals.deadletter")
    assert [d["error"] for d in dead] == ["key-mismatch"] * 5
    assert "has no key" in dead[0]["reason"] and "'user:alice'" in dead[0]["reason"]
    assert "does not match the subject key 'user:alice'" in dead[1]["reason"]
    assert "is not a subject key" in dead[3]["reason"]
    assert [d["key"] for d in dead] == [None, b"user:mallory", b"user:bob", None, b"g1"]
    assert result.changed_states == {} and outputs(result, "authz.decisions") == []
    pipeline.flush_metrics()  # as the runner does once the effects are persisted
    assert metric("vigil_deadletters_total", error="key-mismatch") == before + 5


def test_a_release_without_a_principal_applies_to_the_subject_of_its_key(
    pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    bob = grant("g1", ["read"]) | {"principal": {"id": "bob", "roles": ["employee"], "attr": {}}}
    persist(store, pipeline.process([feed("authz.grants", bob, key="user:bob")], store, NOW))
    result = pipeline.process([feed("authz.grants", RELEASE, key="user:bob")], store, NOW)
    [decision] = outputs(result, "authz.decisions")
    assert decision["subject"] == "user:bob" and decision["cause"]["kind"] == "release"


def test_committed_offsets_never_go_backwards_within_a_batch(pipeline: Pipeline) -> None:
    def at(offset: int) -> InRecord:
        return InRecord("signals.risk", 0, offset, b"user:alice", b"{}", [], NOW)

    result = pipeline.process([at(9), at(4)], MemoryStore(), NOW)
    assert result.next_offsets == {"signals.risk": 10}


def test_release_tombstones_are_dropped_after_their_retention(pipeline: Pipeline) -> None:
    from streams.processing.pipeline import TOMBSTONE_RETENTION_MS

    store, feed = MemoryStore(), Feed()
    issued = feed("authz.grants", grant("g1", ["read"]))
    persist(store, pipeline.process([issued, feed("authz.grants", RELEASE)], store, NOW))
    assert pipeline.sweep([b"g:user:alice"], store, NOW + 1000).changed_states == {}
    swept = pipeline.sweep([b"g:user:alice"], store, NOW + TOMBSTONE_RETENTION_MS)
    # nothing left in the grant state (no grant, no tombstone): the key is deleted
    assert swept.changed_states == {b"g:user:alice": None}
