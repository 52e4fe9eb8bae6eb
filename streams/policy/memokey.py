"""Whole-check memo keys read in one walk: a Python function generated per resource chain.

`PolicyEngine` keys a whole check on the values at every dependency path of the resource chain
(`engine._resolve`: one walk from the request's root per path, ≈9 paths on the default bundle,
most of them under `P.attr.signals`). For the common request, plain dicts down to each value,
the function generated here reads every dict on the way once (shared prefixes once for all
their paths) and returns exactly the values `_resolve` gives, in the same order. For anything
else on the way (a mapping that is not a dict, a non-map, a missing intermediate key) it returns
None and the caller resolves path by path. A value `_resolve` cannot key raises `_Uncacheable`
from the same `_freeze` call in both. tests/policy/test_memo_key.py proves the two equal
(hypothesis, on generated requests and on every chain of the test bundles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Path = tuple[str, ...]
KeyFunction = Callable[[Any, Any], tuple[Any, ...] | None]
# Top-level fields read straight from the request (`_resolve`: `.get(field, "")`, then frozen
# without CEL's conversion); any other non-attr field goes through `_resolve` itself.
_PLAIN_FIELDS = {("P", "id"), ("R", "id"), ("R", "kind")}


class _Node:
    __slots__ = ("children", "leaf")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.leaf: list[int] = []  # indexes (in the key) of the paths ending here


def compile_key_function(paths: Sequence[Path], runtime: dict[str, Any]) -> KeyFunction:
    """The values at `paths` for a (principal, resource) pair, or None (resolve path by path).

    `runtime` names what the generated code calls: `_resolve`, `_freeze`, `_MISSING`, `_EMPTY`
    of the engine (passed in, so the generated code and `_resolve` share one definition)."""
    lines = ["def memo_key(principal, resource):"]
    consts: dict[str, Any] = {}
    roots = {"P": _Node(), "R": _Node()}
    out = [f"k{i}" for i in range(len(paths))]
    for i, path in enumerate(paths):
        if path[1] == "attr":
            node = roots[path[0]]
            for part in path[2:]:
                node = node.children.setdefault(part, _Node())
            node.leaf.append(i)
        elif path in _PLAIN_FIELDS and len(path) == 2:
            src = "principal" if path[0] == "P" else "resource"
            lines.append(f"    k{i} = {src}.get({path[1]!r}, '')")
            lines.append(f"    if type(k{i}) is not str: k{i} = _freeze(k{i}, False)")
        else:
            consts[f"_P{i}"] = path
            lines.append(f"    k{i} = _resolve(_P{i}, principal, resource)")
    counter = iter(range(1 << 30))

    def emit(node: _Node, var: str, depth: int, indent: str) -> None:
        """Code for the paths below `node`, whose dict is in `var` (path index `depth`)."""
        for key, child in node.children.items():
            name = f"v{next(counter)}"
            lines.append(f"{indent}{name} = {var}.get({key!r}, _MISSING)")
            if child.leaf:
                missing = f"_M{depth}"
                consts[missing] = (runtime["_MISSING"], depth)
                first = f"k{child.leaf[0]}"
                lines.append(
                    f"{indent}{first} = {missing} if {name} is _MISSING else "
                    f"({name} if type({name}) is str else _freeze({name}, True))"
                )
                for j in child.leaf[1:]:
                    lines.append(f"{indent}k{j} = {first}")
            if child.children:
                lines.append(f"{indent}if type({name}) is not dict: return None")
                emit(child, name, depth + 1, indent)

    for root, src in (("P", "principal"), ("R", "resource")):
        node = roots[root]
        if not node.children and not node.leaf:
            continue
        var = f"a{root}"
        lines.append(f"    {var} = {src}.get('attr') or _EMPTY")
        if node.leaf:  # the whole attr value (`P.attr`)
            lines.append(
                f"    k{node.leaf[0]} = {var} if type({var}) is str else _freeze({var}, True)"
            )
            for j in node.leaf[1:]:
                lines.append(f"    k{j} = k{node.leaf[0]}")
        if node.children:
            lines.append(f"    if type({var}) is not dict: return None")
            emit(node, var, 2, "    ")
    lines.append(f"    return ({', '.join(out)}{',' if len(out) == 1 else ''})")
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {**runtime, **consts}
    exec(compile(source, "<memo key>", "exec"), namespace)  # noqa: S102 - our own generated code
    fn: KeyFunction = namespace["memo_key"]
    fn.source = source  # type: ignore[attr-defined]
    return fn
