"""Cerbos action globs: `:` separates segments, `*` stays within a segment, `**` crosses them,
and a lone `*` matches every action (Cerbos' backward-compatible special case). Also the
resource-kind patterns of principal and role policies, which Cerbos matches against the
*sanitised* kind (`sanitized_name`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

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


_INVALID_NAME_CHARS = re.compile(r"[^\w.]+", re.ASCII)


@lru_cache(maxsize=4096)
def sanitized_name(name: str) -> str:
    """Cerbos' `namer` sanitising of a kind or version: each run of characters other than ASCII
    word characters and `.` becomes `_` (`album:object` -> `album_object`)."""
    return _INVALID_NAME_CHARS.sub("_", name)


def compile_kind_glob(pattern: str, *, sanitize_literal: bool) -> Callable[[str], bool]:
    """A predicate on request kinds for the `resource` of a principal-policy rule
    (`sanitize_literal=True`) or role-policy rule. Cerbos 0.55 looks these rules up by the
    sanitised kind: a principal rule's plain name is sanitised too (`album:photo` matches kind
    `album:photo`, and so does `album_photo`), a role rule's is not (`album:photo` matches no
    request, `album_photo` matches kind `album:photo`), and glob patterns are kept as written
    (`album:*` matches nothing, `album*` matches `album:photo`). Verified against the stock PDP
    (tests/policy/test_generated_regressions.py)."""
    if sanitize_literal and not (_SPECIAL & set(pattern)):
        pattern = sanitized_name(pattern)
    match = compile_action_glob(pattern)
    if pattern == "*":
        return match
    return lambda kind: match(sanitized_name(kind))
