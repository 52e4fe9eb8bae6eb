"""The limits of streams.models.limits at the edge: each is refused one step past it, with the field
and the limit in the reason, and accepted at it; the signal fast path agrees with the models."""

from __future__ import annotations

from typing import Any

import pytest

from streams.models import limits
from streams.models.grant import validate_grant_event
from streams.models.limits import check_free_form
from streams.models.signal import SignalInvalid, _fast_signal, _validate_with_models
from streams.models.timeparse import to_epoch_ms


def signal(**patch: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": "e1",
        "type": "network-context",
        "subject": {"type": "user", "id": "alice"},
        "source": "ids",
        "event_time": "2026-11-29T10:00:00Z",
        "attributes": {"ip": "10.0.0.1", "zone": "corp"},
    }
    attrs = patch.pop("attributes", {})
    body.update(patch)
    body["attributes"] = {**body["attributes"], **attrs}
    return body


def grant(**patch: Any) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": "g1",
        "principal": {"id": "alice", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": "d1", "attr": {}},
        "actions": ["read"],
        "issued_at": "2026-11-29T10:00:00Z",
        **patch,
    }


def refusal(raw: dict[str, Any]) -> str | None:
    """The models' reason, after checking that the fast path does not accept what they refuse."""
    try:
        expected = _validate_with_models(raw)
    except SignalInvalid as exc:
        assert _fast_signal(raw) is None
        return str(exc)
    fast = _fast_signal(raw)
    assert fast is None or fast == expected
    return None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (limits.LATEST_TIME_MS - 1, True),
        (limits.LATEST_TIME_MS, False),
        (2**64, False),
        (float(2**64), False),
        (1e18, False),
        (float("nan"), False),
        (float("inf"), False),
        ("18446744073709551616", False),
        ("9999-12-30T23:59:59.999Z", True),
        ("9999-12-31T00:00:00Z", False),
        ("1970-01-01T00:00:00.001Z", True),
        ("1970-01-01T00:00:00Z", False),
        ("1969-12-31T23:59:59Z", False),
        ("0001-01-01T00:00:00+00:00", False),
    ],
)
def test_every_time_lies_in_one_range(value: Any, ok: bool) -> None:
    reason = refusal(signal(event_time=value))
    if ok:
        assert reason is None
        return
    assert reason is not None and reason.startswith("event_time:")
    if not isinstance(value, float) or value == value and abs(value) != float("inf"):
        assert limits.TIME_RANGE_TEXT in reason


def test_grant_times_share_the_range_and_1970_is_not_reported_missing() -> None:
    with pytest.raises(SignalInvalid, match=r"^issued_at: .*valid time range"):
        validate_grant_event(grant(issued_at=1e18))
    with pytest.raises(SignalInvalid, match=r"^expires_at: .*valid time range"):
        validate_grant_event(grant(expires_at="9999-12-31T12:00:00Z"))
    with pytest.raises(SignalInvalid, match="1970-01-01T00:00:00Z") as err:
        validate_grant_event(grant(issued_at="1970-01-01T00:00:00Z"))
    assert "needs" not in str(err.value)
    assert to_epoch_ms("1970-01-01T00:00:00.001Z") == 1


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"event_id": "e" * 257}, "event_id: String should have at most 256"),
        ({"source": "s" * 257}, "source: String should have at most 256"),
        (
            {"subject": {"type": "user", "id": "a" * 513}},
            "subject.id: String should have at most 512",
        ),
        ({"attributes": {"zone": "z" * 257}}, "attributes.zone: String should have at most 256"),
        ({"attributes": {"asn": 2**32}}, "attributes.asn: Input should be less than or equal to"),
        ({"attributes": {"asn": 2**64}}, "attributes.asn"),
        (
            {"attributes": {"anomalies": ["a"] * 65}},
            "attributes.anomalies: List should have at most 64",
        ),
        ({"attributes": {"extra": 2**63}}, "attributes: integer 9223372036854775808 does not fit"),
        ({"attributes": {"extra": float("nan")}}, "attributes: nan is not a finite number"),
        ({"attributes": {"extra": [[[[[[[[1]]]]]]]]}}, "attributes: nested deeper than 8"),
        ({"attributes": {"extra": list(range(1100))}}, "attributes: more than 1024 entries"),
        ({"attributes": {"extra": "x" * 70_000}}, "more than 65536"),
    ],
)
def test_signal_values_beyond_a_limit_are_refused_with_it(
    patch: dict[str, Any], reason: str
) -> None:
    got = refusal(signal(**patch))
    assert got is not None and reason in got


@pytest.mark.parametrize(
    "patch",
    [
        {"event_id": "e" * 256},
        {"attributes": {"zone": "z" * 256, "asn": 2**32 - 1, "anomalies": ["a" * 256] * 64}},
        {"attributes": {"extra": 2**63 - 1, "low": -(2**63)}},
        {"attributes": {"extra": [[[[[[[1]]]]]]]}},
    ],
)
def test_values_at_a_limit_are_accepted(patch: dict[str, Any]) -> None:
    assert refusal(signal(**patch)) is None


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"actions": ["read"] * 65}, "actions: List should have at most 64"),
        ({"actions": ["r" * 257]}, "actions.0: String should have at most 256"),
        ({"session_id": "s" * 257}, "session_id: String should have at most 256"),
        ({"principal": {"id": "a", "roles": ["x"] * 65}}, "principal.roles: List should have"),
        ({"principal": {"id": "a", "roles": ["x"], "attr": {"n": -(2**63) - 1}}}, "principal.attr"),
        ({"resource": {"kind": "k", "id": "1", "attr": {"f": float("inf")}}}, "resource.attr"),
        ({"resource": {"kind": "k", "id": "1", "attr": {"s": "\ud800"}}}, "cannot be encoded"),
    ],
)
def test_grant_values_beyond_a_limit_are_refused(patch: dict[str, Any], reason: str) -> None:
    with pytest.raises(SignalInvalid) as err:
        validate_grant_event(grant(**patch))
    assert reason in str(err.value)


def test_free_form_check_refuses_what_cannot_be_stored() -> None:
    check_free_form({"a": [1, 2.5, "x", None, True, {"b": -(2**63)}]}, "attr")
    for bad in ({1: "x"}, {"a": {1, 2}}, {"a": b"bytes"}):
        with pytest.raises(ValueError, match="^attr: "):
            check_free_form(bad, "attr")
