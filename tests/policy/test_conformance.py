"""Cerbos conformance details found with real-world policy stores (each also compared with the
stock PDP in test_differential.py when the binary is available)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.policy import ActionResult, PolicyCompileError, PolicyEngine

BUNDLES = Path(__file__).parent / "bundles"
A, D = "EFFECT_ALLOW", "EFFECT_DENY"


def test_role_policy_is_exhaustive_for_kinds_its_scope_grants_the_role() -> None:
    """r1's role policy (scope acme) has no rule for `widget`, but the acme widget policy has a
    rule for r1: every widget action is then denied for r1 by its role policy, although the root
    widget policy allows read/write (stock Cerbos 0.55 does the same)."""
    eng = PolicyEngine.from_directory(BUNDLES / "roles")
    p = {"id": "u", "roles": ["r1"], "attr": {}}
    res = eng.check(p, {"kind": "widget", "id": "1", "scope": "acme", "attr": {}}, ["read"])
    assert (res.actions["read"].effect, res.actions["read"].policy) == (D, "role.r1.vdefault/acme")
    # via a parent role (user) named by a derived role of the acme gadget policy
    res = eng.check(p, {"kind": "gadget", "id": "1", "scope": "acme", "attr": {}}, ["read"])
    assert (res.actions["read"].effect, res.actions["read"].policy) == (D, "role.r1.vdefault/acme")
    # the acme gizmo policy names no role of r1's chain: the root policy decides
    res = eng.check(p, {"kind": "gizmo", "id": "1", "scope": "acme", "attr": {}}, ["read"])
    assert res.actions["read"].effect == A
    # without the role policy's role the root policy allows
    user = {"id": "u", "roles": ["user"], "attr": {}}
    res = eng.check(user, {"kind": "widget", "id": "1", "scope": "acme", "attr": {}}, ["read"])
    assert res.actions["read"].effect == A


def test_exported_variables_read_the_importers_constants() -> None:
    """`exportVariables` may use `C.x`: each importing policy supplies the constant (imported
    or local), so one exported variable means different things in doc and widget."""
    eng = PolicyEngine.from_directory(BUNDLES / "exports")
    p = {"id": "u", "roles": ["user"], "attr": {}}
    for kind, size, tag, read, write in [
        ("doc", 50, "a", A, A),  # limit 10, tags [a, b]
        ("widget", 50, "a", D, D),  # limit 100, tags [z]
        ("widget", 500, "z", A, A),
        ("doc", 5, "a", D, D),
    ]:
        res = eng.check(
            p, {"kind": kind, "id": "1", "attr": {"size": size, "tag": tag}}, ["read", "write"]
        )
        assert (res.actions["read"].effect, res.actions["write"].effect) == (read, write), kind


def test_exported_variable_constant_missing_in_importer(tmp_path: Path) -> None:
    """Cerbos checks every imported variable with the importer's constants (used or not)."""
    src = BUNDLES / "exports"
    for name in ("ev.yaml", "ec.yaml"):
        (tmp_path / name).write_text((src / name).read_text())
    (tmp_path / "gadget.yaml").write_text(
        "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: gadget\n"
        "  version: default\n  variables:\n    import: [ev]\n  rules:\n"
        "    - actions: [read]\n      roles: [user]\n      effect: EFFECT_ALLOW\n"
    )
    with pytest.raises(PolicyCompileError) as err:
        PolicyEngine.from_directory(tmp_path)
    assert [(i.file, i.path, i.message) for i in err.value.errors] == [
        (
            "gadget.yaml",
            "resourcePolicy.variables.import[0]",
            "imported variable 'big': undefined constant 'limit'",
        ),
        (
            "gadget.yaml",
            "resourcePolicy.variables.import[0]",
            "imported variable 'tagged': undefined constant 'limit'",
        ),
    ]


def _cel_ext_requests() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    principals = [
        {"id": "p", "roles": ["user"], "attr": attr}
        for attr in (
            {"name": "aa12b", "key": "b", "pattern": "z"},
            {"name": "a12ab", "key": "a", "pattern": "("},
            {"name": 5},
        )
    ]
    resources = [
        {"kind": "cel_ext", "id": "1", "attr": {"m": m, "l": lst}}
        for m in ({"a": 1, "b": 2}, {"a": 0}, "x")
        for lst in ([1, 2, 3], [3, 1, 2], ["a", 1], [2, 2])
    ]
    return principals, resources


def test_cel_extensions_cerbos_enables() -> None:
    """Two-variable comprehensions, sortBy and the regex extension compile and evaluate."""
    eng = PolicyEngine.from_directory(BUNDLES / "cel_ext")
    p = {"id": "p", "roles": ["user"], "attr": {"name": "aa12b", "key": "b", "pattern": "("}}
    r = {"kind": "cel_ext", "id": "1", "attr": {"m": {"a": 1, "b": 2}, "l": [3, 1, 2]}}
    res = eng.check(p, r, ["tv_exists_map", "tv_all_list_not", "sort_by", "re_replace"])
    assert all(a.effect == A for a in res.actions.values()), res.actions
    res = eng.check(p, r, ["re_bad_pattern", "re_bad_pattern_not"])  # invalid regex: error
    assert [a.effect for a in res.actions.values()] == [D, D]
    assert any("re_bad_pattern" in e for e in res.errors)


