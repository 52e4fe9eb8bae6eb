"""The compiled Avro encoders (streams/codecs/compiled.py) against fastavro, the reference.

Records are generated from the schemas themselves with a seeded random generator (hypothesis is not
a dependency), so a schema change is covered without touching this file.
"""

from __future__ import annotations

import copy
import enum
import io
import json
import linecache
import math
import random
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from fastavro import schemaless_reader, schemaless_writer

from streams.codecs import (
    RECORD_KINDS,
    SCHEMAS,
    SIGNAL_ATTRIBUTE_RECORDS,
    EncodeError,
    InputDecoder,
    OutputEncoder,
)
from streams.codecs.avro import AvroWriter
from streams.codecs.compiled import compile_encoder, locate_error
from streams.codecs.shapes import TO_AVRO

T0 = 1795946400000
INT_EDGES = [0, 1, -1, 63, -64, 64, -65, 8191, 8192, -8193, 2**31 - 1, -(2**31)]
LONG_EDGES = [*INT_EDGES, 2**31, -(2**31) - 1, 2**53, 2**62, 2**63 - 1, -(2**63), T0, -T0]
DOUBLE_EDGES = [0.0, -0.0, 1.0, -1.5, math.inf, -math.inf, 1e308, -1e-308, 5e-324, 0.000021, 1 / 3]
TEXT_ALPHABET = 'abcXYZ09 -_:./{}"\\\n\té中😀\u0000\u07ff\uffff'


def fastavro_bytes(schema: Any, datum: Any, prefix: bytes = b"") -> bytes:
    buf = io.BytesIO()
    buf.write(prefix)
    schemaless_writer(buf, schema, datum)
    return buf.getvalue()


