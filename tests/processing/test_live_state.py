"""`signal_attributes_of` (what `vigil inventory --grants` counts as sent) against what each
signal type really changes in the snapshots the policies read: every attribute a signal moves
must be among those its dimension is mapped to, so a new dimension cannot go unreported."""

from __future__ import annotations

from typing import Any

import pytest

from streams.models.signal import SIGNAL_TYPES, Signal
from streams.processing.live_state import signal_attributes_of
from streams.state.risk import RiskModel
from streams.state.subject import (
    apply_signal,
    device_snapshot,
    new_signal_state,
    session_snapshot,
    subject_snapshot,
    token_snapshot,
)
from tests.processing.support import ROOT

RISK = RiskModel.from_file(ROOT / "risk" / "model.yaml")

# One signal per type (and per kind of session-revoked / token-claims-change) that moves its
# dimension away from the default.
EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("device-compliance-change", {"device_id": "D1", "current_status": "compliant"}),
    ("risk-level-change", {"current_level": "HIGH"}),
    ("credential-change", {}),
    ("assurance-level-change", {"current_level": "aal3"}),
    ("account-disabled", {}),
    ("account-enabled", {}),
    ("credential-compromise", {}),
    ("session-revoked", {"session_id": "S1"}),
    ("session-revoked", {"grant_id": "G1"}),
    ("session-revoked", {"device_id": "D1"}),
    ("session-revoked", {}),
    ("network-context", {"ip": "10.0.0.1", "zone": "untrusted", "anomalies": ["tor"]}),
    ("session-established", {"session_id": "S1"}),
    ("session-presented", {"session_id": "S1"}),
    ("token-claims-change", {"grant_id": "G1", "claims": {"role": "x"}}),
    ("token-claims-change", {"claims": {"role": "x"}}),
    ("account-purged", {}),
    ("account-credential-change-required", {}),
    ("identifier-changed", {}),
    ("identifier-recycled", {}),
]


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and value and prefix != "signals.token.claims":
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}", v))
        return out
    return {prefix: value}


def _signals(state: dict[str, Any]) -> dict[str, Any]:
    snapshot = subject_snapshot(state, RISK)
    snapshot["device"] = device_snapshot(state, "D1")
    snapshot["session"] = session_snapshot(state, "S1", "G1", "D1", issued_at=0)
    snapshot["token"] = token_snapshot(state, "G1")
    return _flat("signals", snapshot)


def test_every_signal_type_has_an_example() -> None:
    assert {kind for kind, _ in EXAMPLES} == SIGNAL_TYPES


@pytest.mark.parametrize(("kind", "attrs"), EXAMPLES, ids=[f"{k}{sorted(a)}" for k, a in EXAMPLES])
def test_the_attributes_a_signal_moves_are_those_of_its_dimension(
    kind: str, attrs: dict[str, Any]
) -> None:
    before = _signals(new_signal_state())
    state = new_signal_state()
    signal = Signal("e1", kind, "user:alice", "test", 1_000, attrs)
    _, dimension, _ = apply_signal(state, signal)
    after = _signals(state)
    moved = {name for name in after if after[name] != before[name]}
    mapped = signal_attributes_of(dimension)
    unmapped = {m for m in moved if not any(m == a or m.startswith(a + ".") for a in mapped)}
    assert not unmapped, f"{kind} ({dimension}) moves {unmapped}, not in {mapped}"
    if kind not in ("session-established", "session-presented", "account-enabled"):
        assert moved, f"example for {kind} moves nothing"
