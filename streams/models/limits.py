"""Every limit on input values, in one place (documented in docs/topics-and-schemas.md).

Invariant 10: no value that passes validation may stop a worker later (an integer that orjson or
Avro cannot write, a time ``datetime`` cannot hold, a megabyte of attributes copied into every
decision). So the edge refuses, with the field and the limit in the reason, anything beyond:

- times: strictly after 1970-01-01T00:00:00Z and strictly before 9999-12-31T00:00:00Z (fits
  ``datetime``, Avro ``long`` and RFC 3339 text);
- integers: signed 64 bits (Avro ``long``); floats: finite (no NaN, no infinity);
- text: ids and names at most ``MAX_ID_CHARS`` (subject ids ``MAX_SUBJECT_ID_CHARS``), lists of
  names at most ``MAX_LIST_ITEMS`` entries;
- free-form objects (signal attributes, ``principal.attr``, ``resource.attr``): nesting depth,
  number of entries and encoded size.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

# Times: epoch milliseconds, exclusive bounds.
EARLIEST_TIME_MS: Final = 0  # 1970-01-01T00:00:00Z
LATEST_TIME_MS: Final = 253_402_214_400_000  # 9999-12-31T00:00:00Z
TIME_RANGE_TEXT: Final = "after 1970-01-01T00:00:00Z and before 9999-12-31T00:00:00Z"

# Numbers.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

# Text and lists.
MAX_SUBJECT_TYPE_CHARS: Final = 64
MAX_SUBJECT_ID_CHARS: Final = 512  # subject id, principal id
MAX_ID_CHARS: Final = 256  # event_id, source, grant_id, session_id, device_id, names, levels
MAX_LIST_ITEMS: Final = 64  # roles, actions, on_behalf_of, anomalies

# Free-form objects.
MAX_DEPTH: Final = 8  # nesting levels of objects and arrays inside one free-form object
MAX_ENTRIES: Final = 1024  # keys plus array elements, counted over the whole tree
MAX_FREE_FORM_BYTES: Final = 64 * 1024  # encoded as JSON


def check_time_ms(ms: int, shown: object) -> int:
    """Return ``ms`` if it lies in the valid time range; raise ValueError naming the range."""
    if not EARLIEST_TIME_MS < ms < LATEST_TIME_MS:
        raise ValueError(f"{short(shown)} is outside the valid time range ({TIME_RANGE_TEXT})")
    return ms


def check_free_form(value: Any, field: str = "") -> None:
    """Refuse a free-form JSON value beyond the limits above; raise ValueError naming ``field``
    (pydantic validators pass none: pydantic puts the field's path in front).

    What passes here can be written by orjson and Avro. A value ``_plainly_within`` the limits
    passes at about a third of the cost of ``_walk`` (every grant event carries two such
    objects, every subscription state record one); anything else takes ``_walk``, which gives
    the reason.
    """
    if not _plainly_within(value):
        _walk(value, field)


def _walk(value: Any, field: str) -> None:
    """``check_free_form``'s rules, raising the first one broken: walks the tree once (no
    recursion, so depth cannot overflow the stack), then encodes it once to measure it."""
    at = f"{field}: " if field else ""
    stack: list[tuple[Any, int]] = [(value, 0)]
    entries = 0
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                raise ValueError(f"{at}nested deeper than {MAX_DEPTH} levels")
            entries += len(item)
            if entries > MAX_ENTRIES:
                raise ValueError(f"{at}more than {MAX_ENTRIES} entries")
            if kind is dict:
                for key, child in item.items():
                    if type(key) is not str:
                        raise ValueError(f"{at}object keys must be text")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif kind is int:
            if not INT_MIN <= item <= INT_MAX:
                raise ValueError(f"{at}integer {short(item)} does not fit in 64 bits")
        elif kind is float:
            if not math.isfinite(item):
                raise ValueError(f"{at}{item} is not a finite number")
        elif not (kind is str or kind is bool or item is None):
            raise ValueError(f"{at}unsupported value of type {kind.__name__}")
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:  # e.g. text with lone surrogates
        raise ValueError(f"{at}cannot be encoded as JSON ({exc})") from None
    if size > MAX_FREE_FORM_BYTES:
        raise ValueError(f"{at}{size} bytes encoded, more than {MAX_FREE_FORM_BYTES}")


def _plainly_within(value: Any) -> bool:
    """True only if ``check_free_form`` accepts ``value`` (an object or array); False when
    unsure. The same rules, checked by a recursive walk (its depth is bounded by
    ``MAX_DEPTH`` before it recurses) that stops at the first doubt."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return False
    entries = _entries_within(value, 0)
    if entries < 0 or entries > MAX_ENTRIES:
        return False
    try:
        return len(orjson.dumps(value)) <= MAX_FREE_FORM_BYTES
    except TypeError:
        return False


def _entries_within(item: dict[str, Any] | list[Any], depth: int) -> int:
    """Entries of ``item`` and everything inside it, or -1 at the first value that is not
    plainly within the limits."""
    if depth >= MAX_DEPTH:
        return -1
    entries = len(item)
    # keys: orjson.dumps (in ``_plainly_within``) refuses every key that is not exactly ``str``
    children: Any = item.values() if type(item) is dict else item
    for child in children:
        kind = type(child)
        if kind is str or kind is bool or child is None:
            continue
        if kind is int:
            if not INT_MIN <= child <= INT_MAX:
                return -1
        elif kind is float:
            if not math.isfinite(child):
                return -1
        elif kind is dict or kind is list:
            inner = _entries_within(child, depth + 1)
            if inner < 0:
                return -1
            entries += inner
            if entries > MAX_ENTRIES:
                return -1
        else:
            return -1
    return entries


def short(value: object, limit: int = 40) -> str:
    """``repr`` cut to ``limit`` characters: reasons quote input, never a megabyte of it."""
    text = repr(value) if not isinstance(value, int | float) else _number(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: int | float) -> str:
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)
