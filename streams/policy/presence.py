"""Give `has(x.f)` cel-go's answer when `x` is not a map: false, where cel-cpp fails.

cel-go (so Cerbos) answers a presence test on a number, string, bool or null with `false`;
cel-cpp with an error ("Applying SELECT to non-message type"), and under `none.of` an error
counts as false, which flips a decision. So the compiler rewrites every `has(x.f)` into
`(type(x) in [map, list] ? has(x.f) : false)` before compiling it: on a list both fail, and an
error in `x` itself (a missing key) is still an error, as in cel-go. Operands that are always maps in Vigil
(`R.attr`, `P`, `request.resource`, ...) are left alone. `has(V.x)`, inlined as
`has(dyn(<expression>))`, tests the expression (a field selection) as before the `dyn()`.

The principal and the resource are protobuf messages in Cerbos, so `has()` on their fields is
proto3 presence: false for an empty string, list or map (`has(P.scope)` without a scope,
`has(R.attr)` with no attributes). Vigil's request maps hold every field, so these become
`P.scope != ""` and `size(R.attr) > 0` (`PROTO_FIELDS`); `runtime` is not a message in Cerbos
(`has(runtime.effectiveDerivedRoles)` is true with no derived roles) and stays as it is.
"""

from __future__ import annotations

from .celtokens import SPACE, TRIVIA, Token, scan

#: `has()` operands that are always maps (the request as Vigil builds it): no guard needed.
ALWAYS_MAPS = frozenset(
    {
        "R",
        "P",
        "R.attr",
        "P.attr",
        "request",
        "request.resource",
        "request.principal",
        "request.resource.attr",
        "request.principal.attr",
        "runtime",
        "G",
        "globals",
    }
)

_OPEN = {"(": ")", "[": "]", "{": "}"}

_PRINCIPAL_FIELDS = {"id": "", "roles": "[]", "attr": "{}", "scope": "", "policyVersion": ""}
_RESOURCE_FIELDS = {"kind": "", "id": "", "attr": "{}", "scope": "", "policyVersion": ""}
#: Fields of Cerbos' request messages, by operand: "" for a string, else a list or map.
PROTO_FIELDS = {
    "P": _PRINCIPAL_FIELDS,
    "request.principal": _PRINCIPAL_FIELDS,
    "R": _RESOURCE_FIELDS,
    "request.resource": _RESOURCE_FIELDS,
}


def guard_has(src: str) -> str:
    """`src` with each `has(x.f)` whose `x` may be a non-map guarded (see the module doc);
    text that does not have that shape (a parse error to come) is left as it is."""
    toks = scan(src)
    if not any(t == ("id", "has") for t in toks):
        return src
    return _guard(toks)


def _significant(toks: list[Token], i: int, step: int) -> int:
    while 0 <= i < len(toks) and toks[i][0] in TRIVIA:
        i += step
    return i


def _closing(toks: list[Token], i: int) -> int | None:
    """Index of the `)` matching the `(` at `i`, or None."""
    stack: list[str] = []
    for j in range(i, len(toks)):
        kind, text = toks[j]
        if kind != "op":
            continue
        if text in _OPEN:
            stack.append(_OPEN[text])
        elif text in (")", "]", "}"):
            if not stack or stack.pop() != text:
                return None
            if not stack:
                return j
    return None


def _guard(toks: list[Token]) -> str:
    out: list[str] = []
    last = ""
    i, n = 0, len(toks)
    while i < n:
        kind, text = toks[i]
        if kind == "id" and text == "has" and last != ".":
            rep = _guard_call(toks, i)
            if rep is not None:
                out.append(rep[0])
                last = ")"
                i = rep[1]
                continue
        out.append(text)
        if kind != SPACE and kind != "comment":
            last = text
        i += 1
    return "".join(out)


def _dyn_argument(toks: list[Token], p: int, close: int) -> str | None:
    """The text inside `dyn(...)` when that is the whole argument of the `has(` whose `(` is at
    `p`: an inlined variable (`has(V.x)`, see substitute.py), tested as the expression itself."""
    d = _significant(toks, p + 1, 1)
    o = _significant(toks, d + 1, 1)
    if d >= close or toks[d] != ("id", "dyn") or o >= close or toks[o] != ("op", "("):
        return None
    end = _closing(toks, o)
    if end is None or _significant(toks, end + 1, 1) != close:
        return None
    return "".join(t for _, t in toks[o + 1 : end]).strip()


def _guard_call(toks: list[Token], i: int) -> tuple[str, int] | None:
    """(replacement, index after the call) for the `has(` at `i`, or None."""
    p = _significant(toks, i + 1, 1)
    if p >= len(toks) or toks[p] != ("op", "("):
        return None
    close = _closing(toks, p)
    if close is None:
        return None
    inner = _dyn_argument(toks, p, close)
    if inner is not None:
        return guard_has(f"has({inner})"), close + 1
    field = _significant(toks, close - 1, -1)
    dot = _significant(toks, field - 1, -1)
    if field <= p or toks[field][0] not in ("id", "bq") or dot <= p or toks[dot] != ("op", "."):
        return None
    operand = "".join(t for _, t in toks[p + 1 : dot]).strip()
    if not operand:
        return None
    operand = guard_has(operand)
    name = toks[field][1]
    empty = PROTO_FIELDS.get(operand, {}).get(name)
    if empty == "":
        return f'({operand}.{name} != "")', close + 1
    if empty is not None:
        return f"(size({operand}.{name}) > 0)", close + 1
    if operand in ALWAYS_MAPS:
        return f"has({operand}.{name})", close + 1
    return f"(type({operand}) in [map, list] ? has({operand}.{name}) : false)", close + 1
