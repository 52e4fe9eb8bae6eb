"""Inline `V.name`/`variables.name` and `C.name`/`constants.name` into CEL source text.

Variables become `dyn(expression)` and constants `dyn(literal)`, so the Activation of a check
never depends on which policy is being evaluated (one Activation per check). The `dyn()` keeps
the checker from typing them: Cerbos declares `V` and `C` as maps of dyn, so `C.n in [0, 1]` with
`n: 1.0` compiles there (and is true, by heterogeneous equality); a bare `1.0 in [0, 1]` does not.
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


class SubstitutionError(ValueError):
    """A reference to an undefined variable or constant, or a cycle between variables."""


def rewrite(src: str, resolve: Callable[[str, str], str | None]) -> str:
    """Replace `root.name` references (outside strings and comments, not after a `.`) with
    `resolve(root, name)` (None: leave it). Comments are dropped, so an inlined variable never
    comments out the text after it."""
    toks = scan(src)
    n = len(toks)

    def next_significant(i: int) -> int:
        while i < n and toks[i][0] in TRIVIA:
            i += 1
        return i

    out: list[str] = []
    last = ""  # last significant token, to leave `x.V.name` field selections alone
    i = 0
    while i < n:
        kind, text = toks[i]
        if kind == COMMENT:
            i += 1
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

    def expand(self, src: str, _stack: tuple[str, ...] = ()) -> str:
        def resolve(root: str, name: str) -> str | None:
            if root in CONSTANT_ROOTS:
                if name not in self._constants:
                    raise SubstitutionError(f"undefined constant '{name}'")
                return self._constants[name]
            if root in VARIABLE_ROOTS:
                return "dyn(" + self._variable(name, _stack) + ")"
            return None

        out = rewrite(src, resolve)
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
