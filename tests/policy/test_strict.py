"""`strict_evaluation=True`: a condition that fails to evaluate (error or non-boolean) while an
action is decided makes that action DENY, attributed to the policy and rule of the failing
condition; the same bundle in the default (lenient) mode treats it as false."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.policy import PolicyEngine
from streams.policy.model import EFFECT_ALLOW, EFFECT_DENY, ActionResult

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
KEY = "resource.doc.vdefault"

DOC = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  importDerivedRoles: [dr]
  rules:
    - name: broken-allow            # errors when P.attr.missing is absent
      actions: ["read"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: P.attr.missing.x == 1
    - name: ok-allow
      actions: ["read", "write", "list"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          any:
            of:
              - expr: P.attr.flag == true
              - expr: P.attr.nope == "z"       # only evaluated when flag is not true
    - name: non-bool
      actions: ["share"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: P.attr.flag
    - name: fused-hidden
      actions: ["audit"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          all:
            of:
              - expr: P.attr.nope == "z"       # error, then short-circuit
              - expr: P.attr.flag == false
    - name: owner-edit
      actions: ["edit"]
      derivedRoles: ["owner"]
      effect: EFFECT_ALLOW
    - name: anyone-edit
      actions: ["edit"]
      roles: ["user"]
      effect: EFFECT_ALLOW
    - name: deny-list
      actions: ["list"]
      roles: ["admin"]
      effect: EFFECT_DENY
      condition:
        match:
          expr: R.attr.secret.level > 1
"""

DR = """
apiVersion: api.cerbos.dev/v1
derivedRoles:
  name: dr
  definitions:
    - name: owner
      parentRoles: ["user"]
      condition:
        match:
          expr: R.attr.owner.id == P.id
"""


@pytest.fixture
def engines(make_bundle: Callable[[dict[str, str]], Path]) -> tuple[PolicyEngine, PolicyEngine]:
    root = make_bundle({"doc.yaml": DOC, "dr.yaml": DR})
    return (
        PolicyEngine.from_directory(root),
        PolicyEngine.from_directory(root, strict_evaluation=True),
    )


def _check(engine: PolicyEngine, attr: dict[str, Any], actions: list[str], **kw: Any) -> Any:
    roles = kw.pop("roles", ["user"])
    res = kw.pop("resource_attr", {})
    return engine.check(
        {"id": "u", "roles": roles, "attr": attr},
        {"kind": "doc", "id": "1", "attr": res},
        actions,
        now=NOW,
        **kw,
    )


def test_error_under_allow_rule_denies_in_strict_mode_only(engines: Any) -> None:
    lenient, strict = engines
    attr = {"flag": True}
    got = _check(lenient, attr, ["read"])
    assert got.actions["read"] == ActionResult(EFFECT_ALLOW, KEY, "ok-allow", "")
    got = _check(strict, attr, ["read", "write"])
    assert got.actions["read"] == ActionResult(EFFECT_DENY, KEY, "broken-allow", "")
    # `write` never consults broken-allow: unaffected.
    assert got.actions["write"] == ActionResult(EFFECT_ALLOW, KEY, "ok-allow", "")
    # The derived role `owner` is evaluated for the effective derived roles of every check
    # (its error is reported) but is not consulted for `read`/`write`.
    assert [e.split(":")[0] for e in got.errors] == ["derived role dr/owner", f"{KEY}#broken-allow"]


def test_short_circuit_defines_what_was_evaluated(engines: Any) -> None:
    _, strict = engines
    # flag true: `any` stops before the erroring leaf.
    assert _check(strict, {"flag": True}, ["write"]).allowed("write")
    # flag false: the second leaf is evaluated and errors.
    got = _check(strict, {"flag": False}, ["write"])
    assert got.actions["write"] == ActionResult(EFFECT_DENY, KEY, "ok-allow", "")
    assert [e.split(":")[0] for e in got.errors if e.startswith(KEY)] == [f"{KEY}#ok-allow"]


