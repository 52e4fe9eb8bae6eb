"""Validation of decoded input at the edge: clear reasons, event times in both accepted forms."""

from __future__ import annotations

from typing import Any

import pytest

from streams.models.grant import validate_grant_event
from streams.models.signal import SignalInvalid, validate_signal
from streams.models.timeparse import to_epoch_ms, to_rfc3339


def signal(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1",
        "type": "risk-level-change",
        "subject": {"type": "user", "id": "alice"},
        "source": "ueba",
        "event_time": "2026-11-29T10:00:00Z",
        "attributes": {"current_level": "HIGH"},
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-29T10:00:00Z", 1795946400000),
        ("2026-11-29T11:00:00+01:00", 1795946400000),
        ("2026-11-29T10:00:00.250Z", 1795946400250),
        (1795946400000, 1795946400000),
        ("1795946400000", 1795946400000),
    ],
)
def test_event_time_forms(value: object, expected: int) -> None:
    assert to_epoch_ms(value) == expected
    assert to_epoch_ms(to_rfc3339(expected)) == expected


@pytest.mark.parametrize("value", ["yesterday", "2026-11-29T10:00:00", 1795946400, True, None, [1]])
def test_bad_event_times_are_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        to_epoch_ms(value)


def test_valid_signal_becomes_plain_signal() -> None:
    sig = validate_signal(signal(attributes={"current_level": "high", "score": 91}))
    assert sig.subject_key == "user:alice"
    assert sig.event_time == 1795946400000
    assert sig.attributes == {"current_level": "HIGH", "score": 91.0}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (signal(type="weather-change"), "unsupported signal type"),
        (signal(subject={"type": "user"}), "subject.id"),
        (signal(event_time="soon"), "event_time"),
        (signal(attributes={"current_level": "EXTREME"}), "attributes.current_level"),
        (
            signal(type="network-context", attributes={"ip": "not-an-ip", "zone": "corp"}),
            "attributes.ip",
        ),
        (signal(type="session-revoked", attributes={"session_id": ""}), "attributes.session_id"),
        ([1, 2, 3], "(root)"),
    ],
)
def test_invalid_signals_say_why(raw: Any, fragment: str) -> None:
    with pytest.raises(SignalInvalid) as info:
        validate_signal(raw)
    assert fragment in str(info.value)


def grant_event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "op": "issued",
        "grant_id": "g1",
        "principal": {
            "id": "alice",
            "roles": ["employee"],
            "attr": {"dept": "x", "signals": {"risk": {"level": "LOW"}}, "grant": {"id": "fake"}},
        },
        "resource": {"kind": "document", "id": "d1", "attr": {}},
        "actions": ["read"],
        "issued_at": "2026-11-29T10:00:00Z",
    }
    base.update(overrides)
    return base


def test_grant_drops_reserved_attributes_callers_cannot_spoof() -> None:
    ev = validate_grant_event(grant_event())
    assert ev.subject_key == "user:alice"
    assert ev.grant is not None
    assert ev.grant["principal"]["attr"] == {"dept": "x"}


def test_released_grant_needs_only_its_id() -> None:
    ev = validate_grant_event({"op": "released", "grant_id": "g1"})
    assert ev.op == "released" and ev.subject_key is None


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"actions": []}, "actions"),
        ({"principal": None}, "principal"),
        ({"expires_at": "2026-11-29T09:00:00Z"}, "expires_at"),
        ({"op": "granted"}, "op"),
        ({"on_behalf_of": ["alice"]}, "on_behalf_of"),
        ({"on_behalf_of": [":alice"]}, "on_behalf_of"),
        ({"parent_grant_id": "g0"}, "parent_grant_id"),
    ],
)
def test_invalid_grants_say_why(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SignalInvalid) as info:
        validate_grant_event(grant_event(**overrides))
    assert fragment in str(info.value)


def test_a_delegated_grant_keeps_its_chain_and_parent() -> None:
    chain = ["user:bob", "agent:mail-bot", "workload:spiffe://example.org/job"]
    ev = validate_grant_event(grant_event(on_behalf_of=chain, parent_grant_id="g0"))
    assert ev.grant is not None
    assert ev.grant["on_behalf_of"] == chain
    assert ev.grant["parent_grant_id"] == "g0"
