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
  by `transformMapEntry` is an error, as in cel-go. The result is typed `map(dyn, dyn)` there,
  so the source is also checked (never run) with each call rewritten into an expression of
  cel-go's static type for it, `m.transformList(k, v, [f,] {k: e})[0]` (`map(K, type of e)`),
  and refused where that does not check, as Cerbos refuses it.
- **`x in m` with a map `m` and a key that no map can hold** (`null`, a list, a map): `false`
  in cel-go, `no such overload` in cel-cpp, which flips a decision under `!`/`none`. Each
  `A in B` whose `B` is not a list literal and whose `A` is not a string or number literal
  becomes `(type(B) == map && type(A) in [null_type, list, map] ? false : A in B)` (errors in
  `A` or `B` stay errors). Where the left operand cannot be told from the tokens alone (another
  relational operator before it: `a < b in m`), the text is left as it is. The query planner
  reads the guard back as the plain `A in B` (planner.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from cel_expr_python import cel
from google.api.expr.v1alpha1 import syntax_pb2
from google.protobuf import any_pb2

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
    program, compiled = _compile_ordering_mixed_numbers(
        env, guard_in_map(rewrite_transform_map(src)), attempts
    )
    if compiled != src and any(k == "id" and t in _MACROS for k, t in scan(src)):
        # the program types transformMap results as map(dyn, dyn); check the source once
        # more with them typed as cel-go types them (see the module doc)
        _compile_ordering_mixed_numbers(
            env, guard_in_map(rewrite_transform_map(src, probe=True)), attempts
        )
    check_regex_literals(env, compiled)
    return program, compiled


def _compile_ordering_mixed_numbers(env: Any, src: str, attempts: int) -> tuple[Any, str]:
    for _ in range(attempts):
        try:
            return env.compile(src), src
        except RuntimeError as exc:
            fixed = order_mixed_numbers(src, str(exc))
            if fixed is None:
                raise
            src = fixed
    return env.compile(src), src


# -- regular-expression literals -------------------------------------------------------------


def check_regex_literals(env: Any, src: str) -> None:
    """Raise `RuntimeError` for a `x.matches("<literal>")` whose pattern does not compile, as
    cel-go does when Cerbos builds the program (its regex optimisation compiles the constant
    pattern of the member form, not of the global `matches(x, p)`; `cerbos compile` reports
    `invalid matches argument`). The pattern is compiled by cel-cpp's RE2, whose syntax is Go's
    regexp syntax up to details (cel-cpp accepts `\\C`)."""
    if not any(kind == "id" and text == "matches" for kind, text in scan(src)):
        return
    parsed = any_pb2.Any.FromString(env.compile(src, disable_check=True).serialize())
    for pattern in _member_matches_literals(syntax_pb2.ParsedExpr.FromString(parsed.value).expr):
        value = env.compile(f'"".matches({json.dumps(pattern)})').eval()
        if value.type() == cel.Type.ERROR:
            message = _STATUS_PREFIX.sub("", str(value.value()), count=1)
            raise RuntimeError(f"ERROR: <input>: invalid matches argument ({message})")


_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")


def _member_matches_literals(e: Any) -> Iterator[str]:
    """The string literals `e` passes as the pattern of a member `matches` call."""
    kind = e.WhichOneof("expr_kind")
    if kind == "select_expr":
        yield from _member_matches_literals(e.select_expr.operand)
    elif kind == "call_expr":
        c = e.call_expr
        if c.function == "matches" and c.HasField("target") and len(c.args) == 1:
            arg = c.args[0]
            if (
                arg.WhichOneof("expr_kind") == "const_expr"
                and arg.const_expr.WhichOneof("constant_kind") == "string_value"
            ):
                yield arg.const_expr.string_value
        if c.HasField("target"):
            yield from _member_matches_literals(c.target)
        for a in c.args:
            yield from _member_matches_literals(a)
    elif kind == "list_expr":
        for el in e.list_expr.elements:
            yield from _member_matches_literals(el)
    elif kind == "struct_expr":
        for entry in e.struct_expr.entries:
            if entry.HasField("map_key"):
                yield from _member_matches_literals(entry.map_key)
            yield from _member_matches_literals(entry.value)
    elif kind == "comprehension_expr":
        x = e.comprehension_expr
        for part in (x.iter_range, x.accu_init, x.loop_condition, x.loop_step, x.result):
            yield from _member_matches_literals(part)


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


def rewrite_transform_map(src: str, *, probe: bool = False) -> str:
    """`src` with every `.transformMap(...)`/`.transformMapEntry(...)` call rewritten (see the
    module doc); text that does not have that shape (a parse error to come) is left as is."""
    toks = scan(src)
    if not any(kind == "id" and text in _MACROS for kind, text in toks):
        return src
    return _rewrite(toks, probe)


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


def _rewrite(toks: list[Token], probe: bool) -> str:
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
                    args = [rewrite_transform_map(a, probe=probe).strip() for a in call[0]]
                    out.append(_transform(toks[m][1], args, probe))
                    i = call[1] + 1
                    continue
        out.append(text)
        i += 1
    return "".join(out)


def _transform(macro: str, args: list[str], probe: bool) -> str:
    k, v, *rest = args
    body = rest[-1]
    head = ", ".join([k, v, *rest[:-1]])
    if probe:  # cel-go's static type of the result, for checking only: map(K, type of body)
        if macro == "transformMap":
            return f".transformList({head}, {{{k}: {body}\n}})[0]"
        return f".transformList({head}, {body}\n)[0]"
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


# -- `in` on a map with a key no map can hold ------------------------------------------------

#: Left-operand starts that make the guard needless (a literal key of a map-key type).
_LITERAL_KEYS = frozenset({"str", "num"})
#: Relational operators (same precedence as `in`, left-associative) seen as single characters.
_RELATIONAL = frozenset("<>=")


def guard_in_map(src: str) -> str:
    """`src` with each `A in B` guarded as the module doc says; `src` unchanged if it has none."""
    toks = scan(src)
    if not any(t == ("id", "in") for t in toks):
        return src
    return _guard_in(toks)


def _guard_in(toks: list[Token]) -> str:
    """One left-to-right pass over the tokens; a guard replaces its tokens' text (an operand
    that holds an earlier guarded `in` is rebuilt from its tokens, guarded recursively)."""
    pieces = [text for _, text in toks]
    i = 0
    while i < len(toks):
        if toks[i] == ("id", "in"):
            rep = _guard_one(toks, i)
            if rep is not None:
                start, end, text = rep
                pieces[start:end] = [text] + [""] * (end - start - 1)
                i = end
                continue
        i += 1
    return "".join(pieces)


def _guard_one(toks: list[Token], op: int) -> tuple[int, int, str] | None:
    """(first token, token after the end, replacement) for the `in` at `op`, or None."""
    start = _operand_start(toks, op)
    if start is None:
        return None
    before = start - 1
    while before >= 0 and toks[before][0] in TRIVIA:
        before -= 1
    if before >= 0 and (toks[before][1] in _RELATIONAL or toks[before] == ("id", "in")):
        return None  # `a < b in m` is `(a < b) in m`: not told apart here
    first_right = op + 1
    while first_right < len(toks) and toks[first_right][0] in TRIVIA:
        first_right += 1
    end = _operand_end(toks, first_right)
    if end is None or end == first_right:
        return None
    if toks[first_right] == ("op", "["):
        closing = _matching(toks, first_right)
        if closing is not None and closing == _last_significant(toks, first_right, end):
            return None  # a list literal: never a map
    left_last = _last_significant(toks, start, op)
    if left_last == start and toks[start][0] in _LITERAL_KEYS:
        return None  # "k" in m, 1 in m: a key every map type can be asked for
    a = _guard_text(toks[start : left_last + 1])
    b = _guard_text(toks[first_right:end])
    guarded = f"(type({b}) == map && type({a}) in [null_type, list, map] ? false : {a} in {b})"
    return start, end, guarded


def _guard_text(toks: list[Token]) -> str:
    text = "".join(t for _, t in toks).strip()
    return guard_in_map(text)


def _last_significant(toks: list[Token], start: int, stop: int) -> int:
    """Index of the last non-trivia token in `toks[start:stop]` (`start` if none)."""
    i = stop - 1
    while i > start and toks[i][0] in TRIVIA:
        i -= 1
    return i


def _matching(toks: list[Token], i: int) -> int | None:
    depth = 0
    for j in range(i, len(toks)):
        kind, text = toks[j]
        if kind != "op":
            continue
        if text in _OPEN:
            depth += 1
        elif text in _CLOSE:
            depth -= 1
            if depth == 0:
                return j
    return None


def _not_equal(toks: list[Token], j: int) -> bool:
    return toks[j] == ("op", "!") and j + 1 < len(toks) and toks[j + 1] == ("op", "=")


def _operand_end(toks: list[Token], i: int) -> int | None:
    """Index after the right operand of an `in` starting at `i`: up to the next operator of
    equal or lower precedence, or an unmatched closing bracket, at depth 0."""
    depth = 0
    n = len(toks)
    j = i
    while j < n:
        kind, text = toks[j]
        if kind == "op":
            if text in _OPEN:
                depth += 1
            elif text in _CLOSE:
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and (text in _BOUNDARY or _not_equal(toks, j)):
                break
        elif kind == "id" and text == "in" and depth == 0:
            break
        j += 1
    if depth != 0:
        return None
    while j > i and toks[j - 1][0] in TRIVIA:
        j -= 1
    return j
