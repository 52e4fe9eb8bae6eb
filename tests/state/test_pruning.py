"""Bounded state: device and session entries no grant names are pruned after the retention, an
entry a grant names never is, and a pruned session revocation cannot let a grant of that session
back in (the id-reuse rule, docs/operations.md "Bounded state").

Pure rules and the pipeline with an injected clock here; the real broker and RocksDB (pruning
through the changelog, surviving a restart) in test_pruning_live.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.codecs import decode_any
from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline, Topics
from streams.processing.records import BatchResult, InRecord
from streams.state.risk import RiskModel
from streams.state.store import MemoryStore
from streams.state.subject import (
    SESSIONS_PRUNED_UNTIL,
    named_entries,
    new_grant_state,
    new_signal_state,
    prune_entries,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = 24 * 3600 * 1000
RETENTION = 2 * DAY
T0 = 1795946400000  # 2026-11-29T10:00:00Z
ALICE_SIGNALS = b"s:user:alice"
TOPICS = Topics(
    signals=frozenset({"signals.identity", "signals.device"}),
    grants="authz.grants",
    decisions="authz.decisions",
    revocations="authz.revocations",
    deadletter="signals.deadletter",
)


# -- the rule on one state --------------------------------------------------------------------


def entry(at: int) -> list[Any]:
    return [at, "e", {"status": "compliant"}]


def test_an_unnamed_entry_is_stamped_first_and_pruned_a_retention_later() -> None:
    state = new_signal_state()
    state["dims"]["device:D1"] = entry(T0)
    state["dims"]["risk"] = [T0, "r", {"level": "LOW"}]  # never pruned: not a device or session
    assert prune_entries(state, set(), T0 + 10 * DAY, RETENTION) == (True, [])
    assert state["dims"]["device:D1"][3] == T0 + 10 * DAY  # found unnamed now
    assert prune_entries(state, set(), T0 + 12 * DAY - 1, RETENTION) == (False, [])
    assert prune_entries(state, set(), T0 + 12 * DAY, RETENTION) == (True, ["device:D1"])
    assert list(state["dims"]) == ["risk"]


def test_a_named_entry_is_never_pruned_and_naming_it_restarts_the_retention() -> None:
    state = new_signal_state()
    state["dims"]["device:D1"] = entry(T0)
    named = {"device:D1"}
    for day in (1, 10, 100):
        assert prune_entries(state, named, T0 + day * DAY, RETENTION) == (False, [])
    assert len(state["dims"]["device:D1"]) == 3
    prune_entries(state, set(), T0 + 100 * DAY, RETENTION)  # the grant ended: stamped
    assert prune_entries(state, named, T0 + 101 * DAY, RETENTION) == (True, [])  # named again
    assert len(state["dims"]["device:D1"]) == 3  # the stamp is gone
    prune_entries(state, set(), T0 + 102 * DAY, RETENTION)
    assert prune_entries(state, set(), T0 + 103 * DAY, RETENTION) == (False, [])
    assert prune_entries(state, set(), T0 + 104 * DAY, RETENTION)[1] == ["device:D1"]


def test_a_recent_event_keeps_an_entry_whatever_the_stamp() -> None:
    state = new_signal_state()
    state["dims"]["session:s1"] = [T0 + 9 * DAY, "e", {"revoked": True}]
    prune_entries(state, set(), T0, RETENTION)  # stamped at T0 (a clock behind the event)
    assert prune_entries(state, set(), T0 + 10 * DAY, RETENTION) == (False, [])
    assert prune_entries(state, set(), T0 + 11 * DAY, RETENTION)[1] == ["session:s1"]
    assert state[SESSIONS_PRUNED_UNTIL] == T0 + 11 * DAY - RETENTION


def test_named_entries_are_the_devices_and_sessions_of_active_grants() -> None:
    grants = new_grant_state()
    grants["grants"]["g1"] = {"device_id": "D1", "session_id": "s1"}
    grants["grants"]["g2"] = {"device_id": None, "session_id": None}
    grants["revoked"]["g0"] = [T0, T0 + DAY]  # a tombstone names nothing
    assert named_entries(grants) == {"device:D1", "session:s1"}


# -- the pipeline, with an injected clock -------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(
        TOPICS,
        PolicyEngine.from_directory(ROOT / "policies"),
        RiskModel.from_file(ROOT / "risk" / "model.yaml"),
        state_retention_ms=RETENTION,
    )


class Feed:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, topic: str, value: dict[str, Any]) -> InRecord:
        self.offset += 1
        return InRecord(topic, 0, self.offset, b"user:alice", orjson.dumps(value), [], T0)


def grant(gid: str, issued_at: int, device: str = "D1", session: str = "s1") -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": "alice", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": "d1", "attr": {}},
        "actions": ["read"],
        "device_id": device,
        "session_id": session,
        "issued_at": issued_at,
    }


def signal(eid: str, kind: str, at: int, **attributes: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": kind,
        "subject": {"type": "user", "id": "alice"},
        "source": "idp",
        "event_time": at,
        "attributes": attributes,
    }


def compliant(eid: str, device: str, at: int) -> dict[str, Any]:
    return signal(eid, "device-compliance-change", at, device_id=device, current_status="compliant")


def outputs(result: BatchResult, topic: str) -> list[dict[str, Any]]:
    return [decode_any(o.value, o.headers)[1] for o in result.outputs if o.topic == topic]


def dims(store: MemoryStore) -> set[str]:
    raw = store.get(ALICE_SIGNALS)
    assert raw is not None
    return set(orjson.loads(raw)["dims"])


def pruned(kind: str) -> float:
    return REGISTRY.get_sample_value("vigil_state_entries_pruned_total", {"kind": kind}) or 0.0


def sweep_until(pipeline: Pipeline, store: MemoryStore, now: int) -> None:
    """Two sweeps (stamp, then prune a retention later), their effects persisted and counted."""
    for at in (now, now + RETENTION):
        store.write(pipeline.prune([ALICE_SIGNALS], store, at).changed_states)
        pipeline.flush_metrics()


def test_unnamed_entries_are_pruned_named_ones_kept_and_the_metric_counts(
    pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    setup = pipeline.process(
        [
            feed("signals.device", compliant("c1", "D1", T0)),
            feed("signals.device", compliant("c2", "D2", T0)),
            feed("authz.grants", grant("g1", T0, device="D1", session="s1")),
        ],
        store,
        T0,
    )
    store.write(setup.changed_states)
    before = pruned("device")
    sweep_until(pipeline, store, T0 + 10 * DAY)
    assert dims(store) == {"device:D1"}  # D2 was named by no grant; D1 is named by g1
    assert pruned("device") - before == 1


def test_without_retention_nothing_is_pruned() -> None:
    keep = Pipeline(
        TOPICS,
        PolicyEngine.from_directory(ROOT / "policies"),
        RiskModel(),
        state_retention_ms=0,
    )
    store, feed = MemoryStore(), Feed()
    store.write(
        keep.process([feed("signals.device", compliant("c1", "D1", T0))], store, T0).changed_states
    )
    for day in (10, 20, 30):
        assert keep.prune([ALICE_SIGNALS], store, T0 + day * DAY).changed_states == {}
    assert dims(store) == {"device:D1"}


def test_a_pruned_session_revocation_does_not_let_a_grant_of_that_session_back_in(
    pipeline: Pipeline,
) -> None:
    """Session s1 is revoked (its grant with it); once the revocation is pruned, a grant naming
    s1 that was issued before the pruning horizon (it may predate the revocation) is refused,
    whether it names s1 or any other session the state no longer knows. A grant issued after
    the horizon is judged as a new session's (docs/operations.md)."""
    store, feed = MemoryStore(), Feed()
    revoked_at = T0 + 1000
    first = pipeline.process(
        [
            feed("signals.device", compliant("c1", "D1", T0)),
            feed("authz.grants", grant("g1", T0)),
            feed("signals.identity", signal("x1", "session-revoked", revoked_at, session_id="s1")),
        ],
        store,
        T0 + 2000,
    )
    [revocation] = outputs(first, "authz.revocations")
    assert revocation["grant_id"] == "g1" and revocation["rule"] == "deny-revoked-session"
    store.write(first.changed_states)

    # While the revocation is kept, a late grant of s1 is judged with it: denied.
    late = pipeline.process([feed("authz.grants", grant("g2", T0 + 500))], store, T0 + DAY)
    assert [d["effect"] for d in outputs(late, "authz.decisions")] == ["EFFECT_DENY"]
    store.write(late.changed_states)

    before = pruned("session")
    now = T0 + 10 * DAY
    sweep_until(pipeline, store, now)
    assert "session:s1" not in dims(store)
    assert pruned("session") - before == 1
    horizon = now  # the pruning sweep ran at now + RETENTION: horizon = now

    # A grant of s1 issued before the revocation, delivered only now: refused, not allowed.
    replayed = pipeline.process(
        [feed("authz.grants", grant("g3", T0 + 500))], store, now + RETENTION + 1
    )
    assert outputs(replayed, "authz.decisions") == []
    [dead] = outputs(replayed, "signals.deadletter")
    assert dead["error"] == "validation"
    assert "session revocations that old were pruned" in dead["reason"]
    assert "VIGIL_STATE_RETENTION_SECONDS" in dead["reason"]
    # Issued at the horizon (after the revocation, but a retention before the pruning): refused.
    at_horizon = pipeline.process(
        [feed("authz.grants", grant("g4", horizon))], store, now + RETENTION + 1
    )
    assert [d["error"] for d in outputs(at_horizon, "signals.deadletter")] == ["validation"]

    # Issued after the horizon: a session id used again more than a retention after its
    # revocation is a new session (the documented rule), judged on today's signals.
    fresh = pipeline.process(
        [feed("authz.grants", grant("g5", horizon + 1))], store, now + RETENTION + 1
    )
    assert outputs(fresh, "signals.deadletter") == []
    assert [d["effect"] for d in outputs(fresh, "authz.decisions")] == ["EFFECT_ALLOW"]


def test_a_session_revocation_named_by_an_active_grant_is_never_pruned(
    pipeline: Pipeline,
) -> None:
    """A bundle that does not deny revoked sessions leaves a grant of a revoked session active
    (written here as such a bundle would leave it): the revocation stays, however old."""
    store, feed = MemoryStore(), Feed()
    revoke = feed("signals.identity", signal("x9", "session-revoked", T0, session_id="s9"))
    store.write(pipeline.process([revoke], store, T0).changed_states)
    grants = new_grant_state()
    grants["grants"]["g9"] = {"grant_id": "g9", "session_id": "s9", "device_id": None}
    store.write({b"g:user:alice": orjson.dumps(grants)})
    for day in (10, 20, 40, 80):
        store.write(pipeline.prune([ALICE_SIGNALS], store, T0 + day * DAY).changed_states)
    assert "session:s9" in dims(store)
