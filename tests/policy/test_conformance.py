"""Cerbos conformance details found with real-world policy stores (each also compared with the
stock PDP in test_differential.py when the binary is available)."""

from __future__ import annotations

from pathlib import Path

from streams.policy import PolicyEngine

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
