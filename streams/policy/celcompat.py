"""Make cel-expr-python accept, and answer like cel-go, CEL that Cerbos accepts but cel-cpp's
checker or runtime (as cel-expr-python 0.1.3 builds them) does not. Two source rewrites, both
on the text the compiler is about to compile, using the one tokenizer (`celtokens.py`):

- **Cross-type numeric ordering.** cel-go declares `_<_`, `_<=_`, `_>_`, `_>=_` for every pair
  of `int`, `uint` and `double`; cel-expr-python's checker only for equal types (it cannot be
  given the others: "already registered"), although its runtime compares mixed numbers like
  cel-go (heterogeneous comparisons: `1.5 < 2`, `-1 < 1u`, `NaN` unordered). So where the
  checker reports `found no matching overload for '_<_' applied to '(double, int)'` (any two
  different numeric types), the left operand is wrapped in `dyn(...)`, which the checker
  accepts and which changes nothing at run time; then the expression is checked again, so any
  other error is still reported (`(1.5 < 2) + 1` is refused, as by Cerbos).
- **`transformMap` / `transformMapEntry`.** Both macros expand to `cel.@mapInsert`, whose runtime
  functions cel-expr-python does not register (and which cannot be supplied from Python:
  "overload signature collision"). They are rewritten into the two-variable `transformList`,
  which works, and a Vigil function that builds the map from its result:
  `m.transformMap(k, v, [f,] e)` → `m.transformList(k, v, [f,] [dyn(k), dyn(e)]).@pairs()`
  and `m.transformMapEntry(k, v, [f,] e)` → `m.transformList(k, v, [f,] e).@entries()`
  (the real names are `PAIRS_FN`/`ENTRIES_FN`, which no policy may use). A key produced twice
  by `transformMapEntry` is an error, as in cel-go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .celtokens import TRIVIA, Token, scan

#: Vigil's map-building functions; reserved (a policy naming them is refused).
PAIRS_FN = "vigil_internal_pairs_to_map"
ENTRIES_FN = "vigil_internal_entries_to_map"
RESERVED = (PAIRS_FN, ENTRIES_FN)

_MACROS = ("transformMap", "transformMapEntry")
_NUMERIC = "int|uint|double"
_MIXED_ORDER = re.compile(
    rf"<input>:(\d+):(\d+): found no matching overload for '_(?:<|<=|>|>=)_' applied to "
    rf"'\(({_NUMERIC}), ({_NUMERIC})\)'"
)
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}
#: One-character operators that end a relational operand (`==`, `!=`, `<`, `<=`, `>`, `>=`,
#: `&&`, `||`, `?:`, `,`); `!` only as part of `!=`.
_BOUNDARY = frozenset("=<>&|?:,")


def reserved_name(src: str) -> str | None:
    """The reserved Vigil function `src` names, if any (see the module doc)."""
    for kind, text in scan(src):
        if kind == "id" and text in RESERVED:
            return text
    return None


# -- cross-type numeric ordering -------------------------------------------------------------


def compile_source(env: Any, src: str, *, attempts: int = 16) -> tuple[Any, str]:
    """`env.compile(src)` after the rewrites of the module doc: (program, compiled source).
    Raises the checker's `RuntimeError` when the source is invalid for another reason, or
    names a reserved function (as cel-go would: it does not exist there)."""
    name = reserved_name(src)
    if name is not None:
        raise RuntimeError(f"ERROR: <input>: undeclared reference to '{name}'")
    src = rewrite_transform_map(src)
    for _ in range(attempts):
        try:
            return env.compile(src), src
        except RuntimeError as exc:
            fixed = order_mixed_numbers(src, str(exc))
            if fixed is None:
                raise
            src = fixed
    return env.compile(src), src


def order_mixed_numbers(src: str, error: str) -> str | None:
    """`src` with the left operand of each ordering the checker refused for mixed numeric
    types (per `error`) wrapped in `dyn(...)`; None when there is none or a position does not
    point at such an operator."""
    found = [
        (int(m.group(1)), int(m.group(2)))
        for m in _MIXED_ORDER.finditer(error)
        if m.group(3) != m.group(4)
    ]
    if not found:
        return None
    line_starts = [0]
    for i, c in enumerate(src):
        if c == "\n":
            line_starts.append(i + 1)
    toks = scan(src)
    offsets: list[int] = []
    pos = 0
    for _, text in toks:
        offsets.append(pos)
        pos += len(text)
    inserts: dict[int, list[str]] = {}
    for line, col in found:
        if line > len(line_starts):
            return None
        at = line_starts[line - 1] + col - 1
        if at not in offsets:
            return None
        op = offsets.index(at)
        if toks[op] not in (("op", "<"), ("op", ">")):
            return None
        start = _operand_start(toks, op)
        if start is None:
            return None
        end = op - 1
        while toks[end][0] in TRIVIA:
            end -= 1
        inserts.setdefault(offsets[start], []).append("dyn(")
        inserts.setdefault(offsets[end + 1], []).append(")")
    out: list[str] = []
    for i, (_, text) in enumerate(toks):
        out.extend(sorted(inserts.get(offsets[i], ()), key=lambda s: s != ")"))
        out.append(text)
    return "".join(out)


def _operand_start(toks: list[Token], op: int) -> int | None:
    """Index of the first token of the left operand of the relational operator at `op`: back
    to the previous operator of lower or equal precedence (or an opening bracket) at depth 0."""
    depth = 0
    i = op - 1
    first: int | None = None
    while i >= 0:
        kind, text = toks[i]
        if kind in TRIVIA:
            i -= 1
            continue
        if kind == "op":
            if text in _CLOSE:
                depth += 1
            elif text in _OPEN:
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and text in _BOUNDARY:
                break
        elif kind == "id" and text == "in" and depth == 0:
            break
        first = i
        i -= 1
    return first


# -- transformMap / transformMapEntry --------------------------------------------------------


def rewrite_transform_map(src: str) -> str:
    """`src` with every `.transformMap(...)`/`.transformMapEntry(...)` call rewritten (see the
    module doc); text that does not have that shape (a parse error to come) is left as is."""
    toks = scan(src)
    if not any(kind == "id" and text in _MACROS for kind, text in toks):
        return src
    return _rewrite(toks)


def _next(toks: list[Token], i: int) -> int:
    while i < len(toks) and toks[i][0] in TRIVIA:
        i += 1
    return i


def _call_arguments(toks: list[Token], p: int) -> tuple[list[str], int] | None:
    """Texts of the top-level arguments of the call whose `(` is at `p`, and the index of its
    `)`; None when the brackets do not match."""
    stack: list[str] = []
    args: list[str] = []
    cur: list[str] = []
    for j in range(p, len(toks)):
        kind, text = toks[j]
        if kind == "op" and text in _OPEN:
            if stack:
                cur.append(text)
            stack.append(_OPEN[text])
            continue
        if kind == "op" and text in _CLOSE:
            if not stack or stack.pop() != text:
                return None
            if not stack:
                args.append("".join(cur))
                return args, j
            cur.append(text)
            continue
        if kind == "op" and text == "," and len(stack) == 1:
            args.append("".join(cur))
            cur = []
            continue
        cur.append(text)
    return None


def _rewrite(toks: list[Token]) -> str:
    out: list[str] = []
    i, n = 0, len(toks)
    while i < n:
        kind, text = toks[i]
        if kind == "op" and text == ".":
            m = _next(toks, i + 1)
            p = _next(toks, m + 1)
            if (
                m < n
                and toks[m][0] == "id"
                and toks[m][1] in _MACROS
                and p < n
                and toks[p] == ("op", "(")
            ):
                call = _call_arguments(toks, p)
                if call is not None and len(call[0]) in (3, 4):
                    args = [rewrite_transform_map(a).strip() for a in call[0]]
                    out.append(_transform(toks[m][1], args))
                    i = call[1] + 1
                    continue
        out.append(text)
        i += 1
    return "".join(out)


def _transform(macro: str, args: list[str]) -> str:
    k, v, *rest = args
    body = rest[-1]
    head = ", ".join([k, v, *rest[:-1]])
    if macro == "transformMap":
        return f".transformList({head}, [dyn({k}), dyn({body})\n]).{PAIRS_FN}()"
    return f".transformList({head}, {body}\n).{ENTRIES_FN}()"


def pairs_to_map(pairs: list[Any]) -> dict[Any, Any]:
    """`[[k, v], ...]` (from `transformMap`, whose keys are distinct) as a map."""
    return {k: v for k, v in pairs}


def entries_to_map(entries: list[Any]) -> dict[Any, Any]:
    """The maps produced by `transformMapEntry` merged into one; a key produced twice is an
    error (cel-go's `insert failed: key <k> already exists`)."""
    out: dict[Any, Any] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise TypeError("transformMapEntry() expression must produce a map")
        for key, value in entry.items():
            if key in out:
                shown = str(key).lower() if isinstance(key, bool) else key
                raise ValueError(f"insert failed: key {shown} already exists")
            out[key] = value
    return out


MAP_BUILDERS: tuple[tuple[str, Callable[[list[Any]], dict[Any, Any]]], ...] = (
    (PAIRS_FN, pairs_to_map),
    (ENTRIES_FN, entries_to_map),
)