def test_cel_extensions_with_memo_match_checks_without() -> None:
    """Comprehension variables of the two-variable macros are not request paths: a shared
    CheckMemo must give the same results as independent checks."""
    eng = PolicyEngine.from_directory(BUNDLES / "cel_ext")
    actions = sorted({r for r in _actions(BUNDLES / "cel_ext" / "cel_ext.yaml")})
    principals, resources = _cel_ext_requests()
    memo = eng.new_memo()
    for p in principals:
        for r in resources:
            with_memo = eng.check(p, r, actions, memo=memo)
            plain = eng.check(p, r, actions, now=memo.now)
            assert with_memo.actions == plain.actions, (p, r)
            assert with_memo.errors == plain.errors, (p, r)
    assert memo.hits > 0


def _actions(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    return [rule["name"] for rule in doc["resourcePolicy"]["rules"]]


def test_transform_map_compiles_and_evaluates(tmp_path: Path) -> None:
    """transformMap/transformMapEntry (which cel-expr-python cannot run as such) are rewritten
    into transformList and a map builder (streams/policy/celcompat.py); compared with the stock
    PDP by test_generated_regressions.py."""
    (tmp_path / "doc.yaml").write_text(
        "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n"
        "  version: default\n  rules:\n"
        "    - actions: [read]\n      roles: [user]\n      effect: EFFECT_ALLOW\n"
        "      condition:\n        match:\n"
        "          expr: \"R.attr.m.transformMap(k, v, v + 1.0) == {'a': 2.0}\"\n"
        "    - actions: [write]\n      roles: [user]\n      effect: EFFECT_ALLOW\n"
        "      condition:\n        match:\n"
        "          expr: \"R.attr.m.transformMapEntry(k, v, {string(v): k}) == {'1': 'a'}\"\n"
    )
    engine = PolicyEngine.from_directory(tmp_path)
    for attr, allowed in (({"m": {"a": 1}}, True), ({"m": {"a": 2}}, False), ({}, False)):
        res = engine.check({"id": "u", "roles": ["user"]}, {"kind": "doc", "attr": attr}, ["read"])
        assert res.allowed("read") is allowed
        res = engine.check({"id": "u", "roles": ["user"]}, {"kind": "doc", "attr": attr}, ["write"])
        assert res.allowed("write") is allowed


def _fused_resources() -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = []
    for x in (None, 5, 0, "s"):
        for flag in (None, True, False):
            for y in (None, "a", "z"):
                attr = {k: v for k, v in (("x", x), ("flag", flag), ("y", y)) if v is not None}
                values.append({"kind": "item", "id": "1", "attr": attr})
    return values


def test_fused_condition_errors_do_not_depend_on_sibling_values() -> None:
    """`all: [R.attr.x > 1, R.attr.flag == true]` without `x`: Cerbos evaluates the first leaf,
    fails and stops, whatever `flag` is; a fused `(a) && (b)` would hide the error when
    `flag` is false (CEL's `<error> && false` is false)."""
    eng = PolicyEngine.from_directory(BUNDLES / "fused")
    p = {"id": "u", "roles": ["user"], "attr": {}}
    for flag in (True, False):
        res = eng.check(p, {"kind": "item", "id": "1", "attr": {"flag": flag}}, ["all2", "d"])
        assert res.actions["all2"].effect == D
        assert res.actions["d"].effect == A
        assert any(e.startswith("resource.item.vdefault#all2:") for e in res.errors), flag
        assert any(e.startswith("resource.item.vdefault#deny-all:") for e in res.errors), flag


def test_fused_condition_errors_are_those_of_leaf_by_leaf_evaluation() -> None:
    """Errors (and effects) of the fused fast path equal those of Cerbos' leaf-by-leaf,
    left-to-right, short-circuiting order (which strict evaluation uses), on every input."""
    eng = PolicyEngine.from_directory(BUNDLES / "fused")
    strict = PolicyEngine.from_directory(BUNDLES / "fused", strict_evaluation=True)
    p = {"id": "u", "roles": ["user"], "attr": {}}
    actions = ["all2", "any2", "nested", "d"]
    for r in _fused_resources():
        fast, slow = eng.check(p, r, actions), strict.check(p, r, actions)
        assert sorted(fast.errors) == sorted(slow.errors), r
        if not slow.errors:
            assert fast.actions == slow.actions, r


def test_scope_of_another_kind_falls_back_to_the_kinds_ancestor_policies(tmp_path: Path) -> None:
    """Scope a.b exists (k2 has a policy there) but k1 has none: Cerbos evaluates k1's
    policies in a and the root, reported under resource.k1.vdefault/a.b (not NO_MATCH)."""
    head = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  version: default\n"
    allow = "  rules:\n    - actions: [read]\n      roles: [user]\n      effect: EFFECT_ALLOW\n"
    for name, kind, scope in [("k1", "k1", ""), ("k1a", "k1", "a"), ("k2", "k2", "")]:
        (tmp_path / f"{name}.yaml").write_text(
            head + f"  resource: {kind}\n  scope: '{scope}'\n" + allow
        )
    for scope in ("a", "a.b"):
        (tmp_path / f"k2_{scope}.yaml").write_text(
            head + f"  resource: k2\n  scope: {scope}\n" + allow
        )
    eng = PolicyEngine.from_directory(tmp_path)
    p = {"id": "u", "roles": ["user"], "attr": {}}
    res = eng.check(p, {"kind": "k1", "id": "1", "scope": "a.b", "attr": {}}, ["read", "x"])
    assert res.actions["read"] == ActionResult(A, "resource.k1.vdefault/a.b", "rule-001", "a")
    assert res.actions["x"] == ActionResult(D, "resource.k1.vdefault/a.b", None, "")
    res = eng.check(p, {"kind": "k1", "id": "1", "scope": "zz", "attr": {}}, ["read"])
    assert res.actions["read"].policy == "NO_MATCH"
