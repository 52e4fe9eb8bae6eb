"""decode_any (for `vigil tail`): header, JSON, then every schema with a sanity check."""

from __future__ import annotations

from typing import Any

import pytest

from streams.codecs import RECORD_KINDS, DecodeError, OutputEncoder, RecordKind, decode_any


@pytest.mark.parametrize("kind", RECORD_KINDS)
@pytest.mark.parametrize("with_headers", [True, False])
@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_decode_any_every_kind(
    kind: RecordKind, with_headers: bool, fmt: str, records: dict[str, dict[str, Any]]
) -> None:
    enc = OutputEncoder(kind, fmt=fmt)  # type: ignore[arg-type]
    data = enc.encode(records[kind])
    got_kind, rec = decode_any(data, enc.headers if with_headers else None)
    assert got_kind == kind
    assert rec == records[kind]


def test_decode_any_unknown_json_object() -> None:
    assert decode_any(b'{"hello": "world"}') == (None, {"hello": "world"})


def test_decode_any_garbage() -> None:
    with pytest.raises(DecodeError, match="neither JSON nor a Vigil Avro record"):
        decode_any(b"\x01\x02\x03 not avro at all")
    with pytest.raises(DecodeError, match="invalid JSON"):
        decode_any(b"{oops")
