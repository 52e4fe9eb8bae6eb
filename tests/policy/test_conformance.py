"""Cerbos conformance details found with real-world policy stores (each also compared with the
stock PDP in test_differential.py when the binary is available)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.policy import PolicyCompileError, PolicyEngine

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
