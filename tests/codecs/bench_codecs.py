"""Quick micro-benchmark (not a test): µs per decode/encode of typical records.

The last table compares Avro encoding before/after the compiled encoders
(streams/codecs/compiled.py): "fastavro" is ``AvroWriter(..., compiled=False)``, i.e.
``fastavro.schemaless_writer``; "compiled" is the default. "write" is the writer alone (Avro-shaped
datum in), "encode" the whole ``OutputEncoder.encode`` (JSON shape in, incl. the shape conversion).

Run: .venv/bin/python tests/codecs/bench_codecs.py
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.codecs import SCHEMAS, InputDecoder, OutputEncoder  # noqa: E402
from streams.codecs.avro import AvroWriter, registry_client  # noqa: E402
from streams.codecs.schemas import runtime_schema  # noqa: E402
from streams.codecs.shapes import TO_AVRO  # noqa: E402

T0 = 1795946400000
SIGNAL: dict[str, Any] = {
    "event_id": "e-7f3a9c",
    "type": "device-compliance-change",
    "subject": {"type": "user", "id": "alice"},
    "source": "mdm",
    "event_time": T0,
    "attributes": {
        "device_id": "D1",
        "previous_status": "compliant",
        "current_status": "not-compliant",
    },
}
DECISION: dict[str, Any] = {
    "decision_id": "d-9c1e0b7a55d2",
    "grant_id": "g-1",
    "subject": "user:alice",
    "cause": {"kind": "signal", "event_id": "e-7f3a9c"},
    "effect": "EFFECT_DENY",
    "actions": [
        {
            "action": a,
            "effect": "EFFECT_DENY",
            "policy": "resource.document.vdefault",
            "rule": "read-needs-compliant-device",
            "scope": "",
        }
        for a in ("read", "write")
    ],
    "request": {
        "principal": {
            "id": "alice",
            "roles": ["employee"],
            "attr": {
                "department": "finance",
                "signals": {
                    "device": {"compliant": False, "event_time": T0},
                    "risk": {"level": "LOW"},
                    "network": {"zone": "corp", "country": "NL"},
                },
                "grant": {"id": "g-1", "session_id": "s-1", "device_id": "D1"},
            },
        },
        "resource": {"kind": "document", "id": "doc-1", "attr": {"owner": "bob"}},
        "actions": ["read", "write"],
    },
    "policy_digest": "sha256:" + "ab" * 32,
    "evaluated_at": T0 + 123,
    "cause_event_time": T0,
    "eval_duration_seconds": 0.000021,
    "errors": [],
}

REVOCATION: dict[str, Any] = {
    "revocation_id": "r-672d31",
    "grant_id": "g-1",
    "subject": "user:alice",
    "session_id": "s-1",
    "device_id": "D1",
    "decision_id": "d-9c1e0b7a55d2",
    "cause": {"kind": "signal", "event_id": "e-7f3a9c"},
    "denied_actions": ["read", "write"],
    "policy": "resource.document.vdefault",
    "rule": "read-needs-compliant-device",
    "policy_digest": "sha256:" + "ab" * 32,
    "revoked_at": T0 + 123,
    "cause_event_time": T0,
}
DEADLETTER: dict[str, Any] = {
    "reason": "invalid JSON: unexpected character: line 1 column 2 (char 1)",
    "error": "decode",
    "topic": "signals.device",
    "partition": 3,
    "offset": 1_234_567,
    "key": b"user:alice",
    "value": b'{"event_id": "e-1", "type": "device-compliance-change", ' + b"x" * 120,
    "received_at": T0 + 5,
}


def us(fn: Callable[[], object], n: int = 50_000) -> float:
    """Best-of-5 µs per call."""
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def main() -> None:
    # A fake registry URL whose caches are pre-filled: measures the framed path, not HTTP.
    url = "http://registry.invalid"
    client = registry_client(url)
    v1 = (Path(__file__).parent / "data" / "Signal.v1.avsc").read_text()
    client._by_id.update({1: SCHEMAS["Signal"].parsed, 2: SCHEMAS["Decision"].parsed})
    client._by_id[3] = runtime_schema(v1)
    client._ids[("signals.device-value", SCHEMAS["Signal"].text)] = 1
    client._ids[("authz.decisions-value", SCHEMAS["Decision"].text)] = 2

    for kind, rec, topic in (
        ("Signal", SIGNAL, "signals.device"),
        ("Decision", DECISION, "authz.decisions"),
    ):
        enc = OutputEncoder(kind, "avro")  # type: ignore[arg-type]
        enc_json = OutputEncoder(kind, "json")  # type: ignore[arg-type]
        enc_cf = OutputEncoder(kind, "avro", registry_url=url, topic=topic)  # type: ignore[arg-type]
        dec = InputDecoder(kind)  # type: ignore[arg-type]
        dec_cf = InputDecoder(kind, registry_url=url)  # type: ignore[arg-type]
        avro, js, cf = enc.encode(rec), enc_json.encode(rec), enc_cf.encode(rec)
        print(f"{kind}: avro {len(avro)} B, json {len(js)} B")
        print(f"  encode avro        {us(lambda e=enc, r=rec: e.encode(r)):6.2f} µs")
        print(f"  decode avro        {us(lambda d=dec, b=avro: d.decode(b)):6.2f} µs")
        print(f"  encode confluent   {us(lambda e=enc_cf, r=rec: e.encode(r)):6.2f} µs")
        print(f"  decode confluent   {us(lambda d=dec_cf, b=cf: d.decode(b)):6.2f} µs")
        print(f"  encode json        {us(lambda e=enc_json, r=rec: e.encode(r)):6.2f} µs")
        print(f"  decode json        {us(lambda d=dec, b=js: d.decode(b)):6.2f} µs")

    # Signal written by the v1 schema: decode goes through schema resolution
    import io

    from fastavro import schemaless_writer

    buf = io.BytesIO()
    old = {**SIGNAL, "attributes": ("dev.vigil.DeviceComplianceChange", SIGNAL["attributes"])}
    schemaless_writer(buf, client._by_id[3], old)
    framed_v1 = b"\x00\x00\x00\x00\x03" + buf.getvalue()
    dec_cf = InputDecoder("Signal", registry_url=url)
    print(
        f"Signal decode confluent, v1 writer (resolution) {us(lambda: dec_cf.decode(framed_v1)):6.2f} µs"
    )
    rfc = {**SIGNAL, "event_time": "2026-11-29T10:00:00.123+01:00"}
    enc = OutputEncoder("Signal")
    print(f"Signal encode avro, RFC3339 event_time         {us(lambda: enc.encode(rfc)):6.2f} µs")
    compare_writers()


def compare_writers() -> None:
    """µs per Avro encode, fastavro vs compiled encoder, for the records Vigil produces."""
    print()
    print("Avro encode, µs      write: fastavro  compiled   encode: fastavro  compiled")
    for kind, rec in (
        ("Signal", SIGNAL),
        ("Decision", DECISION),
        ("Revocation", REVOCATION),
        ("DeadLetter", DEADLETTER),
    ):
        parsed = SCHEMAS[kind].parsed
        datum = TO_AVRO[kind](rec)
        slow = AvroWriter(parsed, kind, compiled=False)
        fast = AvroWriter(parsed, kind)
        assert fast.compiled is not None
        assert fast.write(datum) == slow.write(datum)
        enc_fast = OutputEncoder(kind)  # type: ignore[arg-type]
        enc_slow = OutputEncoder(kind)  # type: ignore[arg-type]
        enc_slow._writer = slow  # the writer as it was before the compiled encoders
        assert enc_fast.encode(rec) == enc_slow.encode(rec)
        write_slow = us(partial(slow.write, datum))
        write_fast = us(partial(fast.write, datum))
        encode_slow = us(partial(enc_slow.encode, rec))
        encode_fast = us(partial(enc_fast.encode, rec))
        print(
            f"  {kind:<11} {len(fast.write(datum)):4d} B   {write_slow:8.2f}  {write_fast:8.2f}"
            f"   {encode_slow:15.2f}  {encode_fast:8.2f}"
        )


if __name__ == "__main__":
    main()
