"""JSON via orjson: the format any producer can start with, and what ``vigil tail`` prints."""

from __future__ import annotations

from typing import Any, Final

import orjson

from .errors import DecodeError, EncodeError

_DUMP_OPTS: Final = orjson.OPT_NON_STR_KEYS


def loads_object(value: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse a JSON object without further validation (pydantic models validate later)."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def loads_any(text: str | bytes) -> Any:
    """Parse JSON text embedded in an Avro string field (``attr``, ``request``, attributes)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON text inside Avro field: {exc}") from None


def dumps(obj: Any) -> bytes:
    """Serialize to compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(obj, option=_DUMP_OPTS)
    except TypeError as exc:
        raise EncodeError(f"cannot encode as JSON: {exc}") from None


def dumps_text(obj: Any) -> str:
    """JSON text for an Avro ``string`` field holding a free-form JSON object."""
    return dumps(obj).decode()