class Gen:
    """Random Avro datums for a parsed schema, exercising every branch a schema offers."""

    def __init__(self, schema: Any, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.named: dict[str, Any] = {}
        self._collect(schema)
        self.schema = schema

    def _collect(self, node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                self._collect(n)
        elif isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                self.named.setdefault(node["name"], node)
            for key in ("type", "items", "values"):
                if isinstance(node.get(key), dict | list):
                    self._collect(node[key])
            for f in node.get("fields", ()):
                self._collect(f["type"])

    def text(self) -> str:
        r = self.rnd.random()
        if r < 0.1:
            return ""
        if r < 0.5:
            return "".join(
                self.rnd.choices("abcdefghijklmnop-_:0123456789", k=self.rnd.randint(1, 30))
            )
        return "".join(self.rnd.choices(TEXT_ALPHABET, k=self.rnd.randint(1, 60)))

    def datum(self, s: Any, depth: int = 0) -> Any:
        rnd = self.rnd
        if isinstance(s, str) and s in self.named:
            s = self.named[s]
        if isinstance(s, list):
            return self.union(s, depth)
        t = s["type"] if isinstance(s, dict) else s
        if isinstance(t, dict | list):
            return self.datum(t, depth)
        if t == "null":
            return None
        if t == "boolean":
            return rnd.random() < 0.5
        if t == "int":
            return rnd.choice(INT_EDGES) if rnd.random() < 0.5 else rnd.randint(-(2**31), 2**31 - 1)
        if t == "long":
            if rnd.random() < 0.5:
                return rnd.choice(LONG_EDGES)
            return rnd.randint(-(2 ** rnd.randint(0, 63)), 2 ** rnd.randint(0, 63) - 1)
        if t in ("float", "double"):
            r = rnd.random()
            if r < 0.3:
                return rnd.choice(DOUBLE_EDGES) if t == "double" else rnd.choice([0.0, -0.0, 1.5])
            if r < 0.4:
                return rnd.randint(-1000, 1000)  # fastavro writes float(value)
            return rnd.uniform(-1e6, 1e6)
        if t == "bytes":
            return rnd.randbytes(rnd.randint(0, 40))
        if t == "string":
            return self.text()
        if t == "enum":
            return rnd.choice(s["symbols"])
        if t == "fixed":
            return rnd.randbytes(s["size"])
        if t == "array":
            n = 0 if depth > 3 or rnd.random() < 0.3 else rnd.randint(1, 5)
            return [self.datum(s["items"], depth + 1) for _ in range(n)]
        if t == "map":
            n = 0 if depth > 3 or rnd.random() < 0.3 else rnd.randint(1, 4)
            return {self.text(): self.datum(s["values"], depth + 1) for _ in range(n)}
        if t in ("record", "error"):
            out = {}
            for f in s["fields"]:
                if "default" in f and rnd.random() < 0.15:
                    continue  # missing: the writer uses the default
                out[f["name"]] = self.datum(f["type"], depth + 1)
            return out
        raise AssertionError(f"no generator for {s!r}")

    def union(self, branches: list[Any], depth: int) -> Any:
        i = self.rnd.randrange(len(branches))
        branch = branches[i]
        resolved = self.named.get(branch, branch) if isinstance(branch, str) else branch
        value = self.datum(branch, depth + 1)
        t = resolved["type"] if isinstance(resolved, dict) else resolved
        if t in ("record", "enum", "fixed"):
            return (resolved["name"], value)  # named branches: tuple notation, like shapes.py
        if self.rnd.random() < 0.15:
            return (t, value)  # tuple notation for any branch is fastavro's too
        return value


def gen_records(kind: str, count: int, seed: int) -> list[Any]:
    gen = Gen(SCHEMAS[kind].parsed, seed)
    return [gen.datum(SCHEMAS[kind].parsed) for _ in range(count)]


# --------------------------------------------------------------------------- byte equality


@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_every_schema_compiles(kind: str) -> None:
    enc = compile_encoder(SCHEMAS[kind].parsed)
    assert enc is not None
    assert enc.name == kind
    assert "def encode(" in enc.source and "def encode_large(" in enc.source
    assert AvroWriter(SCHEMAS[kind].parsed).compiled is not None


@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_generated_records_are_byte_identical(kind: str) -> None:
    schema = SCHEMAS[kind].parsed
    enc = compile_encoder(schema)
    assert enc is not None
    for i, datum in enumerate(gen_records(kind, 1500, seed=RECORD_KINDS.index(kind))):
        original = copy.deepcopy(datum)
        expected = fastavro_bytes(schema, datum)
        got = enc.encode(datum)  # the fast path itself: no fallback for these shapes
        assert got == expected, f"record {i}: {datum!r}"
        assert enc.encode_large(datum) == expected
        assert enc.encode(datum, b"\x00\x00\x00\x00\x07") == b"\x00\x00\x00\x00\x07" + expected
        assert datum == original, "encode must not mutate its input"


def _expected_read(datum: Any, schema: Any, named: dict[str, Any]) -> Any:
    """What fastavro's reader returns for ``datum``: tuples unwrapped, defaults filled in."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        if isinstance(datum, tuple):
            name, inner = datum
            for b in schema:
                rb = named.get(b, b) if isinstance(b, str) else b
                bname = rb.get("name", rb.get("type")) if isinstance(rb, dict) else rb
                if bname == name:
                    return _expected_read(inner, rb, named)
        want = "null" if datum is None else "string" if isinstance(datum, str) else None
        for b in schema:  # the branch the writer picks for a plain value (our schemas)
            rb = named.get(b, b) if isinstance(b, str) else b
            t = rb["type"] if isinstance(rb, dict) else rb
            if t == want or (want is None and t != "null"):
                return _expected_read(datum, rb, named)
        raise AssertionError("unreachable")
    t = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(t, dict | list):
        return _expected_read(datum, t, named)
    if t in ("float", "double"):
        return float(datum)
    if t == "array":
        return [_expected_read(x, schema["items"], named) for x in datum]
    if t == "map":
        return {k: _expected_read(x, schema["values"], named) for k, x in datum.items()}
    if t == "record":
        return {
            f["name"]: _expected_read(datum.get(f["name"], f.get("default")), f["type"], named)
            for f in schema["fields"]
        }
    return datum


@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_generated_records_round_trip_through_fastavro(kind: str) -> None:
    schema = SCHEMAS[kind].parsed
    gen = Gen(schema, seed=7)
    enc = compile_encoder(schema)
    assert enc is not None
    for _ in range(300):
        datum = gen.datum(schema)
        data = enc.encode(datum)
        bio = io.BytesIO(data)
        back = schemaless_reader(bio, schema, None)
        assert bio.tell() == len(data)
        assert back == _expected_read(datum, schema, gen.named)


def test_every_signal_attributes_branch_and_json_shape() -> None:
    """JSON-shape records through OutputEncoder: every attributes branch, same bytes as fastavro."""
    enc = OutputEncoder("Signal")
    dec = InputDecoder("Signal")
    gen = Gen(SCHEMAS["Signal"].parsed, seed=3)
    attrs_union = next(f for f in SCHEMAS["Signal"].parsed["fields"] if f["name"] == "attributes")
    records = {b["name"].rsplit(".", 1)[-1]: b for b in attrs_union["type"] if isinstance(b, dict)}
    types = [*SIGNAL_ATTRIBUTE_RECORDS, "token-claims-change"]
    seen = set()
    for i in range(600):
        signal_type = types[i % len(types)]
        record_name = SIGNAL_ATTRIBUTE_RECORDS.get(signal_type)
        if record_name is None:
            attributes: Any = {"claims": {"role": gen.text()}, "n": i}
        else:
            attributes = {k: v for k, v in gen.datum(records[record_name]).items() if v is not None}
            if i % 7 == 0:
                attributes["vendor_extra"] = 1  # does not fit: the JSON-text branch
        rec = {
            "event_id": f"e-{i}",
            "type": signal_type,
            "subject": {"type": "user", "id": gen.text()},
            "source": "mdm",
            "event_time": T0 + i,
            "attributes": attributes if i % 11 else None,
        }
        datum = TO_AVRO["Signal"](rec)
        seen.add(type(datum["attributes"]).__name__)
        data = enc.encode(rec)
        assert data == fastavro_bytes(SCHEMAS["Signal"].parsed, datum)
        out = dec.decode(data)
        if rec["attributes"] is None:
            assert out["attributes"] == {}
        elif type(datum["attributes"]) is tuple:
            assert out["attributes"] == rec["attributes"]
        else:
            assert out["attributes"] == orjson.loads(orjson.dumps(rec["attributes"]))
    assert seen == {"tuple", "str", "NoneType"}


@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_fixture_records_encode_like_fastavro(
    kind: str, records: dict[str, dict[str, Any]]
) -> None:
    datum = TO_AVRO[kind](records[kind])
    writer = AvroWriter(SCHEMAS[kind].parsed, kind)
    assert writer.compiled is not None
    assert writer.compiled.encode(datum) == writer.write_fastavro(datum) == writer.write(datum)


def test_large_strings_and_arrays_use_the_range_checked_variant() -> None:
    schema = SCHEMAS["Decision"].parsed
    datum = gen_records("Decision", 1, seed=11)[0]
    datum["request"] = "x" * 70_000  # 3-byte length
    datum["errors"] = [str(i) for i in range(9000)]  # 2-byte count beyond the table
    enc = compile_encoder(schema)
    assert enc is not None
    with pytest.raises(IndexError):
        enc.encode(datum)
    expected = fastavro_bytes(schema, datum)
    assert enc.encode_large(datum) == expected
    assert AvroWriter(schema).write(datum) == expected


# --------------------------------------------------------------------------- fastavro decides


class Level(enum.StrEnum):
    HIGH = "HIGH"


class Count(enum.IntEnum):
    ONE = 1


def _decision() -> dict[str, Any]:
    return TO_AVRO["Decision"](
        {
            "decision_id": "d-1",
            "grant_id": "g-1",
            "subject": "user:alice",
            "cause": {"kind": "signal", "event_id": "e-1"},
            "effect": "EFFECT_DENY",
            "actions": [
                {
                    "action": "read",
                    "effect": "EFFECT_DENY",
                    "policy": "p",
                    "rule": None,
                    "scope": "",
                },
                {
                    "action": "write",
                    "effect": "EFFECT_ALLOW",
                    "policy": "p",
                    "rule": "r",
                    "scope": "",
                },
            ],
            "request": {"principal": {"id": "alice"}},
            "policy_digest": "sha256:00",
            "evaluated_at": T0,
            "cause_event_time": T0,
            "eval_duration_seconds": 0.5,
            "errors": [],
        }
    )


def _signal(attributes: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "risk-level-change",
        "subject": {"type": "user", "id": "alice"},
        "source": "ueba",
        "event_time": T0,
        "attributes": attributes,
    }


ODD_DECISIONS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("bool for a long", lambda d: d.update(evaluated_at=True)),
    ("bool for a nullable long", lambda d: d.update(cause_event_time=False)),
    ("int for a double", lambda d: d.update(eval_duration_seconds=3)),
    ("numeric text for a double", lambda d: d.update(eval_duration_seconds="0.25")),
    ("float for a long", lambda d: d.update(evaluated_at=1.5)),
    ("IntEnum for a long", lambda d: d.update(evaluated_at=Count.ONE)),
    ("StrEnum for a string", lambda d: d.update(effect=Level.HIGH)),
    ("StrEnum in a nullable string", lambda d: d.update(grant_id=Level.HIGH)),
    ("tuple for an array", lambda d: d.update(errors=("a", "b"))),
    ("tuple notation for a string branch", lambda d: d.update(grant_id=("string", "g"))),
    ("tuple notation for null with a value", lambda d: d.update(grant_id=("null", "g"))),
    ("unknown tuple branch", lambda d: d.update(grant_id=("dev.vigil.Nope", "g"))),
    ("three-tuple", lambda d: d.update(grant_id=("string", "g", 1))),
    ("bytes for a string", lambda d: d.update(subject=b"user:alice")),
    ("None for a string", lambda d: d.update(subject=None)),
    ("lone surrogate", lambda d: d.update(subject="\ud800")),
    ("missing required field", lambda d: d.pop("decision_id")),
    ("missing defaulted field", lambda d: d.pop("errors")),
    ("explicit None for a defaulted array", lambda d: d.update(errors=None)),
    ("long out of range", lambda d: d.update(evaluated_at=2**63)),
    ("long below range", lambda d: d.update(cause_event_time=-(2**63) - 1)),
    ("huge int for a double", lambda d: d.update(eval_duration_seconds=10**400)),
    ("list for a record", lambda d: d.update(cause=["signal", None])),
    ("non-dict array item", lambda d: d["actions"].append("read")),
    ("extra keys are ignored", lambda d: d.update(extra="x")),
    ("nested wrong type", lambda d: d["actions"][1].update(effect=5)),
]


@pytest.mark.parametrize(("case", "mutate"), ODD_DECISIONS, ids=[c for c, _ in ODD_DECISIONS])
def test_odd_values_behave_exactly_like_fastavro(
    case: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    """Same bytes as fastavro, or EncodeError exactly when fastavro raises."""
    _assert_like_fastavro("Decision", _decision(), mutate)


ODD_SIGNALS: list[tuple[str, Any]] = [
    ("plain dict picks the record by most fields", {"current_level": "HIGH", "score": 0.5}),
    ("dict with -type", {"-type": "dev.vigil.RiskLevelChange", "current_level": "HIGH"}),
    ("short record name in tuple", ("RiskLevelChange", {"current_level": "HIGH"})),
    (
        "int score in the typed record",
        ("dev.vigil.RiskLevelChange", {"current_level": "H", "score": 2}),
    ),
    ("bool score", ("dev.vigil.RiskLevelChange", {"current_level": "H", "score": True})),
    ("str score", ("dev.vigil.RiskLevelChange", {"current_level": "H", "score": "2"})),
    ("tuple notation for the text branch", ("string", '{"a":1}')),
    ("list for the union", ["a"]),
    ("number for the union", 5),
    ("anomalies tuple", ("dev.vigil.NetworkContext", {"anomalies": ("a",)})),
    ("anomalies non-str item", ("dev.vigil.NetworkContext", {"anomalies": ["a", 1]})),
    ("anomalies StrEnum item", ("dev.vigil.NetworkContext", {"anomalies": [Level.HIGH]})),
    ("asn bool", ("dev.vigil.NetworkContext", {"asn": True})),
    ("asn huge", ("dev.vigil.NetworkContext", {"asn": 2**64})),
    ("missing required in typed record", ("dev.vigil.SessionRevoked", {})),
]


@pytest.mark.parametrize(("case", "attributes"), ODD_SIGNALS, ids=[c for c, _ in ODD_SIGNALS])
def test_odd_union_values_behave_exactly_like_fastavro(case: str, attributes: Any) -> None:
    _assert_like_fastavro("Signal", _signal(attributes), lambda d: None)


def _assert_like_fastavro(kind: str, datum: dict[str, Any], mutate: Callable[[Any], None]) -> None:
    mutate(datum)
    schema = SCHEMAS[kind].parsed
    try:
        expected: bytes | None = fastavro_bytes(schema, copy.deepcopy(datum))
    except Exception:
        expected = None
    writer = AvroWriter(schema, kind)
    if expected is None:
        with pytest.raises(EncodeError, match=f"^cannot encode {kind}: "):
            writer.write(datum)
    else:
        assert writer.write(datum) == expected
        assert writer.write(datum, b"\x00\x00\x00\x00\x01") == b"\x00\x00\x00\x00\x01" + expected


def test_str_subclasses_stay_on_the_fast_path() -> None:
    enc = compile_encoder(SCHEMAS["Decision"].parsed)
    assert enc is not None
    datum = _decision()
    datum["effect"] = Level.HIGH
    datum["grant_id"] = Level.HIGH
    assert enc.encode(datum) == fastavro_bytes(SCHEMAS["Decision"].parsed, datum)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d.pop("decision_id"),
            "cannot encode Decision: decision_id: missing required field",
        ),
        (
            lambda d: d.update(subject=5),
            "cannot encode Decision: subject: expected a string, got int",
        ),
        (
            lambda d: d["actions"][1].update(effect=None),
            "cannot encode Decision: actions[1].effect: expected a string, got null",
        ),
        (
            lambda d: d["cause"].pop("kind"),
            "cannot encode Decision: cause.kind: missing required field",
        ),
        (
            lambda d: d.update(evaluated_at=2**64),
            "cannot encode Decision: evaluated_at: 18446744073709551616 is out of range for an Avro long",
        ),
        (
            lambda d: d.update(cause_event_time="now"),
            "cannot encode Decision: cause_event_time: a str value matches none of the union branches",
        ),
        (
            lambda d: d.update(errors=[1]),
            "cannot encode Decision: errors[0]: expected a string, got int",
        ),
        (
            lambda d: d.update(actions=5),
            "cannot encode Decision: actions: expected an array (list), got int",
        ),
        (
            lambda d: d.update(subject="\udcff"),
            "cannot encode Decision: subject: string is not encodable",
        ),
    ],
)
def test_errors_name_the_field_path(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    datum = _decision()
    mutate(datum)
    with pytest.raises(EncodeError) as info:
        AvroWriter(SCHEMAS["Decision"].parsed, "Decision").write(datum)
    assert str(info.value).startswith(message), str(info.value)
    assert "(" in str(info.value)  # fastavro's own message follows in parentheses


def test_union_branch_errors_name_the_field() -> None:
    writer = AvroWriter(SCHEMAS["Signal"].parsed, "Signal")
    with pytest.raises(
        EncodeError, match=r"^cannot encode Signal: attributes: union branch 'dev.vigil.Nope'"
    ):
        writer.write(_signal(("dev.vigil.Nope", {})))
    with pytest.raises(EncodeError, match=r"^cannot encode Signal: attributes.session_id: missing"):
        writer.write(_signal(("dev.vigil.SessionRevoked", {})))


def test_output_encoder_errors_keep_their_form(revocation: dict[str, Any]) -> None:
    with pytest.raises(
        EncodeError, match=r"^cannot encode Revocation: denied_actions: expected an array"
    ):
        OutputEncoder("Revocation").encode({**revocation, "denied_actions": 5})
    with pytest.raises(EncodeError, match="missing required field 'revoked_at'"):
        OutputEncoder("Revocation").encode(
            {k: v for k, v in revocation.items() if k != "revoked_at"}
        )


def test_locate_error_never_raises() -> None:
    assert locate_error(object(), SCHEMAS["Decision"].parsed) is not None
    assert locate_error({"x": 1}, {"type": "weird"}) is None
    assert locate_error(_decision(), SCHEMAS["Decision"].parsed) is None


# --------------------------------------------------------------------------- other schemas

SYNTHETIC = {
    "type": "record",
    "name": "Everything",
    "namespace": "test",
    "fields": [
        {"name": "n", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "raw", "type": "bytes"},
        {"name": "s", "type": "string"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 4}},
        {"name": "tags", "type": {"type": "map", "values": "long"}},
        {"name": "nested", "type": {"type": "array", "items": {"type": "map", "values": "string"}}},
        {"name": "again", "type": ["null", "Color", "Id"], "default": None},
        {"name": "num", "type": ["null", "int", "long", "float", "double"]},
        {"name": "text", "type": ["Color", "string", "bytes"]},
        {"name": "fl", "type": ["null", "float"], "default": None},
        {
            "name": "m",
            "type": ["null", {"type": "map", "values": ["null", "double"]}],
            "default": None,
        },
        {"name": "b", "type": ["null", "boolean"], "default": None},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}], "default": None},
        {
            "name": "sub",
            "type": {"type": "record", "name": "Sub", "fields": [{"name": "c", "type": "Color"}]},
        },
        {"name": "subs", "type": {"type": "array", "items": "Sub"}, "default": []},
    ],
}


def test_synthetic_schema_with_every_type() -> None:
    schema = fastavro.parse_schema(SYNTHETIC)
    enc = compile_encoder(schema)
    assert enc is not None
    writer = AvroWriter(schema)
    gen = Gen(schema, seed=5)
    fast = 0
    for i in range(2000):
        datum = gen.datum(schema)
        expected = fastavro_bytes(schema, datum)
        assert writer.write(datum) == expected, f"record {i}: {datum!r}"
        try:  # tuple notation inside a validated map/array branch is left to fastavro
            got = enc.encode(datum)
        except Exception:
            continue
        assert got == expected, f"record {i}: {datum!r}"
        fast += 1
    assert fast > 1000
    # plain (non-tuple) values in unions: fastavro's first-match rules
    base = gen.datum(schema)
    for num in (None, 0, 2**31, 2**63, -(2**63) - 1, 1.5, True):
        for text in ("RED", "BLUE", Level.HIGH, b"\x00"):
            for again in (None, "GREEN", b"abcd", b"abc"):
                datum = {**base, "num": num, "text": text, "again": again, "m": {"x": 1, "y": None}}
                _same_as_fastavro(writer, schema, datum)


def _same_as_fastavro(writer: AvroWriter, schema: Any, datum: Any) -> None:
    try:
        expected: bytes | None = fastavro_bytes(schema, datum)
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(EncodeError):
            writer.write(datum)
    else:
        assert writer.write(datum) == expected, datum


def test_float_overflow_falls_back_to_fastavro() -> None:
    schema = fastavro.parse_schema(SYNTHETIC)
    datum = Gen(schema, seed=1).datum(schema)
    datum["f"] = 1e300  # fastavro writes inf; struct.pack refuses: fastavro decides
    enc = compile_encoder(schema)
    assert enc is not None
    with pytest.raises(OverflowError):
        enc.encode(datum)
    expected = fastavro_bytes(schema, datum)
    assert struct.pack("<f", math.inf) in expected
    assert AvroWriter(schema).write(datum) == expected


def test_logical_types_kept_in_the_schema() -> None:
    """Schemas parsed with their logicalType (registry writers): ints as today, datetimes too."""
    for kind in ("Decision", "Signal", "Revocation", "DeadLetter"):
        schema = fastavro.parse_schema(json.loads(SCHEMAS[kind].text))
        assert compile_encoder(schema) is not None
        writer = AvroWriter(schema)
        for datum in gen_records(kind, 200, seed=9):
            assert writer.write(datum) == fastavro_bytes(schema, datum)
    schema = fastavro.parse_schema(json.loads(SCHEMAS["Revocation"].text))
    datum = gen_records("Revocation", 1, seed=2)[0]
    datum["revoked_at"] = datetime(2026, 11, 29, 10, tzinfo=UTC)  # fastavro converts it
    assert AvroWriter(schema).write(datum) == fastavro_bytes(schema, datum)


def test_unsupported_schemas_use_fastavro() -> None:
    recursive = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "next", "type": ["null", "Node"], "default": None}],
        }
    )
    decimal = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Money",
            "fields": [
                {
                    "name": "amount",
                    "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
                }
            ],
        }
    )
    for schema, datum in (
        (recursive, {"next": ("Node", {"next": None})}),
        (decimal, {"amount": b"\x01"}),
    ):
        assert compile_encoder(schema) is None
        writer = AvroWriter(schema)
        assert writer.compiled is None
        assert writer.write(datum) == fastavro_bytes(schema, datum)


def test_evolution_schemas_compile(tmp_path: Path) -> None:
    data = Path(__file__).parent / "data"
    for path in sorted(data.glob("*.avsc")):
        schema = fastavro.parse_schema(json.loads(path.read_text()))
        enc = compile_encoder(schema)
        assert enc is not None, path.name
        for datum in [Gen(schema, seed=s).datum(schema) for s in range(200)]:
            assert enc.encode_large(datum) == fastavro_bytes(schema, datum)


def test_source_is_kept_for_debugging() -> None:
    enc = compile_encoder(SCHEMAS["Decision"].parsed)
    assert enc is not None
    code = enc.encode.__code__
    assert linecache.getline(code.co_filename, code.co_firstlineno).startswith("def encode(")
    assert "'decision_id'" in enc.source


def test_writer_without_compiled_encoder(decision: dict[str, Any]) -> None:
    datum = TO_AVRO["Decision"](decision)
    fast = AvroWriter(SCHEMAS["Decision"].parsed)
    slow = AvroWriter(SCHEMAS["Decision"].parsed, compiled=False)
    assert slow.compiled is None
    assert fast.write(datum) == slow.write(datum)
