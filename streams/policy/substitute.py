"""Inline `V.name`/`variables.name` and `C.name`/`constants.name` into CEL source text.

Variables become parenthesised expressions and constants become CEL literals, so the Activation
of a check never depends on which policy is being evaluated (one Activation per check).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VARIABLE_ROOTS = ("V", "variables")
CONSTANT_ROOTS = ("C", "constants")


class SubstitutionError(ValueError):
    """A reference to an undefined variable or constant, or a cycle between variables."""


def _skip_string(src: str, i: int) -> int:
    """Index just after the string literal starting at `i` (handles raw and triple quotes)."""
    j = i
    raw = False
    while src[j] in "rRbB":
        raw = raw or src[j] in "rR"
        j += 1
    q = src[j]
    triple = src.startswith(q * 3, j)
    delim = q * 3 if triple else q
    j += len(delim)
    while j < len(src):
        if not raw and src[j] == "\\":
            j += 2
            continue
        if src.startswith(delim, j):
            return j + len(delim)
        j += 1
    return len(src)


def rewrite(src: str, resolve: Callable[[str, str], str | None]) -> str:
    """Replace `root.name` references (outside strings, not after a `.`) with `resolve(...)`."""
    out: list[str] = []
    i, n = 0, len(src)
    last = ""  # last non-space character emitted, to leave `x.V.name` field selections alone
    while i < n:
        c = src[i]
        m = _IDENT.match(src, i) if (c.isalpha() or c == "_") else None
        if m and m.end() < n and src[m.end()] in "'\"" and m.group() in {"r", "R", "b", "B"}:
            end = _skip_string(src, i)
            out.append(src[i:end])
            i = end
            last = '"'
            continue
        if c in "'\"":
            end = _skip_string(src, i)
            out.append(src[i:end])
            i = end
            last = '"'
            continue
        if m:
            word = m.group()
            j = m.end()
            k = j
            while k < n and src[k].isspace():
                k += 1
            if last != "." and k < n and src[k] == ".":
                k += 1
                while k < n and src[k].isspace():
                    k += 1
                m2 = _IDENT.match(src, k)
                if m2:
                    rep = resolve(word, m2.group())
                    if rep is not None:
                        out.append(rep)
                        i = m2.end()
                        last = ")"
                        continue
            out.append(word)
            i = j
            last = word[-1]
            continue
        out.append(c)
        if not c.isspace():
            last = c
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
        self._constants = {k: cel_literal(v) for k, v in constants.items()}
        self._resolved: dict[str, str] = {}

    def expand(self, src: str, _stack: tuple[str, ...] = ()) -> str:
        def resolve(root: str, name: str) -> str | None:
            if root in CONSTANT_ROOTS:
                if name not in self._constants:
                    raise SubstitutionError(f"undefined constant '{name}'")
                return self._constants[name]
            if root in VARIABLE_ROOTS:
                return "(" + self._variable(name, _stack) + ")"
            return None

        return rewrite(src, resolve)

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
