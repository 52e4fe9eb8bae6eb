"""The generated whole-check memo key (`streams.policy.memokey`) against the general one: for any
request, the values it returns are exactly those `_resolve` gives path by path (same types,
same sentinels), it raises `_Uncacheable` only where resolving path by path does, and it
returns None (the caller then resolves path by path) only off the plain-dict path."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.policy import PolicyEngine
from streams.policy.engine import _EMPTY, _MISSING, _freeze, _resolve, _Uncacheable
from streams.policy.memokey import compile_key_function

from .conftest import POLICIES, principal

RUNTIME = {"_resolve": _resolve, "_freeze": _freeze, "_MISSING": _MISSING, "_EMPTY": _EMPTY}
BUNDLES = Path(__file__).parent / "bundles"

# Shared prefixes, a path that is also the prefix of others, the whole attr value, top-level
# fields (plain and through `_resolve`) and one path read twice.
PATHS: list[tuple[str, ...]] = [
    ("P", "attr", "signals", "risk", "level"),
    ("P", "attr", "signals", "risk", "score"),
    ("P", "attr", "signals", "device", "compliant"),
    ("P", "attr", "signals", "device"),
    ("P", "attr", "grant", "id"),
    ("P", "attr", "x"),
    ("P", "id"),
    ("P", "roles"),
    ("P", "scope"),
    ("R", "attr", "owner"),
    ("R", "attr", "owner"),
    ("R", "id"),
    ("R", "kind"),
    ("R", "scope"),
    ("R", "attr", "tags", "a", "b"),
]
WHOLE_ATTR: list[tuple[str, ...]] = [("P", "attr"), ("P", "attr", "signals", "risk", "level")]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "LOW", "HIGH", "x", "alice"]),
    st.just(0.0) | st.just(-0.0),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.sampled_from(["a", "b", "level", "c"]), inner, max_size=3),
        st.builds(types.MappingProxyType, st.dictionaries(st.sampled_from(["a", "b"]), inner)),
        st.just({1, 2}),  # unhashable after conversion: `_Uncacheable`
    ),
    max_leaves=6,
)


def _trie(paths: list[tuple[str, ...]], root: str) -> dict[str, Any]:
    trie: dict[str, Any] = {}
    for path in paths:
        if path[0] == root and path[1] == "attr":
            node = trie
            for part in path[2:]:
                node = node.setdefault(part, {})
    return trie


@st.composite
def shaped(draw: st.DrawFn, trie: dict[str, Any]) -> Any:
    """A value along the dependency paths in `trie`: mostly dicts down to the leaves (the plain
    path), sometimes a missing key, another mapping type or a non-map on the way."""
    choice = draw(st.integers(0, 9)) if trie else 9
    if choice <= 6:
        out = {k: draw(shaped(sub)) for k, sub in trie.items() if draw(st.integers(0, 9)) > 0}
        return out if choice <= 5 else types.MappingProxyType(out)
    return draw(values)


def requests(paths: list[tuple[str, ...]]) -> st.SearchStrategy[tuple[Any, Any]]:
    roles = st.lists(st.sampled_from(["employee", "agent"]), max_size=2)
    return st.tuples(
        st.fixed_dictionaries(
            {"attr": shaped(_trie(paths, "P"))},
            optional={"id": values, "roles": roles, "scope": values, "policyVersion": values},
        ),
        st.fixed_dictionaries(
            {"attr": shaped(_trie(paths, "R"))},
            optional={"id": values, "kind": values, "scope": values},
        ),
    )


def _general(paths: list[tuple[str, ...]], p: Any, r: Any) -> tuple[Any, ...] | None:
    try:
        return tuple(_resolve(path, p, r) for path in paths)
    except _Uncacheable:
        return None


def _same(fast: tuple[Any, ...] | None, general: tuple[Any, ...] | None) -> None:
    assert fast == general
    assert repr(fast) == repr(general)  # type-exact: 1 vs 1.0 vs True, sentinels


def _plain(p: Any, r: Any, paths: list[tuple[str, ...]]) -> bool:
    """Whether every intermediate value on `paths` under attr is a dict that is present."""
    for path in paths:
        if path[1] != "attr" or len(path) == 2:
            continue
        cur: Any = (p if path[0] == "P" else r)["attr"] or _EMPTY
        for part in path[2:-1]:
            if type(cur) is not dict:
                return False
            cur = cur.get(part, _MISSING)
        if type(cur) is not dict:
            return False
    return True


@pytest.mark.parametrize("paths", [PATHS, WHOLE_ATTR], ids=["paths", "whole-attr"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_key_equals_path_by_path(
    paths: list[tuple[str, ...]], data: st.DataObject
) -> None:
    fn = compile_key_function(paths, RUNTIME)
    p, r = data.draw(requests(paths))
    general = _general(paths, p, r)
    try:
        fast = fn(p, r)
    except _Uncacheable:
        assert general is None
        return
    if fast is None:  # only off the plain-dict path, where the caller resolves path by path
        assert not _plain(p, r, paths)
        return
    _same(fast, general)


def test_plain_requests_take_the_generated_path() -> None:
    fn = compile_key_function(PATHS, RUNTIME)
    p = principal()
    p["attr"]["x"] = 1.5
    r = {"kind": "document", "id": "d1", "attr": {"owner": "alice", "tags": {"a": {"b": [1]}}}}
    fast = fn(p, r)
    assert fast is not None
    _same(fast, _general(PATHS, p, r))


def _engines() -> list[PolicyEngine]:
    found = [PolicyEngine.from_directory(POLICIES)]
    for d in sorted(BUNDLES.iterdir()):
        if d.is_dir():
            try:
                found.append(PolicyEngine.from_directory(d))
            except Exception:  # noqa: S112 - bundles that test compile errors
                continue
    return found


ENGINES = _engines()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), which=st.integers(0, len(ENGINES) - 1))
def test_every_chain_key_equals_path_by_path(data: st.DataObject, which: int) -> None:
    """On every chain of the test bundles, the engine's key values are the general ones."""
    engine = ENGINES[which]
    p, r = data.draw(requests(engine._dep_paths))
    for chain_key, deps in engine._chain_deps.items():
        if deps is None:
            continue
        paths = [engine._dep_paths[d] for d in deps]
        _same(engine._chain_values(chain_key, p, r), _general(paths, p, r))
