"""JSON shape -> Avro/JSON bytes -> JSON shape, for every record kind and signal type."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from streams.codecs import (
    RECORD_KINDS,
    SCHEMAS,
    EncodeError,
    InputDecoder,
    OutputEncoder,
    RecordKind,
    to_millis,
)

T0 = 1795946400000


@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_avro_round_trip_every_kind(kind: RecordKind, records: dict[str, dict[str, Any]]) -> None:
    rec = records[kind]
    original = copy.deepcopy(rec)
    enc = OutputEncoder(kind)
    data = enc.encode(rec)
    assert rec == original, "encode must not mutate its input"
    assert enc.headers == [("content-type", f"avro/binary; schema=dev.vigil.{kind}".encode())]
    assert InputDecoder(kind).decode(data, enc.headers) == original
    assert InputDecoder(kind).decode(data) == original  # no headers: sniffed as Avro


@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_json_round_trip_every_kind(kind: RecordKind, records: dict[str, dict[str, Any]]) -> None:
    rec = records[kind]
    enc = OutputEncoder(kind, fmt="json")
    data = enc.encode(rec)
    assert enc.headers == [("content-type", b"application/json")]
    assert InputDecoder(kind).decode(data, enc.headers) == rec
    assert InputDecoder(kind).decode(data) == rec


def test_deadletter_json_carries_bytes_as_base64(deadletter: dict[str, Any]) -> None:
    data = OutputEncoder("DeadLetter", fmt="json").encode(deadletter)
    assert b'"value":"e25vcGUA/w=="' in data


SIGNAL_ATTRIBUTES: list[tuple[str, dict[str, Any]]] = [
    ("device-compliance-change", {"current_status": "compliant"}),
    (
        "risk-level-change",
        {"current_level": "HIGH", "previous_level": "LOW", "score": 0.93},
    ),
    ("risk-level-change", {"current_level": "MEDIUM"}),
    ("credential-change", {"credential_type": "password", "change_type": "update"}),
    ("assurance-level-change", {"current_level": "nist-aal1", "previous_level": "nist-aal2"}),
    ("account-disabled", {"reason": "hijacking"}),
    ("account-enabled", {}),
    ("credential-compromise", {"reason": "leaked in breach corpus"}),
    ("session-revoked", {"session_id": "s-1"}),
    (
        "network-context",
        {
            "ip": "203.0.113.7",
            "country": "NL",
            "asn": 64500,
            "zone": "public",
            "anomalies": ["impossible-travel", "tor-exit"],
        },
    ),
    ("network-context", {"zone": "corp"}),
    # no typed record for this type: JSON-text fallback branch
    ("token-claims-change", {"claims": {"role": "ro-admin"}, "n": 1}),
    # typed type, but the shape does not fit: lossless JSON-text fallback
    ("risk-level-change", {"current_level": "HIGH", "vendor_score": {"x": 1}}),
    ("session-revoked", {}),
    ("risk-level-change", {"current_level": 3}),
]


@pytest.mark.parametrize(("signal_type", "attributes"), SIGNAL_ATTRIBUTES)
def test_signal_attributes_round_trip(
    signal: dict[str, Any], signal_type: str, attributes: dict[str, Any]
) -> None:
    rec = {**signal, "type": signal_type, "attributes": attributes}
    out = InputDecoder("Signal").decode(OutputEncoder("Signal").encode(rec))
    assert out == rec


def test_typed_attributes_are_cheaper_than_json_text(signal: dict[str, Any]) -> None:
    typed = OutputEncoder("Signal").encode(signal)
    assert b"current_status" not in typed  # field names are in the schema, not the bytes


def test_null_optional_attributes_are_omitted(signal: dict[str, Any]) -> None:
    rec = {**signal, "type": "risk-level-change", "attributes": {"current_level": "LOW"}}
    rec["attributes"]["previous_level"] = None
    out = InputDecoder("Signal").decode(OutputEncoder("Signal").encode(rec))
    assert out["attributes"] == {"current_level": "LOW"}


def test_missing_attributes_decode_as_empty_dict(signal: dict[str, Any]) -> None:
    rec = {k: v for k, v in signal.items() if k != "attributes"}
    out = InputDecoder("Signal").decode(OutputEncoder("Signal").encode(rec))
    assert out["attributes"] == {}


@pytest.mark.parametrize(
    ("event_time", "millis"),
    [
        ("2026-11-29T10:00:00Z", T0),
        ("2026-11-29t10:00:00z", T0),
        ("2026-11-29T11:00:00+01:00", T0),
        ("2026-11-29T10:00:00.123Z", T0 + 123),
        ("2026-11-29T10:00:00.123456789Z", T0 + 123),
        (T0, T0),
        (str(T0), T0),
        (float(T0), T0),
    ],
)
def test_signal_event_time_forms(signal: dict[str, Any], event_time: Any, millis: int) -> None:
    rec = {**signal, "event_time": event_time}
    out = InputDecoder("Signal").decode(OutputEncoder("Signal").encode(rec))
    assert out["event_time"] == millis


def test_json_input_is_returned_unchanged() -> None:
    raw = b' \n{"event_id":"e-1","event_time":"2026-11-29T10:00:00Z","extra":[1,2]}'
    out = InputDecoder("Signal").decode(raw)
    assert out == {"event_id": "e-1", "event_time": "2026-11-29T10:00:00Z", "extra": [1, 2]}


def test_grant_rfc3339_times_and_defaults(grant: dict[str, Any]) -> None:
    rec = {
        "op": "released",
        "grant_id": "g-2",
        "principal": {"id": "report-bot", "type": "agent"},
        "resource": {"kind": "document", "id": "doc-1"},
        "issued_at": "2026-11-29T10:00:00Z",
    }
    out = InputDecoder("GrantEvent").decode(OutputEncoder("GrantEvent").encode(rec))
    assert out == {
        "op": "released",
        "grant_id": "g-2",
        "principal": {"id": "report-bot", "type": "agent", "roles": [], "attr": {}},
        "resource": {"kind": "document", "id": "doc-1", "attr": {}},
        "actions": [],
        "session_id": None,
        "device_id": None,
        "issued_at": T0,
        "expires_at": None,
        "on_behalf_of": [],
        "parent_grant_id": None,
    }


def test_decision_non_string_errors_are_kept_as_json_text(decision: dict[str, Any]) -> None:
    rec = {**decision, "errors": ["plain", {"policy": "p", "error": "boom"}]}
    out = InputDecoder("Decision").decode(OutputEncoder("Decision").encode(rec))
    assert out["errors"] == ["plain", '{"policy":"p","error":"boom"}']


def test_encode_missing_required_field_raises(decision: dict[str, Any]) -> None:
    del decision["evaluated_at"]
    with pytest.raises(EncodeError, match="evaluated_at"):
        OutputEncoder("Decision").encode(decision)


def test_encode_bad_time_raises(signal: dict[str, Any]) -> None:
    with pytest.raises(EncodeError, match="event_time"):
        OutputEncoder("Signal").encode({**signal, "event_time": "yesterday"})


def test_encode_wrong_type_raises(revocation: dict[str, Any]) -> None:
    with pytest.raises(EncodeError, match="Revocation"):
        OutputEncoder("Revocation").encode({**revocation, "denied_actions": 5})


def test_to_millis_exact() -> None:
    assert to_millis("1970-01-01T00:00:00.001Z") == 1
    assert to_millis(None) is None


def test_every_schema_is_parsed_once_and_named() -> None:
    assert set(SCHEMAS) == set(RECORD_KINDS)
    for name, schema in SCHEMAS.items():
        assert schema.fullname == f"dev.vigil.{name}"
        assert schema.parsed["name"] == schema.fullname


def test_unknown_kind_rejected() -> None:
    with pytest.raises(ValueError):
        InputDecoder("Nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OutputEncoder("Signal", fmt="xml")  # type: ignore[arg-type]
