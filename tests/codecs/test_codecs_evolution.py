"""Schema evolution: old writers read by the current reader (defaults applied), and back."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from streams.codecs import SCHEMAS, DecodeError, InputDecoder, OutputEncoder
from streams.codecs.schemas import runtime_schema
from tests.schema_registry import FakeRegistry

DATA = Path(__file__).parent / "data"
SIGNAL_V1_TEXT = (DATA / "Signal.v1.avsc").read_text()
DECISION_V1_TEXT = (DATA / "Decision.v1.avsc").read_text()
SIGNAL_V1 = runtime_schema(SIGNAL_V1_TEXT)
DECISION_V1 = runtime_schema(DECISION_V1_TEXT)


def _write(schema: Any, datum: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, schema, datum)
    return buf.getvalue()


def _frame(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def test_v1_schemas_really_differ_from_current() -> None:
    assert to_parsing_canonical_form(SIGNAL_V1) != to_parsing_canonical_form(
        SCHEMAS["Signal"].parsed
    )
    assert to_parsing_canonical_form(DECISION_V1) != to_parsing_canonical_form(
        SCHEMAS["Decision"].parsed
    )


def test_old_signal_decodes_with_current_reader(
    signal: dict[str, Any], registry: FakeRegistry
) -> None:
    """A v1 producer (no RiskLevelChange.score) registered its schema; we read with ours."""
    v1_id = registry.register("signals.risk-value", SIGNAL_V1_TEXT)
    datum = {
        **signal,
        "type": "risk-level-change",
        "attributes": ("dev.vigil.RiskLevelChange", {"current_level": "HIGH"}),
    }
    data = _frame(v1_id, _write(SIGNAL_V1, datum))
    out = InputDecoder("Signal", registry_url=registry.url).decode(data)
    assert out["attributes"] == {"current_level": "HIGH"}  # score defaulted to null -> omitted
    # the raw resolution really applied the default
    raw = schemaless_reader(io.BytesIO(data[5:]), SIGNAL_V1, SCHEMAS["Signal"].parsed)
    assert raw["attributes"] == {"current_level": "HIGH", "previous_level": None, "score": None}


def test_old_decision_gets_defaults(decision: dict[str, Any], registry: FakeRegistry) -> None:
    v1_id = registry.register("authz.decisions-value", DECISION_V1_TEXT)
    old = {k: v for k, v in decision.items() if k not in ("eval_duration_seconds", "errors")}
    old["request"] = json.dumps(old["request"])
    old["cause"] = {"kind": "signal", "event_id": "e-1"}  # v1: no signal_type, ...
    data = _frame(v1_id, _write(DECISION_V1, old))
    out = InputDecoder("Decision", registry_url=registry.url).decode(data)
    assert out == {**decision, "cause": old["cause"], "eval_duration_seconds": 0.0, "errors": []}


def test_old_and_new_writers_mixed_on_one_topic(
    signal: dict[str, Any], registry: FakeRegistry
) -> None:
    v1_id = registry.register("signals.device-value", SIGNAL_V1_TEXT)
    old = _frame(
        v1_id,
        _write(
            SIGNAL_V1,
            {**signal, "attributes": ("dev.vigil.DeviceComplianceChange", signal["attributes"])},
        ),
    )
    new = OutputEncoder("Signal", registry_url=registry.url, topic="signals.device").encode(signal)
    dec = InputDecoder("Signal", registry_url=registry.url)
    assert dec.decode(old) == dec.decode(new) == signal
    assert old[1:5] != new[1:5]


def test_new_signal_read_by_old_reader(signal: dict[str, Any]) -> None:
    """Forward direction: a v1 consumer reads current data; the new field is skipped."""
    rec = {
        **signal,
        "type": "risk-level-change",
        "attributes": {"current_level": "HIGH", "previous_level": "LOW", "score": 0.9},
    }
    data = OutputEncoder("Signal").encode(rec)
    old = schemaless_reader(io.BytesIO(data), SCHEMAS["Signal"].parsed, SIGNAL_V1)
    assert old["attributes"] == {"current_level": "HIGH", "previous_level": "LOW"}


def test_new_decision_read_by_old_reader(decision: dict[str, Any]) -> None:
    data = OutputEncoder("Decision").encode(decision)
    old = schemaless_reader(io.BytesIO(data), SCHEMAS["Decision"].parsed, DECISION_V1)
    assert "errors" not in old and old["decision_id"] == decision["decision_id"]
    assert old["cause"] == {"kind": "signal", "event_id": "e-1"}  # new cause fields skipped


def test_new_union_branch_is_not_forward_compatible(signal: dict[str, Any]) -> None:
    """Documented rule: a new attributes branch needs consumers upgraded before producers."""
    rec = {**signal, "type": "network-context", "attributes": {"zone": "corp"}}
    data = OutputEncoder("Signal").encode(rec)
    with pytest.raises(Exception):  # noqa: B017 - fastavro SchemaResolutionError
        schemaless_reader(io.BytesIO(data), SCHEMAS["Signal"].parsed, SIGNAL_V1)


def test_incompatible_writer_is_a_decode_error(
    registry: FakeRegistry, decision: dict[str, Any]
) -> None:
    """A Decision writer schema registered on a signal topic cannot resolve to Signal."""
    sid = registry.register("signals.device-value", SCHEMAS["Decision"].text)
    data = _frame(sid, OutputEncoder("Decision").encode(decision)[0:])
    with pytest.raises(DecodeError, match="invalid Avro record"):
        InputDecoder("Signal", registry_url=registry.url).decode(data)
