"""Cerbos action globs: `:` separates segments, `*` stays within a segment, `**` crosses them,
and a lone `*` matches every action (Cerbos' backward-compatible special case)."""

from __future__ import annotations

import re
from collections.abc import Callable

_SPECIAL = set("*?[{\\")


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    depth = 0
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                out.append(".*")
                i += 2
                continue
            out.append("[^:]*")
        elif c == "?":
            out.append("[^:]")
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f"unterminated character class in {pattern!r}")
            body = pattern[i + 1 : end]
            if not body:
                raise ValueError(f"empty character class in {pattern!r}")
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise ValueError(f"unterminated alternatives in {pattern!r}")
    return "".join(out)


def compile_action_glob(pattern: str) -> Callable[[str], bool]:
    """A predicate for one action pattern; plain names compare by equality (the common case)."""
    if pattern == "*":
        return lambda action: True
    if not (_SPECIAL & set(pattern)):
        return pattern.__eq__
    regex = re.compile(_translate(pattern), re.DOTALL)
    return lambda action: regex.fullmatch(action) is not None
