"""Compile errors are data (file, path, message), and every error of a bundle is reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streams.policy import CompileIssue, PolicyCompileError, PolicyEngine

HEADER = "apiVersion: api.cerbos.dev/v1\n"

BAD_RULES = (
    HEADER
    + """
resourcePolicy:
  resource: doc
  version: default
  importDerivedRoles: [missing_set]
  variables:
    local:
      a: V.b
      b: V.a
  rules:
    - actions: ["read"]
      roles: ["a"]
      effect: EFFECT_ALLOW
    - actions: ["read"]
      effect: EFFECT_ALLOW
    - actions: ["read"]
      roles: ["a"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: P.attr.x ==
    - actions: ["read"]
      roles: ["a"]
      effect: EFFECT_ALLOW
      output:
        expr: "1 +"
    - actions: ["read"]
      roles: ["a"]
      effect: EFFECT_ALLOW
      condition:
        match:
          all:
            of:
              - expr: "true"
              - any:
                  of:
                    - expr: V.nope
    - actions: ["read"]
      derivedRoles: ["ghost"]
      effect: EFFECT_ALLOW
    - actions: ["view:[x"]
      roles: ["a"]
      effect: EFFECT_ALLOW
    - actions: ["read"]
      roles: ["a"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: C.undefined_constant
"""
)

BAD_DERIVED = (
    HEADER
    + """
derivedRoles:
  name: dr
  definitions:
    - name: x
      parentRoles: ["a"]
      condition:
        match:
          expr: "1 +"
"""
)

# A shape error (a required field is missing): refused before compiling, like Cerbos.
BAD_DERIVED_SHAPE = HEADER + "derivedRoles: {name: dr2, definitions: [{name: y}]}\n"

EXPECTED = {
    ("bad.yaml", "resourcePolicy.importDerivedRoles[0]"),
    ("bad.yaml", "resourcePolicy.variables.local.a"),
    ("bad.yaml", "resourcePolicy.variables.local.b"),
    ("bad.yaml", "resourcePolicy.rules[1]"),
    ("bad.yaml", "resourcePolicy.rules[2].condition.match.expr"),
    ("bad.yaml", "resourcePolicy.rules[3].output.expr"),
    ("bad.yaml", "resourcePolicy.rules[4].condition.match.all.of[1].any.of[0].expr"),
    ("bad.yaml", "resourcePolicy.rules[5].derivedRoles[0]"),
    ("bad.yaml", "resourcePolicy.rules[6].actions[0]"),
    ("bad.yaml", "resourcePolicy.rules[7].condition.match.expr"),
    ("sub/dr.yaml", "derivedRoles.definitions[0].condition.match.expr"),
    ("scoped.yaml", "resourcePolicy.scope"),
}


def test_all_errors_at_once(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    root = make_bundle(
        {
            "bad.yaml": BAD_RULES,
            "sub/dr.yaml": BAD_DERIVED,
            "scoped.yaml": HEADER + "resourcePolicy:\n  resource: other\n  version: default\n"
            "  scope: a.b\n  rules: []\n",
        }
    )
    with pytest.raises(PolicyCompileError) as info:
        PolicyEngine.from_directory(root)
    errors = info.value.errors
    assert all(isinstance(e, CompileIssue) and e.message for e in errors)
    got = {(e.file, e.path) for e in errors}
    assert got >= EXPECTED, EXPECTED - got
    text = str(info.value)
    assert "bad.yaml: resourcePolicy.rules[2].condition.match.expr: invalid CEL" in text
    assert "variables form a cycle" in text
    assert "missing ancestor policy resource.other.vdefault/a" in text


def test_files_that_do_not_load_are_reported_alone(
    make_bundle: Callable[[dict[str, str]], Path],
) -> None:
    """Like Cerbos: parse and shape errors of every file (and nothing else) stop the store
    before compiling, so a broken file does not cascade into errors of the files using it."""
    root = make_bundle(
        {
            "bad.yaml": BAD_RULES,  # compile errors: not reported while files fail to load
            "sub/dr2.yaml": BAD_DERIVED_SHAPE,
            "broken.yaml": HEADER + "resourcePolicy: [unclosed\n",
            "shape.yaml": HEADER + "resourcePolicy:\n  resource: s\n  version: default\n"
            "  rules: [{actions: [a], roles: [r], effect: EFFECT_MAYBE}]\n",
        }
    )
    with pytest.raises(PolicyCompileError) as info:
        PolicyEngine.from_directory(root)
    assert {(e.file, e.path) for e in info.value.errors} == {
        ("sub/dr2.yaml", "derivedRoles.definitions[0].parentRoles"),
        ("broken.yaml", ""),
        ("shape.yaml", "resourcePolicy.rules[0].effect"),
    }


@pytest.mark.parametrize(
    ("doc", "path", "fragment"),
    [
        ("principalPolicy: {version: default}", "principalPolicy.principal", "required"),
        ("resourcePolicy: {version: default}", "resourcePolicy.resource", "required"),
        (
            "resourcePolicy: {resource: d, version: default, scopePermissions: SOMETHING}",
            "resourcePolicy.scopePermissions",
            "invalid enum value 'SOMETHING'",
        ),
        (
            "rolePolicy: {role: r, scope: a, rules: [{resource: d}]}",
            "rolePolicy.rules[0].allowActions",
            "required",
        ),
        (
            "exportVariables: {name: ev, definitions: {a: V.b, b: V.a}}",
            "exportVariables.definitions.a",
            "variables form a cycle",
        ),
        (
            "exportVariables: {name: ev, definitions: {a: 'P.attr.x +'}}",
            "exportVariables.definitions.a",
            "invalid CEL",
        ),
        (
            "resourcePolicy: {resource: d, version: default, variables: {import: [nope]}}",
            "resourcePolicy.variables.import[0]",
            "exportVariables 'nope' not found",
        ),
        (
            "principalPolicy: {principal: p, version: default, rules: [{resource: d, actions: "
            "[{action: a, effect: EFFECT_ALLOW, output: {when: {ruleActivated: '1 +'}}}]}]}",
            "principalPolicy.rules[0].actions[0].output.when.ruleActivated",
            "invalid CEL",
        ),
        (
            "resourcePolicy: {resource: d, version: 'bad version'}",
            "resourcePolicy.version",
            "does not match regex pattern",
        ),
    ],
)
def test_single_errors(
    make_bundle: Callable[[dict[str, str]], Path], doc: str, path: str, fragment: str
) -> None:
    root = make_bundle({"p.yaml": HEADER + doc + "\n"})
    with pytest.raises(PolicyCompileError) as info:
        PolicyEngine.from_directory(root)
    assert any(e.path == path and fragment in e.message for e in info.value.errors), info.value


def test_duplicate_policy(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    doc = HEADER + "resourcePolicy: {resource: d, version: default, rules: []}\n"
    root = make_bundle({"a.yaml": doc, "b.yaml": doc})
    with pytest.raises(PolicyCompileError, match="already defined in a.yaml"):
        PolicyEngine.from_directory(root)


def test_import_and_local_duplicate(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    root = make_bundle(
        {
            "ev.yaml": HEADER + "exportVariables: {name: ev, definitions: {a: 'true'}}\n",
            "p.yaml": HEADER + "resourcePolicy: {resource: d, version: default, variables: "
            "{import: [ev], local: {a: 'false'}}}\n",
        }
    )
    with pytest.raises(PolicyCompileError, match="multiple definitions"):
        PolicyEngine.from_directory(root)


def test_disabled_policy_is_ignored(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    root = make_bundle(
        {
            "p.yaml": HEADER + "disabled: true\nresourcePolicy: {resource: d, version: default, "
            "rules: [{actions: ['*'], roles: ['*'], effect: EFFECT_ALLOW}]}\n",
        }
    )
    engine = PolicyEngine.from_directory(root)
    assert engine.policy_keys == []


def test_policy_keys_are_sanitised_as_cerbos_reports_them() -> None:
    from streams.policy.compiler import policy_key, principal_policy_key

    assert policy_key("album:object", "default", "") == "resource.album_object.vdefault"
    assert policy_key("doc", "1.0", "acme.hr") == "resource.doc.v1.0/acme.hr"
    assert principal_policy_key("a@b", "default", "") == "principal.a_b.vdefault"
