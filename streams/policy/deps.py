"""Static dependency analysis of (inlined) CEL condition source, for `CheckMemo`.

`dependencies(src)` returns the attribute paths an expression reads, normalised to the roots `P`
(`request.principal`), `R` (`request.resource`) and `runtime`, e.g.
`(("P", "attr", "signals", "risk", "level"), ("R", "attr", "owner"))`. The result of the
expression is then a function of the values found at those paths, the engine's globals and the
fixed `now` of a memo; the engine uses that to share condition results between checks.

The analysis is deliberately conservative: whenever a root is used in a way that is not a plain
dotted path (indexing `P.attr["x"]`, the whole `P`/`P.attr`/`request`/`runtime`, `request.auxData`
(or `aux_data`), a macro or `cel.bind` variable named like a root, backquoted identifiers, optional selection
`.?`, identifiers we do not know), it returns `None`: "depends on the whole request", never
shared across checks. `G`/`globals` are constant per engine and `now()`/`timeSince()` are fixed per
memo, so they add no dependency. Function calls (global, `GLOBAL_FUNCTIONS`, or member calls such
as `hierarchy(P.attr.scope).ancestorOf(...)`, `spiffeID(P.attr.id).path()`) are pure: they depend
on exactly what their arguments and receivers read; a global call of an unknown name gives None.
"""

from __future__ import annotations

from .celtokens import significant

Path = tuple[str, ...]

ROOTS = frozenset({"request", "P", "R", "G", "globals", "runtime"})
CONSTANT_ROOTS = frozenset({"G", "globals"})
# Free identifiers that are not variables: literals, operators and type names.
_KEYWORDS = frozenset(
    {
        "true",
        "false",
        "null",
        "in",
        "int",
        "uint",
        "double",
        "bool",
        "string",
        "bytes",
        "list",
        "map",
        "type",
        "null_type",
        "dyn",
    }
)
# Global functions and macros of the environment (`cel_env.new_env`): standard CEL, and Cerbos'
# library. All are pure functions of their arguments (`now()`/`timeSince()` are fixed per memo),
# so a call adds no dependency beyond its arguments' paths. A call of any other name (which the
# compiler would reject anyway) is treated as reading the whole request.
GLOBAL_FUNCTIONS = frozenset(
    {
        # standard CEL
        "has",
        "size",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "timestamp",
        "duration",
        "dyn",
        "type",
        "matches",
        # Cerbos
        "now",
        "timeSince",
        "hasIntersection",
        "has_intersection",
        "intersect",
        "except",
        "isSubset",
        "is_subset",
        "id",
        "hierarchy",
        "spiffeID",
        "spiffeTrustDomain",
        "spiffeMatchAny",
        "spiffeMatchExact",
        "spiffeMatchOneOf",
        "spiffeMatchTrustDomain",
    }
)
# Namespaces of extension functions, only valid as `ns.fn(`.
_NAMESPACES = frozenset({"cel", "math", "strings", "base64", "sets", "lists", "optional"})

# Proto field names of `request.principal`/`request.resource`/`runtime` that differ from their
# JSON names, normalised to the JSON name (the engine's data holds both spellings).
_FIELD_ALIASES = {
    ("P", "policy_version"): "policyVersion",
    ("R", "policy_version"): "policyVersion",
    ("runtime", "effective_derived_roles"): "effectiveDerivedRoles",
}


class _Unresolvable(Exception):
    """The source uses something the analysis cannot follow: whole-request dependency."""


def tokenize(src: str) -> list[tuple[str, str]]:
    """CEL tokens as (kind, text), kind one of `id`, `num`, `str`, `op`; comments dropped."""
    toks = significant(src)
    if any(kind == "bq" for kind, _ in toks):
        raise _Unresolvable("backquoted identifier")
    return toks


def _bound_names(toks: list[tuple[str, str]]) -> set[str]:
    """Names bound by comprehension macros and `cel.bind`: `.fn(x, ...` and `.fn(k, v, ...`.

    Scope-insensitive (a bound name used outside its scope does not compile anyway)."""
    bound: set[str] = set()
    for i in range(len(toks) - 4):
        if (
            toks[i] == ("op", ".")
            and toks[i + 1][0] == "id"
            and toks[i + 2] == ("op", "(")
            and toks[i + 3][0] == "id"
            and toks[i + 4] == ("op", ",")
        ):
            bound.add(toks[i + 3][1])
            if i + 6 < len(toks) and toks[i + 5][0] == "id" and toks[i + 6] == ("op", ","):
                bound.add(toks[i + 5][1])
    return bound


