"""CEL evaluation errors in the words of cel-go, as the stock Cerbos PDP reports them.

Cerbos 0.55 puts the message of a failing rule output in `outputs[].error` (and no `val`).
Vigil evaluates with cel-cpp (`cel-expr-python`), whose messages differ; this module rewrites
the ones whose cel-go text is known (checked against the stock PDP by the generated
differential suite, tests/policy/gen/), and otherwise keeps cel-cpp's message without its
status prefix.
"""

from __future__ import annotations

import re

_STATUS = re.compile(r"^[A-Z_]+: ")
_NO_KEY = re.compile(r'^Key not found in map : "(.*)"$', re.S)
_OVERLOAD = re.compile(r"^No matching overloads found : (?:\((\w+)\)\.)?(\w+)\((.*)\)$", re.S)
_ANY_OVERLOAD = "No matching overloads found : "
_INDEX_TYPE = re.compile(r"^Index error: expected integer type, got (\w+)$")
_INDEX = re.compile(r"^Index error: index=(-?\d+) size=\d+$")
_CONVERT = re.compile(r"^cannot convert (\w+) to (\w+)$")

#: cel-cpp type names that cel-go spells differently.
_TYPE_NAMES = {"int64": "int", "uint64": "uint"}
#: Functions cel-go reports with their argument types (`no such overload: string(map)`): the
#: unary ones it dispatches by the argument's type, and the Cerbos list functions.
_TYPED_OVERLOADS = frozenset(
    {
        "string",
        "int",
        "uint",
        "double",
        "bool",
        "bytes",
        "timestamp",
        "duration",
        "lowerAscii",
        "upperAscii",
        "hasIntersection",
        "intersect",
        "except",
        "isSubset",
    }
)


def cerbos_error_text(message: str) -> str:
    """cel-go's message for a cel-cpp evaluation error message."""
    text = _STATUS.sub("", message, count=1)
    m = _NO_KEY.match(text)
    if m:
        return f"no such key: {m.group(1)}"
    m = _OVERLOAD.match(text)
    if m:
        receiver, name, args = m.groups()
        if name == "size":
            return "no such overload: size"
        if name in _TYPED_OVERLOADS:
            types = [receiver] if receiver else []
            types += [a.strip() for a in args.split(",") if a.strip()]
            return f"no such overload: {name}({', '.join(_TYPE_NAMES.get(t, t) for t in types)})"
        return "no such overload"
    if text.startswith(_ANY_OVERLOAD):  # operators: `_+_(double, string)`, `@in`, `!_`
        return "no such overload"
    if text == "divide by zero":
        return "division by zero"
    m = _INDEX_TYPE.match(text)
    if m:
        return f"unsupported index type '{_TYPE_NAMES.get(m.group(1), m.group(1))}' in list"
    m = _INDEX.match(text)
    if m:
        return f"index out of bounds: {m.group(1)}"
    if text == "double out of int64 range":
        return "integer overflow"
    if text == "double out of uint64 range":
        return "unsigned integer overflow"
    m = _CONVERT.match(text)
    if m:
        src, dst = (_TYPE_NAMES.get(t, t) for t in m.groups())
        return f"type conversion error from '{src}' to '{dst}'"
    return text


__all__ = ["cerbos_error_text"]