def test_fused_conditions_do_not_hide_errors(engines: Any) -> None:
    lenient, strict = engines
    # Lenient: the fused `(error) && (true)` is an error, i.e. false; no allow.
    assert not _check(lenient, {"flag": False}, ["audit"]).allowed("audit")
    got = _check(strict, {"flag": False}, ["audit"])
    assert got.actions["audit"] == ActionResult(EFFECT_DENY, KEY, "fused-hidden", "")
    # `(error) && false` is plain false for a fused program: strict mode evaluates leaf by
    # leaf and still sees the error.
    got = _check(strict, {"flag": True}, ["audit"])
    assert got.actions["audit"] == ActionResult(EFFECT_DENY, KEY, "fused-hidden", "")


def test_non_boolean_result(engines: Any) -> None:
    lenient, strict = engines
    assert _check(lenient, {"flag": "yes"}, ["share"]).actions["share"].rule is None
    got = _check(strict, {"flag": "yes"}, ["share"])
    assert got.actions["share"] == ActionResult(EFFECT_DENY, KEY, "non-bool", "")
    assert any("not bool" in e for e in got.errors)


def test_derived_role_error_is_attributed_to_the_rule_using_it(engines: Any) -> None:
    lenient, strict = engines
    assert _check(lenient, {}, ["edit"]).actions["edit"].rule == "anyone-edit"
    got = _check(strict, {}, ["edit"])
    assert got.actions["edit"] == ActionResult(EFFECT_DENY, KEY, "owner-edit", "")
    ok = _check(strict, {}, ["edit"], resource_attr={"owner": {"id": "u"}})
    assert ok.actions["edit"] == ActionResult(EFFECT_ALLOW, KEY, "owner-edit", "")


def test_error_in_another_roles_deny_rule_also_denies(engines: Any) -> None:
    lenient, strict = engines
    attr = {"flag": True}
    assert _check(lenient, attr, ["list"], roles=["admin", "user"]).allowed("list")
    got = _check(strict, attr, ["list"], roles=["admin", "user"])
    assert got.actions["list"] == ActionResult(EFFECT_DENY, KEY, "deny-list", "")
    # No error: the same result as lenient mode.
    ok = _check(
        strict, attr, ["list"], roles=["admin", "user"], resource_attr={"secret": {"level": 0}}
    )
    assert ok.actions["list"] == ActionResult(EFFECT_ALLOW, KEY, "ok-allow", "")


def test_exact_per_action_with_condition_cache_and_memo(engines: Any) -> None:
    """The per-check cache and the memo replay whether a condition errored, so every action
    that consults it is denied, in any order, on hits as on misses."""
    lenient, strict = engines
    memo = strict.new_memo(now=NOW)
    cases = [
        ({"flag": True}, ["write", "read", "read"]),
        ({"flag": False}, ["audit", "write", "read", "share", "edit"]),
        ({"flag": True}, ["read", "write", "audit", "edit", "list"]),
    ]
    for _ in range(2):
        for attr, actions in cases:
            plain = _check(strict, attr, actions)
            with_memo = _check(strict, attr, actions, memo=memo)
            assert with_memo.actions == plain.actions
            assert with_memo.errors == plain.errors
    assert memo.hits > 0
    # Lenient results never name a rule for an action that strict mode denies for an error
    # unless that rule decided anyway.
    for attr, actions in cases:
        lax, tight = _check(lenient, attr, actions), _check(strict, attr, actions)
        for a in actions:
            if tight.actions[a] != lax.actions[a]:
                assert tight.actions[a].effect == EFFECT_DENY and tight.errors


def test_default_bundle_is_unchanged_without_errors(engine: PolicyEngine) -> None:
    from .conftest import POLICIES, principal

    strict = PolicyEngine.from_directory(POLICIES, strict_evaluation=True)
    actions = ["read", "write", "delete", "share", "invoke", "admin"]
    for roles in (("employee",), ("admin",), ("agent", "employee")):
        for p in (principal("alice", roles), principal("bob", roles, risk={"level": "HIGH"})):
            for res in ({"kind": "document", "id": "d", "attr": {"owner": "alice"}},):
                a = engine.check(p, res, actions, now=NOW)
                b = strict.check(p, res, actions, now=NOW)
                assert not a.errors and not b.errors
                assert a.actions == b.actions
