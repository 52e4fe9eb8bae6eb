"""JSON via orjson: the format any producer can start with, and what ``vigil tail`` prints."""

from __future__ import annotations

from typing import Any, Final

import orjson

from .errors import DecodeError, EncodeError

_DUMP_OPTS: Final = orjson.OPT_NON_STR_KEYS
_JSON_TYPE_NAMES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def json_type_name(obj: Any) -> str:
    """The JSON name of a parsed value's type (``array``, not Python's ``list``)."""
    return _JSON_TYPE_NAMES.get(type(obj), type(obj).__name__)


def not_an_object_reason(value: bytes | bytearray | memoryview) -> str | None:
    """ "expected a JSON object, got array" when ``value`` is valid JSON of another type, else None.

    Used after a binary (Avro) decode failed, so a producer that sends ``[...]``, ``null``, a
    number or a string learns what is wrong instead of reading "truncated Avro record".
    """
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict):
        return None
    return f"expected a JSON object, got {json_type_name(obj)}"


def loads_object(value: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse a JSON object without further validation (pydantic models validate later)."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {json_type_name(obj)}")
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
