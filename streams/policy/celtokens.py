"""One tokenizer for CEL source text, shared by variable inlining (`substitute.py`) and the
dependency analysis (`deps.py`), so that both agree on what is a string, a comment or a name.

`scan(src)` is lossless (`"".join(text for _, text in scan(src)) == src`): tokens are
`(kind, text)` with kind `id`, `num`, `str`, `op` (one character), `space`, `comment`
(`// ...` up to, not including, the end of the line) or `bq` (a backquoted identifier).
"""

from __future__ import annotations

import re

Token = tuple[str, str]

SPACE = "space"
COMMENT = "comment"
#: Token kinds that carry no meaning for the expression.
TRIVIA = frozenset({SPACE, COMMENT})

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?|(?:[0-9]+\.[0-9]+|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?[uU]?"
)
_STRING_PREFIX = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?['\"]")
_SPACE = re.compile(r"\s+")


def _string_end(src: str, i: int) -> int:
    """Index just after the string literal starting at `i` (raw, bytes and triple quotes)."""
    j = i
    raw = False
    while src[j] in "rRbB":
        raw = raw or src[j] in "rR"
        j += 1
    q = src[j]
    delim = q * 3 if src.startswith(q * 3, j) else q
    j += len(delim)
    while j < len(src):
        if not raw and src[j] == "\\":
            j += 2
            continue
        if src.startswith(delim, j):
            return j + len(delim)
        j += 1
    return len(src)


def scan(src: str) -> list[Token]:
    """All tokens of `src`, trivia included (see the module doc)."""
    out: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            m = _SPACE.match(src, i)
            assert m is not None
            out.append((SPACE, m.group()))
            i = m.end()
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append((COMMENT, src[i:j]))
            i = j
            continue
        if _STRING_PREFIX.match(src, i):
            end = _string_end(src, i)
            out.append(("str", src[i:end]))
            i = end
            continue
        if c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = _NUMBER.match(src, i)
            if m:
                out.append(("num", m.group()))
                i = m.end()
                continue
        if c.isalpha() or c == "_":
            m = _IDENT.match(src, i)
            assert m is not None
            out.append(("id", m.group()))
            i = m.end()
            continue
        if c == "`":
            j = src.find("`", i + 1)
            j = n if j < 0 else j + 1
            out.append(("bq", src[i:j]))
            i = j
            continue
        out.append(("op", c))
        i += 1
    return out


def significant(src: str) -> list[Token]:
    """The tokens of `src` without whitespace and comments."""
    return [t for t in scan(src) if t[0] not in TRIVIA]
