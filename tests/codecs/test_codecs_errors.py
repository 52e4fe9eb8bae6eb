"""Bad bytes -> DecodeError with a reason a human can act on (it lands in signals.deadletter)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.codecs import DecodeError, InputDecoder, OutputEncoder


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"", None, "empty message value"),
        (b'{"event_id": "e-1",', None, "invalid JSON"),
        (b"  {nope}", None, "invalid JSON"),
        (b"[1, 2]", [("content-type", b"application/json")], "expected a JSON object, got array"),
        (b'"hello"', [("Content-Type", b"application/json; charset=utf-8")], "JSON object"),
        (b"\x06e-1", None, "truncated Avro record"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", None, "invalid Avro record"),
    ],
)
def test_bad_bytes_raise_decode_error_with_reason(
    value: bytes, headers: list[tuple[str, bytes]] | None, reason: str
) -> None:
    with pytest.raises(DecodeError) as info:
        InputDecoder("Signal").decode(value, headers)
    assert reason in info.value.reason
    assert str(info.value) == info.value.reason


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (b"[]", "array"),
        (b'[{"event_id": "e-1"}]', "array"),
        (b"null", "null"),
        (b"42", "number"),
        (b"-1.5", "number"),
        (b'"hello"', "string"),
        (b"true", "boolean"),
        (b"  [1]", "array"),
    ],
)
def test_json_that_is_not_an_object_says_so_without_a_header(value: bytes, got: str) -> None:
    """No content-type header: the bytes are tried as Avro first; the reason must still name the
    JSON type the producer sent, not an Avro failure."""
    expected = f"expected a JSON object, got {got}"
    with pytest.raises(DecodeError) as info:
        InputDecoder("Signal").decode(value)
    assert info.value.reason == expected
    with pytest.raises(DecodeError) as info:
        InputDecoder("GrantEvent").decode(value)
    assert info.value.reason == expected


def test_trailing_bytes_are_rejected(signal: dict[str, Any]) -> None:
    data = OutputEncoder("Signal").encode(signal) + b"\x00\x01"
    with pytest.raises(DecodeError, match="trailing byte"):
        InputDecoder("Signal").decode(data)


def test_other_kind_is_rejected(decision: dict[str, Any]) -> None:
    data = OutputEncoder("Decision").encode(decision)
    with pytest.raises(DecodeError):
        InputDecoder("Signal").decode(data)


def test_header_for_other_schema_is_rejected(decision: dict[str, Any]) -> None:
    enc = OutputEncoder("Decision")
    with pytest.raises(DecodeError, match="content-type says schema dev.vigil.Decision"):
        InputDecoder("Signal").decode(enc.encode(decision), enc.headers)


def test_invalid_utf8_in_string(signal: dict[str, Any]) -> None:
    data = bytearray(OutputEncoder("Signal").encode({**signal, "event_id": "e-\u00e9"}))
    data[data.index("\u00e9".encode())] = 0xFF
    with pytest.raises(DecodeError, match="UTF-8"):
        InputDecoder("Signal").decode(bytes(data))


def test_confluent_framing_without_registry_gives_a_hint(signal: dict[str, Any]) -> None:
    data = b"\x00\x00\x00\x00\x07" + OutputEncoder("Signal").encode(signal)
    with pytest.raises(DecodeError, match="VIGIL_SCHEMA_REGISTRY_URL"):
        InputDecoder("Signal").decode(data)


def test_garbage_in_json_text_field_is_a_decode_error() -> None:
    # GrantEvent with principal.attr = "{" (not JSON): produced by a foreign Avro producer
    import io

    from fastavro import schemaless_writer

    from streams.codecs import SCHEMAS

    buf = io.BytesIO()
    schemaless_writer(
        buf,
        SCHEMAS["GrantEvent"].parsed,
        {
            "op": "issued",
            "grant_id": "g",
            "principal": {"id": "a", "type": "user", "roles": [], "attr": "{"},
            "resource": {"kind": "doc", "id": "1", "attr": "{}"},
            "actions": [],
            "session_id": None,
            "device_id": None,
            "issued_at": None,
            "expires_at": None,
            "on_behalf_of": [],
        },
    )
    with pytest.raises(DecodeError, match="invalid JSON text inside Avro field"):
        InputDecoder("GrantEvent").decode(buf.getvalue())
