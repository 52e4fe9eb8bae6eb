"""Subject state rules: newest event time per dimension wins, duplicates do nothing, unknown
devices are never compliant, and only the grants that can see a change are re-evaluated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.models.signal import Signal
from streams.state.risk import RiskModel
from streams.state.subject import (
    Applied,
    apply_signal,
    device_snapshot,
    expire_grants,
    grants_seeing,
    new_grant_state,
    new_signal_state,
    session_snapshot,
    subject_snapshot,
)

ROOT = Path(__file__).resolve().parents[2]
RISK = RiskModel.from_file(ROOT / "risk" / "model.yaml")


def sig(eid: str, kind: str, at: int, **attrs: Any) -> Signal:
    return Signal(eid, kind, "user:alice", "test", at, attrs)


def test_newest_event_time_wins_and_older_is_recorded_only() -> None:
    state = new_signal_state()
    new = sig("e2", "device-compliance-change", 2000, device_id="D1", current_status="compliant")
    old = sig(
        "e1", "device-compliance-change", 1000, device_id="D1", current_status="not-compliant"
    )
    assert apply_signal(state, new) == (Applied.APPLIED, "device:D1", True)
    assert apply_signal(state, old) == (Applied.STALE, "device:D1", False)
    assert device_snapshot(state, "D1")["compliant"] is True
    assert "e1" in state["recent"]


def test_newer_event_with_the_same_value_is_applied_but_not_a_change() -> None:
    state = new_signal_state()
    first = sig("e1", "risk-level-change", 1000, current_level="LOW")
    again = sig("e2", "risk-level-change", 2000, current_level="LOW")
    assert apply_signal(state, first)[2] is True
    assert apply_signal(state, again) == (Applied.APPLIED, "risk", False)
    assert state["dims"]["risk"][0] == 2000


def test_duplicate_event_id_is_ignored() -> None:
    state = new_signal_state()
    event = sig("e1", "risk-level-change", 1000, current_level="HIGH")
    assert apply_signal(state, event)[0] is Applied.APPLIED
    assert apply_signal(state, event)[0] is Applied.DUPLICATE


def test_equal_event_times_break_ties_by_event_id_in_any_arrival_order() -> None:
    a = sig("a", "risk-level-change", 1000, current_level="LOW")
    b = sig("b", "risk-level-change", 1000, current_level="HIGH")
    s1, s2 = new_signal_state(), new_signal_state()
    for event in (a, b):
        apply_signal(s1, event)
    for event in (b, a):
        apply_signal(s2, event)
    assert s1["dims"] == s2["dims"]


def test_unknown_device_and_session_defaults_are_the_safe_ones() -> None:
    state = new_signal_state()
    assert device_snapshot(state, "D9") == {"id": "D9", "compliant": False, "status": "unknown"}
    assert device_snapshot(state, None)["compliant"] is False
    assert session_snapshot(state, "s1") == {"id": "s1", "revoked": False}
    apply_signal(state, sig("e1", "session-revoked", 1000, session_id="s1"))
    assert session_snapshot(state, "s1")["revoked"] is True


def test_risk_snapshot_combines_dimensions() -> None:
    state = new_signal_state()
    assert subject_snapshot(state, RISK)["risk"] == {"level": "LOW", "score": 30.0}
    apply_signal(
        state,
        sig("n1", "network-context", 1000, ip="203.0.113.9", zone="untrusted", anomalies=["tor"]),
    )
    snap = subject_snapshot(state, RISK)
    assert snap["network"]["zone"] == "untrusted"
    assert snap["risk"] == {"level": "HIGH", "score": 75.0}  # 30 unknown + 30 zone + 15 anomaly
    apply_signal(state, sig("c1", "credential-compromise", 1000))
    assert subject_snapshot(state, RISK)["identity"]["credential_compromised"] is True
    apply_signal(state, sig("c2", "credential-change", 2000))
    assert subject_snapshot(state, RISK)["identity"]["credential_compromised"] is False


def test_risk_file_matches_built_in_defaults() -> None:
    assert RiskModel() == RISK


def test_only_grants_that_see_the_change_are_re_evaluated() -> None:
    state = new_grant_state()
    state["grants"] = {
        "g1": {"grant_id": "g1", "device_id": "D1", "session_id": "s1"},
        "g2": {"grant_id": "g2", "device_id": "D2", "session_id": "s1"},
        "g3": {"grant_id": "g3", "device_id": None, "session_id": "s2"},
    }
    ids = lambda grants: sorted(g["grant_id"] for g in grants)  # noqa: E731
    assert ids(grants_seeing(state, "device:D1", False)) == ["g1"]
    assert ids(grants_seeing(state, "session:s1", False)) == ["g1", "g2"]
    assert ids(grants_seeing(state, "network", False)) == []
    assert ids(grants_seeing(state, "network", True)) == ["g1", "g2", "g3"]


def test_expired_grants_leave_the_active_set() -> None:
    state = new_grant_state()
    state["grants"] = {
        "g1": {"grant_id": "g1", "expires_at": 1000},
        "g2": {"grant_id": "g2", "expires_at": None},
    }
    assert [g["grant_id"] for g in expire_grants(state, 1000)] == ["g1"]
    assert list(state["grants"]) == ["g2"]
