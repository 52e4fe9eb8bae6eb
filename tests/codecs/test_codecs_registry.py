"""Confluent wire format against an in-test schema registry (standard REST contract)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.codecs import (
    RECORD_KINDS,
    SCHEMAS,
    DecodeError,
    InputDecoder,
    OutputEncoder,
    RecordKind,
    RegistryError,
    TransientError,
    decode_any,
)
from tests.schema_registry import FakeRegistry


@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_confluent_round_trip(
    kind: RecordKind, records: dict[str, dict[str, Any]], registry: FakeRegistry
) -> None:
    enc = OutputEncoder(kind, registry_url=registry.url, topic=f"t.{kind}")
    data = enc.encode(records[kind])
    assert data[0] == 0
    sid = int.from_bytes(data[1:5], "big")
    assert sid == enc.schema_id
    assert registry.subjects[f"t.{kind}-value"] == [sid]
    assert json.loads(registry.schemas[sid - 1]) == json.loads(SCHEMAS[kind].text)
    assert InputDecoder(kind, registry_url=registry.url).decode(data) == records[kind]


def test_registry_is_called_once_per_schema(signal: dict[str, Any], registry: FakeRegistry) -> None:
    enc = OutputEncoder("Signal", registry_url=registry.url, topic="signals.device")
    dec = InputDecoder("Signal", registry_url=registry.url)
    for i in range(20):
        assert dec.decode(enc.encode({**signal, "event_id": f"e-{i}"}))["event_id"] == f"e-{i}"
    dec2 = InputDecoder("Signal", registry_url=registry.url)  # shares the per-URL cache
    dec2.decode(enc.encode(signal))
    assert registry.requests == [
        ("POST", "/subjects/signals.device-value/versions"),
        ("GET", "/schemas/ids/1"),
    ]


def test_record_name_subject_without_topic(
    decision: dict[str, Any], registry: FakeRegistry
) -> None:
    OutputEncoder("Decision", registry_url=registry.url).encode(decision)
    assert list(registry.subjects) == ["dev.vigil.Decision"]


def test_registry_decoder_still_accepts_json_and_schemaless(
    signal: dict[str, Any], registry: FakeRegistry
) -> None:
    dec = InputDecoder("Signal", registry_url=registry.url)
    assert dec.decode(OutputEncoder("Signal", fmt="json").encode(signal)) == signal
    assert dec.decode(OutputEncoder("Signal").encode(signal)) == signal
    assert registry.requests == []


def test_unknown_schema_id_is_a_decode_error(
    signal: dict[str, Any], registry: FakeRegistry
) -> None:
    data = b"\x00\x00\x00\x00\x63" + OutputEncoder("Signal").encode(signal)
    with pytest.raises(DecodeError, match="unknown schema id 99"):
        InputDecoder("Signal", registry_url=registry.url).decode(data)


def test_registry_outage_is_not_a_decode_error(signal: dict[str, Any]) -> None:
    """An unreachable registry must not dead-letter good messages: it raises RegistryError."""
    data = b"\x00\x00\x00\x00\x01" + OutputEncoder("Signal").encode(signal)
    dec = InputDecoder("Signal", registry_url="http://127.0.0.1:9")
    with pytest.raises(RegistryError) as info:
        dec.decode(data)
    assert not isinstance(info.value, DecodeError)
    assert isinstance(info.value, TransientError)
    assert info.value.dependency == "schema_registry"


@pytest.mark.parametrize("status", [500, 503])
def test_registry_server_error_is_transient_and_retried(
    status: int, signal: dict[str, Any], registry: FakeRegistry
) -> None:
    """A 5xx is an outage: TransientError now, and the same bytes decode once it is over."""
    data = OutputEncoder("Signal", registry_url=registry.url, topic="t5xx").encode(signal)
    dec = InputDecoder("Signal", registry_url=registry.url)  # a new registry: nothing cached
    registry.failing = status
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        dec.decode(data)
    registry.failing = None
    assert dec.decode(data) == signal


def test_registry_down_then_back(signal: dict[str, Any], registry: FakeRegistry) -> None:
    data = OutputEncoder("Signal", registry_url=registry.url, topic="tdown").encode(signal)
    registry.stop()
    dec = InputDecoder("Signal", registry_url=registry.url)
    with pytest.raises(TransientError):
        dec.decode(data)
    registry.start()
    assert dec.decode(data) == signal


def test_non_avro_writer_schema_is_a_decode_error(
    signal: dict[str, Any], registry: FakeRegistry
) -> None:
    """A record that names a PROTOBUF schema is bad input (dead letter), not an outage."""
    registry.schemas.append('{"type": "record", "name": "X", "fields": []}')
    registry.types = {len(registry.schemas): "PROTOBUF"}
    data = b"\x00" + len(registry.schemas).to_bytes(4, "big") + b"\x02"
    with pytest.raises(DecodeError, match="PROTOBUF, not AVRO"):
        InputDecoder("Signal", registry_url=registry.url).decode(data)


def test_decode_any_uses_registry_writer_name(
    revocation: dict[str, Any], registry: FakeRegistry
) -> None:
    data = OutputEncoder("Revocation", registry_url=registry.url, topic="x").encode(revocation)
    assert decode_any(data, registry_url=registry.url) == ("Revocation", revocation)
    # without the registry the frame is skipped and the payload tried against local schemas
    assert decode_any(data) == ("Revocation", revocation)