def _normalise(path: Path) -> Path | None:
    """Map aliases onto `P`/`R`; None for constant roots; raise for whole-object uses."""
    root = path[0]
    if root in CONSTANT_ROOTS:
        return None
    if root == "request":
        if len(path) < 2 or path[1] not in ("principal", "resource"):
            raise _Unresolvable("request / request.auxData")
        path = ("P" if path[1] == "principal" else "R", *path[2:])
        root = path[0]
    if len(path) < 2:
        raise _Unresolvable(f"whole {root}")
    alias = _FIELD_ALIASES.get((root, path[1]))
    if alias is not None:  # Cerbos accepts proto (snake_case) and JSON (camelCase) names
        path = (root, alias, *path[2:])
    if root in ("P", "R") and path[1] == "attr" and len(path) < 3:
        raise _Unresolvable(f"whole {root}.attr")
    return path


def _analyse(src: str) -> tuple[Path, ...]:
    """Dependencies: the read paths without those a shorter read path already covers."""
    paths = _read_paths(src)
    # A path whose prefix is also a dependency adds nothing to the key.
    ordered = sorted(paths, key=lambda p: (len(p), p))
    kept: list[Path] = []
    for p in ordered:
        if not any(p[: len(k)] == k for k in kept):
            kept.append(p)
    return tuple(sorted(kept))


def _read_paths(src: str) -> set[Path]:
    toks = tokenize(src)
    bound = _bound_names(toks)
    if bound & ROOTS:
        raise _Unresolvable("a bound variable shadows a root")
    n = len(toks)
    paths: set[Path] = set()
    for i, (kind, text) in enumerate(toks):
        if kind != "id" or (i > 0 and toks[i - 1] == ("op", ".")):
            continue  # not an identifier, or a field selection / member call
        nxt = toks[i + 1] if i + 1 < n else ("", "")
        if text in ROOTS:
            path = [text]
            j = i
            while (
                j + 2 < n
                and toks[j + 1] == ("op", ".")
                and toks[j + 2][0] == "id"
                and not (j + 3 < n and toks[j + 3] == ("op", "("))
            ):
                path.append(toks[j + 2][1])
                j += 2
            after = toks[j + 1] if j + 1 < n else ("", "")
            if after == ("op", "[") or (
                after == ("op", ".") and not (j + 2 < n and toks[j + 2][0] == "id")
            ):
                if text in CONSTANT_ROOTS:
                    continue
                raise _Unresolvable("indexing or optional selection on a root")
            norm = _normalise(tuple(path))
            if norm is not None:
                paths.add(norm)
            continue
        if nxt == ("op", "("):
            if text in GLOBAL_FUNCTIONS:
                continue  # global function or macro: has(), timestamp(), hierarchy(), ...
            raise _Unresolvable(f"unknown function {text!r}")
        if text in _KEYWORDS or text in bound:
            continue
        if (
            text in _NAMESPACES
            and nxt == ("op", ".")
            and i + 3 < n
            and toks[i + 2][0] == "id"
            and toks[i + 3] == ("op", "(")
        ):
            continue
        raise _Unresolvable(f"unknown identifier {text!r}")
    return paths


CLOCK_FUNCTIONS = frozenset({"now", "timeSince"})


def reads_clock(src: str) -> bool:
    """Whether `src` calls `now()`/`timeSince()`, i.e. its value can change with time alone.

    Token-based, so `"now"` in a string literal does not count; a source the tokenizer cannot
    follow counts as reading the clock (conservative)."""
    try:
        toks = tokenize(src)
    except _Unresolvable:
        return True
    return any(kind == "id" and text in CLOCK_FUNCTIONS for kind, text in toks)


def dependencies(src: str) -> tuple[Path, ...] | None:
    """Attribute paths `src` reads, or None when it depends on the whole request."""
    try:
        return _analyse(src)
    except _Unresolvable:
        return None


def read_paths(src: str) -> tuple[Path, ...] | None:
    """Every attribute path `src` reads, also those under another path it reads (`has(P.attr.x)`
    and `P.attr.x.y` give both), or None when it reads something not statically known. For
    reports of what a condition looks at (`vigil inventory`); `dependencies` is the memo key."""
    try:
        return tuple(sorted(_read_paths(src)))
    except _Unresolvable:
        return None
