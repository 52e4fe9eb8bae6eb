"""Inline `V.name`/`variables.name` and `C.name`/`constants.name` into CEL source text.

Variables become `dyn(expression)` and constants `dyn(literal)`, so the Activation of a check
never depends on which policy is being evaluated (one Activation per check). The `dyn()` keeps
the checker from typing them: Cerbos declares `V` and `C` as maps of dyn, so `C.n in [0, 1]` with
`n: 1.0` compiles there (and is true, by heterogeneous equality); a bare `1.0 in [0, 1]` does not.

Cerbos evaluates a policy's variables before its conditions and leaves a variable whose
expression fails out of `V`. Inlining gives the same answers for conditions and outputs that
read a variable (the error reaches them either way), but two things need more than the text:

- `has(V.x)` / `has(variables.x)` is true iff the variable evaluates without error. It becomes
  `evaluates(<expression>)`, built on CEL's non-strict `__not_strictly_false__` (the function
  comprehension macros use for their loop condition, declared by cel-cpp's and cel-go's standard
  library): `size([e]) == 0` is `false` for any value of `e` and an error when `e` fails, and
  `__not_strictly_false__` turns that error into `true`.
- An output that reads a failing variable reports Cerbos' `undefined field '<name>'`: in outputs
  each reference becomes `(evaluates(e) ? e : vigil_internal_undefined_field("<name>"))`
  (`UNDEFINED_FIELD_FN`, reserved: a policy naming it is refused).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .celtokens import COMMENT, SPACE, TRIVIA, scan
from .presence import guard_has

VARIABLE_ROOTS = ("V", "variables")
CONSTANT_ROOTS = ("C", "constants")

#: cel-cpp's and cel-go's non-strict builtin: `false` only for `false` (an error is `true`).
NOT_STRICTLY_FALSE = "__not_strictly_false__"
#: Vigil's function that fails with Cerbos' message for a variable missing from `V`.
UNDEFINED_FIELD_FN = "vigil_internal_undefined_field"


def evaluates(expr: str) -> str:
    """CEL source that is true iff `expr` evaluates without error (see the module doc)."""
    return f"(!{NOT_STRICTLY_FALSE}(size([{expr}]) == 0))"


class SubstitutionError(ValueError):
    """A reference to an undefined variable or constant, or a cycle between variables."""


def rewrite(
    src: str,
    resolve: Callable[[str, str], str | None],
    presence: Callable[[str, str], str | None] | None = None,
) -> str:
    """Replace `root.name` references (outside strings and comments, not after a `.`) with
    `resolve(root, name)` (None: leave it), and whole `has(root.name)` calls with
    `presence(root, name)` when given (None: leave it). Comments are dropped, so an inlined
    variable never comments out the text after it. Naming `UNDEFINED_FIELD_FN` is an error."""
    toks = scan(src)
    n = len(toks)

    def next_significant(i: int) -> int:
        while i < n and toks[i][0] in TRIVIA:
            i += 1
        return i

    def has_call(i: int) -> tuple[int, str, str] | None:
        """`has ( root . name )` from token `i`: (index after `)`, root, name)."""
        want = [("op", "("), "id", ("op", "."), "id", ("op", ")")]
        found: list[str] = []
        j = i + 1
        for w in want:
            j = next_significant(j)
            if j >= n or (toks[j] != w if isinstance(w, tuple) else toks[j][0] != w):
                return None
            found.append(toks[j][1])
            j += 1
        return j, found[1], found[3]

    out: list[str] = []
    last = ""  # last significant token, to leave `x.V.name` field selections alone
    i = 0
    while i < n:
        kind, text = toks[i]
        if kind == COMMENT:
            i += 1
            continue
        if kind == "id" and text == UNDEFINED_FIELD_FN:
            raise SubstitutionError(
                f"invalid CEL expression: ERROR: <input>: undeclared reference to '{text}'"
            )
        if presence is not None and kind == "id" and text == "has" and last != ".":
            call = has_call(i)
            rep = presence(call[1], call[2]) if call is not None else None
            if call is not None and rep is not None:
                out.append(rep)
                last = ")"
                i = call[0]
                continue
        if kind == "id" and last != ".":
            j = next_significant(i + 1)
            if j < n and toks[j] == ("op", "."):
                k = next_significant(j + 1)
                if k < n and toks[k][0] == "id":
                    rep = resolve(text, toks[k][1])
                    if rep is not None:
                        out.append(rep)
                        last = ")"
                        i = k + 1
                        continue
        out.append(text)
        if kind != SPACE:
            last = text
        i += 1
    return "".join(out)


def cel_literal(value: Any) -> str:
    """A constant as CEL source; numbers become doubles, as Cerbos stores them."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        f = float(value)
        if not math.isfinite(f):
            raise SubstitutionError(f"constant {value!r} is not a finite number")
        text = repr(f)
        return text if ("." in text or "e" in text) else text + ".0"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(cel_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k))}: {cel_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise SubstitutionError(f"unsupported constant value {value!r}")


class Inliner:
    """Resolves variable/constant references of one policy (variables may use each other)."""

    def __init__(self, variables: dict[str, str], constants: dict[str, Any]) -> None:
        self._variables = variables
        self._constants = {k: f"dyn({cel_literal(v)})" for k, v in constants.items()}
        self._resolved: dict[str, str] = {}

    def expand(self, src: str, _stack: tuple[str, ...] = (), *, output: bool = False) -> str:
        """`src` with variables and constants inlined; `output=True` for a rule output, whose
        references to a failing variable fail with Cerbos' message (see the module doc)."""

        def resolve(root: str, name: str) -> str | None:
            if root in CONSTANT_ROOTS:
                if name not in self._constants:
                    raise SubstitutionError(f"undefined constant '{name}'")
                return self._constants[name]
            if root in VARIABLE_ROOTS:
                value = "dyn(" + self._variable(name, _stack) + ")"
                if not output:
                    return value
                missing = f"{UNDEFINED_FIELD_FN}({json.dumps(name)})"
                return f"({evaluates(value)} ? {value} : {missing})"
            return None

        def presence(root: str, name: str) -> str | None:
            if root in CONSTANT_ROOTS:  # constants are literals: present once defined
                return "true" if resolve(root, name) else None
            if root not in VARIABLE_ROOTS:
                return None
            return evaluates("dyn(" + self._variable(name, _stack) + ")")

        out = rewrite(src, resolve, presence)
        # once, on the whole text (an inlined variable is part of it): see presence.py
        return out if _stack else guard_has(out)

    def _variable(self, name: str, stack: tuple[str, ...]) -> str:
        if name in self._resolved:
            return self._resolved[name]
        if name not in self._variables:
            raise SubstitutionError(f"undefined variable '{name}'")
        if name in stack:
            raise SubstitutionError("variables form a cycle: " + " -> ".join((*stack, name)))
        expanded = self.expand(self._variables[name], (*stack, name))
        self._resolved[name] = expanded
        return expanded
