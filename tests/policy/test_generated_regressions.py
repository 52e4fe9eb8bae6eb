"""Differences the generated differential suite (tests/policy/gen/) found between Vigil and the
stock Cerbos PDP 0.55, each minimised to a hand-written store and request, and answered by both.

Fixed ones must stay equal; the open ones are `xfail(strict=True)` with the difference named
(they start passing, and fail the suite, when the engine is fixed: then drop the mark).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from streams.policy.api import build_engine
from tests.external_tools import cerbos_binary
from tests.policy.gen.runner import StoreRun, compare


def _differences(
    tmp_path: Path,
    files: dict[str, str],
    requests: list[dict[str, Any]],
    outputs_unordered: bool = False,
) -> list[str]:
    root = tmp_path / "store"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    engine = build_engine(root)
    run = compare(cerbos_binary(), engine, root, tmp_path, {}, requests, StoreRun(0))
    if outputs_unordered:
        return [
            str(d) for d in run.differences if _sorted_outputs(d.cerbos) != _sorted_outputs(d.vigil)
        ]
    return [str(d) for d in run.differences]


def _sorted_outputs(result: dict[str, Any]) -> dict[str, Any]:
    outputs = sorted(result.get("outputs", []), key=lambda o: json.dumps(o, sort_keys=True))
    return {**result, "outputs": outputs}


def _request(actions: list[str], roles: list[str], **resource: Any) -> dict[str, Any]:
    return {
        "principal": {"id": "u", "roles": roles},
        "resources": [{"resource": {"kind": "doc", "id": "r", **resource}, "actions": actions}],
        "includeMeta": True,
    }


#: Output expressions that fail, with cel-go's message as the stock PDP reports it in
#: `outputs[].error` (Vigil rewrites cel-cpp's messages: streams/policy/celerrors.py).
FAILING_OUTPUTS = {
    "R.attr.score": "no such key: score",
    "R.attr.m.tier": "no such key: tier",
    'R.attr["x"]': "no such key: x",
    "string(R.attr.m)": "no such overload: string(map)",
    "string(R.attr.l)": "no such overload: string(list)",
    "string(R.attr.n)": "no such overload: string(null_type)",
    "hasIntersection(R.attr.s, R.attr.l)": "no such overload: hasIntersection(string, list)",
    "size(R.attr.a)": "no such overload: size",
    "R.attr.a.lowerAscii()": "no such overload: lowerAscii(double)",
    "R.attr.s + 1": "no such overload",
    '"x" in R.attr.a': "no such overload",
    "int(R.attr.s)": "type conversion error from 'string' to 'int'",
    "R.attr.l[3]": "index out of bounds: 3",
    "R.attr.l[R.attr.s]": "unsupported index type 'string' in list",
    "int(R.attr.a) / 0": "division by zero",
}


def test_output_errors_match_stock_cerbos(tmp_path: Path) -> None:
    """A failing output is `{"src", "action", "error"}` without `val`, with cel-go's text."""
    rules = "".join(
        f"""
            - name: o{i}
              actions: ["a{i}"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              output:
                when:
                  ruleActivated: '{expr}'
        """
        for i, expr in enumerate(FAILING_OUTPUTS)
    )
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:""" + textwrap.indent(textwrap.dedent(rules), "  " * 5)
    attr = {"a": 1, "m": {}, "l": [1], "s": "x", "n": None}
    req = _request([f"a{i}" for i in range(len(FAILING_OUTPUTS))], ["user"], attr=attr)
    assert _differences(tmp_path, {"doc.yaml": policy}, [req]) == []
    outputs = (
        build_engine(tmp_path / "store")
        .check(req["principal"], req["resources"][0]["resource"], req["resources"][0]["actions"])
        .outputs
    )
    assert [o.error for o in outputs] == list(FAILING_OUTPUTS.values())
    assert all(o.val is None for o in outputs)


def test_dot_scope_is_empty_in_cel(tmp_path: Path) -> None:
    """A scope sent as "." is "" in CEL, for the principal as for the resource (Vigil kept
    the principal's "." in `P.scope`; found by seed 7)."""
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:
            - actions: ["read"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              output:
                when:
                  ruleActivated: >-
                    P.scope + "|" + R.scope + "|" + request.principal.scope + "|"
                    + request.resource.scope
            - actions: ["write"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: P.scope == "" && R.scope == ""
    """
    requests = [
        {**_request(["read", "write"], ["u"], **rs), "principal": {"id": "u", "roles": ["u"], **ps}}
        for ps in ({"scope": "."}, {})
        for rs in ({"scope": "."}, {})
    ]
    assert _differences(tmp_path, {"doc.yaml": policy}, requests) == []
    engine = build_engine(tmp_path / "store")
    res = engine.check(
        {"id": "u", "roles": ["u"], "scope": "."}, {"kind": "doc", "id": "r"}, ["read", "write"]
    )
    assert res.outputs[0].val == "|||"
    assert res.allowed("write")


def test_output_once_per_matching_action_pattern(tmp_path: Path) -> None:
    """Stock Cerbos evaluates a rule's output once per rule-table row that matches: per action
    pattern of the rule matching the action (`*` and `share:*` both match share:link: two
    outputs) and per role entry matching the role or its parent roles (role policies)."""
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:
            - name: r
              actions: ["share:*", "*"]
              roles: ["user"]
              effect: EFFECT_ALLOW
              output:
                when:
                  ruleActivated: '"hit"'
    """
    req = _request(["share:link"], ["user"])
    assert _differences(tmp_path, {"doc.yaml": policy}, [req]) == []


OUTPUT_ROWS = {
    "dr.yaml": """
    apiVersion: api.cerbos.dev/v1
    derivedRoles:
      name: dr
      definitions:
        - name: anyone
          parentRoles: ["user", "guest"]
""",
    "doc.yaml": """
    apiVersion: api.cerbos.dev/v1
    resourcePolicy:
      resource: doc
      version: default
      importDerivedRoles: [dr]
      rules:
        - name: r
          actions: ["share:*", "*"]
          roles: ["user"]
          effect: EFFECT_ALLOW
          output:
            when:
              ruleActivated: '"hit"'
        - name: g
          actions: ["view"]
          roles: ["user", "guest", "*"]
          effect: EFFECT_ALLOW
          condition:
            match:
              expr: R.attr.x == 1
          output:
            when:
              ruleActivated: '"g"'
              conditionNotMet: '"nm"'
        - name: d
          actions: ["delete"]
          roles: ["user", "guest"]
          effect: EFFECT_DENY
          output:
            when:
              ruleActivated: '"d"'
        - name: e
          actions: ["edit"]
          derivedRoles: ["anyone"]
          effect: EFFECT_ALLOW
          output:
            when:
              ruleActivated: '"dr"'
""",
    "acme/r1.yaml": """
    apiVersion: api.cerbos.dev/v1
    rolePolicy:
      role: r1
      scope: acme
      parentRoles: [user, guest]
      rules:
        - resource: doc
          allowActions: ["*"]
""",
}


def test_output_once_per_rule_table_row(tmp_path: Path) -> None:
    """One output per matching row: per role entry of the rule in the role and its parent
    roles (a `*` entry makes one row), per parent role of a derived role; a DENY row ends the
    walk after its first output; conditionNotMet outputs likewise per row."""
    requests = [
        _request(["share:link", "view", "delete", "edit"], roles, attr={"x": x}, scope="acme")
        for roles in (["r1"], ["user", "guest"], ["guest"])
        for x in (1, 2)
    ]
    assert _differences(tmp_path, OUTPUT_ROWS, requests) == []
    res = build_engine(tmp_path / "store").check(
        {"id": "u", "roles": ["r1"]}, {"kind": "doc", "id": "r", "scope": "acme"}, ["share:link"]
    )
    assert [o.val for o in res.outputs] == ["hit", "hit"]


def test_constants_and_variables_are_dyn(tmp_path: Path) -> None:
    """`C.n in [0, 1]` with n = 1.0 compiles and is true, as in Cerbos where `C` and `V` are
    maps of dyn (Vigil inlined `1.0 in [0, 1]`, which its checker refused)."""
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          constants:
            local:
              n: 1.0
              m: {"k": 2}
          variables:
            local:
              half: R.attr.a / 2.0
          rules:
            - actions: ["read"]
              roles: ["user"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: C.n in [0, 1]
            - actions: ["write"]
              roles: ["user"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  all:
                    of:
                      - expr: C.n < 2 && C.m.k == 2 && C.m.k in [2]
                      - expr: V.half < 3 && V.half in [1]
    """
    reqs = [_request(["read", "write"], ["user"], attr={"a": a}) for a in (2, 2.5, 8)]
    assert _differences(tmp_path, {"doc.yaml": policy}, reqs) == []
    engine = build_engine(tmp_path / "store")
    res = engine.check(
        {"id": "u", "roles": ["user"]},
        {"kind": "doc", "id": "r", "attr": {"a": 2}},
        ["read", "write"],
    )
    assert res.allowed("read") and res.allowed("write")


GEN_ROLE_SCOPE = Path(__file__).parent / "bundles" / "gen_role_scope"


def test_role_policy_of_an_ancestor_scope(tmp_path: Path) -> None:
    """The generated store (`gen_role_scope`) where stock Cerbos ALLOWed view:public by the root
    resource policy and Vigil DENYed by the acme role policy: its rules name `album:photo`,
    which Cerbos 0.55 never matches (below)."""
    assert _bundle_differences(tmp_path, GEN_ROLE_SCOPE) == []


KIND_PATTERNS = ["album:photo", "album_photo", "album:*", "album*", "album_*", "*", "doc"]


@pytest.mark.parametrize("pattern", KIND_PATTERNS)
def test_principal_and_role_rules_match_the_sanitised_kind(tmp_path: Path, pattern: str) -> None:
    """Cerbos 0.55 looks principal- and role-policy rules up by the sanitised kind
    (`album:photo` -> `album_photo`); a principal rule's plain name is sanitised as well, a role
    rule's is not, and globs are matched as written (the minimised `gen_role_scope`)."""
    files = {
        "doc.yaml": """
            apiVersion: api.cerbos.dev/v1
            resourcePolicy:
              resource: "album:photo"
              version: default
              rules:
                - actions: ["view", "edit"]
                  effect: EFFECT_ALLOW
                  roles: ["*"]
        """,
        "acme/r1.yaml": f"""
            apiVersion: api.cerbos.dev/v1
            rolePolicy:
              role: r1
              scope: acme
              rules:
                - resource: "{pattern}"
                  allowActions: ["view"]
        """,
        "bob.yaml": f"""
            apiVersion: api.cerbos.dev/v1
            principalPolicy:
              principal: bob
              version: default
              rules:
                - resource: "{pattern}"
                  actions:
                    - action: edit
                      effect: EFFECT_DENY
        """,
    }
    requests = [
        {
            "principal": {"id": pid, "roles": ["r1"]},
            "resources": [
                {
                    "resource": {"kind": "album:photo", "id": "r", "scope": "acme"},
                    "actions": ["view", "edit"],
                }
            ],
            "includeMeta": True,
        }
        for pid in ("alice", "bob")
    ]
    assert _differences(tmp_path, files, requests) == []
    engine = build_engine(tmp_path / "store")
    kind = {"kind": "album:photo", "id": "r", "scope": "acme"}
    role_narrows = pattern not in ("album:photo", "album:*", "doc")
    principal_denies = pattern not in ("album:*", "doc")
    assert engine.check({"id": "alice", "roles": ["r1"]}, kind, ["edit"]).allowed("edit") is (
        not role_narrows
    )
    res = engine.check({"id": "bob", "roles": ["r1"]}, kind, ["edit"])
    assert res.allowed("edit") is (not principal_denies and not role_narrows)


def _bundle_differences(tmp_path: Path, bundle: Path) -> list[str]:
    paths = sorted(p for p in bundle.rglob("*") if p.is_file())
    files = {str(p.relative_to(bundle)): p.read_text() for p in paths}
    req = json.loads((bundle.parent / f"{bundle.name}.request.json").read_text())
    return _differences(tmp_path, files, [req])


PRINCIPAL_READS_EDR = {
    "dr.yaml": """
        apiVersion: api.cerbos.dev/v1
        derivedRoles:
          name: dr
          definitions:
            - name: anyone
              parentRoles: ["*"]
    """,
    "doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          importDerivedRoles: [dr]
          rules:
            - actions: ["read", "write"]
              derivedRoles: ["anyone"]
              effect: EFFECT_ALLOW
    """,
    "alice.yaml": """
        apiVersion: api.cerbos.dev/v1
        principalPolicy:
          principal: alice
          version: default
          rules:
            - resource: doc
              actions:
                - action: read
                  effect: EFFECT_ALLOW
                  condition:
                    match:
                      expr: size(runtime.effectiveDerivedRoles) > 0
    """,
}


def _alice(actions: list[str]) -> dict[str, Any]:
    return {**_request(actions, ["user"]), "principal": {"id": "alice", "roles": ["user"]}}


def test_principal_policy_sees_no_derived_roles(tmp_path: Path) -> None:
    """`runtime.effectiveDerivedRoles` is empty in a principal policy when no action was
    evaluated before in the request: read is decided by the resource policy."""
    assert _differences(tmp_path, PRINCIPAL_READS_EDR, [_alice(["read", "write"])]) == []


def test_principal_policy_sees_derived_roles_of_the_previous_action(tmp_path: Path) -> None:
    """Cerbos 0.55 keeps one evaluation context per check; the resource walk sets its
    `effectiveDerivedRoles` to those of each scope it visits, and principal-policy rules read
    whatever the last visit left: `read` after `write` is ALLOWed by principal.alice."""
    assert _differences(tmp_path, PRINCIPAL_READS_EDR, [_alice(["write", "read"])]) == []
    res = build_engine(tmp_path / "store").check(
        {"id": "alice", "roles": ["user"]}, {"kind": "doc", "id": "r"}, ["write", "read"]
    )
    assert res.actions["read"].policy == "principal.alice.vdefault"


#: Two scopes with their own derived roles (`ra` at the root, `rb` in acme); rules of acme
#: and alice's principal rules read `runtime.effectiveDerivedRoles`, in conditions and outputs.
LAST_VISITED_SCOPE = {
    "dra.yaml": """
        apiVersion: api.cerbos.dev/v1
        derivedRoles:
          name: dra
          definitions:
            - name: ra
              parentRoles: ["*"]
    """,
    "drb.yaml": """
        apiVersion: api.cerbos.dev/v1
        derivedRoles:
          name: drb
          definitions:
            - name: rb
              parentRoles: ["*"]
    """,
    "doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          importDerivedRoles: [dra]
          rules:
            - actions: ["x"]
              roles: ["*"]
              effect: EFFECT_ALLOW
            - actions: ["q"]
              derivedRoles: ["ra"]
              effect: EFFECT_ALLOW
    """,
    "acme/doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          scope: acme
          importDerivedRoles: [drb]
          rules:
            - actions: ["y"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: '"ra" in runtime.effectiveDerivedRoles'
            - actions: ["w"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: '"rb" in runtime.effectiveDerivedRoles'
              output:
                when:
                  ruleActivated: runtime.effectiveDerivedRoles
            - actions: ["q2"]
              derivedRoles: ["rb"]
              effect: EFFECT_ALLOW
    """,
    "alice.yaml": """
        apiVersion: api.cerbos.dev/v1
        principalPolicy:
          principal: alice
          version: default
          rules:
            - resource: doc
              actions:
                - action: p
                  effect: EFFECT_ALLOW
                  condition:
                    match:
                      expr: size(runtime.effectiveDerivedRoles) > 0
                  output:
                    when:
                      ruleActivated: runtime.effectiveDerivedRoles
                      conditionNotMet: runtime.effectiveDerivedRoles
                - action: "g*"
                  effect: EFFECT_ALLOW
                  condition:
                    match:
                      expr: '"ra" in runtime.effectiveDerivedRoles'
    """,
}


@pytest.mark.parametrize(
    ("pid", "roles", "scope", "actions"),
    [
        ("u", ["user"], "acme", ["x", "y"]),  # a resource rule sees its own scope's roles
        ("u", ["user"], "acme", ["x", "w"]),
        ("alice", ["user"], "acme", ["x", "p", "w"]),  # the walk of x ended at the root: ra
        ("alice", ["user"], "acme", ["p", "x"]),  # nothing visited yet: empty
        ("alice", ["user"], "acme", ["w", "p"]),  # w ended in acme: rb
        ("alice", ["a", "b"], "acme", ["x", "w", "p"]),  # w visited acme again: rb
        ("alice", ["user"], "", ["x", "p"]),
        ("alice", ["user"], "acme", ["x", "g1", "w", "g2"]),  # g2: the rule's cached result
        ("alice", ["user"], "acme", ["x", "w", "g2", "g1"]),
    ],
)
def test_principal_policy_sees_the_last_visited_scope(
    tmp_path: Path, pid: str, roles: list[str], scope: str, actions: list[str]
) -> None:
    """Principal-policy conditions and outputs read the derived roles of the resource scope
    the walk visited last (in any earlier action); resource rules always read their own
    scope's. Order-dependent in Cerbos, and so in Vigil (streams/policy/engine.py,
    `_Check.edr_scope`)."""
    req = {
        "principal": {"id": pid, "roles": roles},
        "resources": [{"resource": {"kind": "doc", "id": "r", "scope": scope}, "actions": actions}],
        "includeMeta": True,
    }
    assert _differences(tmp_path, LAST_VISITED_SCOPE, [req]) == []


DERIVED_ROLE_READS_RUNTIME = {
    "dr.yaml": """
        apiVersion: api.cerbos.dev/v1
        derivedRoles:
          name: dr
          definitions:
            - name: owner
              parentRoles: ["admin"]
              condition:
                match:
                  expr: size(runtime.effectiveDerivedRoles) == 0
            - name: second
              parentRoles: ["admin"]
              condition:
                match:
                  expr: '"owner" in runtime.effectiveDerivedRoles'
    """,
    "doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          importDerivedRoles: [dr]
          rules:
            - actions: ["view", "edit"]
              derivedRoles: ["owner"]
              effect: EFFECT_ALLOW
              output:
                when:
                  ruleActivated: runtime.effectiveDerivedRoles
            - actions: ["x", "edit"]
              derivedRoles: ["second"]
              effect: EFFECT_ALLOW
            - actions: ["x"]
              roles: ["*"]
              effect: EFFECT_ALLOW
    """,
    "acme/doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          scope: acme
          importDerivedRoles: [dr]
          rules:
            - actions: ["view"]
              derivedRoles: ["owner"]
              effect: EFFECT_ALLOW
            - actions: ["y"]
              roles: ["*"]
              effect: EFFECT_ALLOW
    """,
}


@pytest.mark.parametrize(
    "actions", [["view"], ["x", "view"], ["y", "view", "edit"], ["edit", "x"], ["x", "y", "edit"]]
)
def test_derived_role_condition_reads_runtime(tmp_path: Path, actions: list[str]) -> None:
    """A derived role whose condition reads `runtime.effectiveDerivedRoles` (found by `make
    diff-cerbos`, seed 1056): Cerbos computes a scope's effective derived roles on the walk's
    first visit in the context the previous visit left, and tests a rule's derived role in
    the context of the rule's own scope. `owner` (true while no derived role is in context)
    is effective in acme, but does not hold for acme's rule there; the root then decides."""
    req = _request(actions, ["admin"], scope="acme")
    assert _differences(tmp_path, DERIVED_ROLE_READS_RUNTIME, [req]) == []


DERIVED_ROLE_ROW_CACHE = {
    "dr.yaml": """
        apiVersion: api.cerbos.dev/v1
        derivedRoles:
          name: dr
          definitions:
            - name: trusted
              parentRoles: ["user", "guest"]
              condition:
                match:
                  expr: R.attr.t == true
            - name: anyone
              parentRoles: ["*"]
    """,
    "doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          importDerivedRoles: [dr]
          rules:
            - name: r
              actions: ["a", "b", "c:*"]
              derivedRoles: ["trusted", "anyone"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: R.attr.ok == true
              output:
                when:
                  ruleActivated: '"on"'
                  conditionNotMet: '"off"'
    """,
}


@pytest.mark.parametrize(
    ("actions", "roles"),
    [(["a", "b"], ["user"]), (["b"], ["user"]), (["a", "c:x", "b"], ["user", "guest"])],
)
@pytest.mark.parametrize("attr", [{"t": False, "ok": True}, {"t": True, "ok": False}, {}])
def test_derived_role_row_cached_as_not_met(
    tmp_path: Path, actions: list[str], roles: list[str], attr: dict[str, Any]
) -> None:
    """A rule row whose derived role does not hold is cached by Cerbos as "condition not
    met": no output on that visit, the rule's conditionNotMet output on every later visit of
    the row (another action). Found by the generator with outputs on derived-role rules
    (seeds 3003-3026); decisions are not affected."""
    req = _request(actions, roles, attr=attr)
    # The rule binds each role through two derived roles: the stock PDP visits those rows in
    # Go map order, so one action's outputs come in an order that changes between PDP starts
    # (seen in CI with two roles, and here with one): compare them as a multiset per action.
    assert _differences(tmp_path, DERIVED_ROLE_ROW_CACHE, [req], True) == []


OVERLAPPING_PATTERNS = {
    "dr.yaml": """
        apiVersion: api.cerbos.dev/v1
        derivedRoles:
          name: drs
          definitions:
            - name: dno
              parentRoles: [a, b]
              condition:
                match:
                  expr: R.attr.never == true
    """,
    "doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          importDerivedRoles: [drs]
          rules:
            - name: r1
              actions: ["x*", "*"]
              effect: EFFECT_ALLOW
              derivedRoles: [dno]
              output:
                when:
                  ruleActivated: '"act"'
                  conditionNotMet: '"nm"'
    """,
}


@pytest.mark.parametrize(
    ("roles", "actions", "counts"),
    [
        (["a", "b"], ["xy"], {"xy": 3}),
        (["a"], ["xy"], {"xy": 1}),
        (["a", "b"], ["xy", "xz", "q"], {"xy": 3, "xz": 4, "q": 2}),
    ],
)
def test_derived_role_row_cache_ignores_pattern_and_role(
    tmp_path: Path, roles: list[str], actions: list[str], counts: dict[str, int]
) -> None:
    """Cerbos' "condition not met" cache of a derived-role rule row is keyed without the
    action pattern and the role: of the rows a rule has for an action (patterns x parent
    roles), only the very first visit finds it empty, and every later row gives the
    conditionNotMet output (seed 3015: three copies where Vigil gave two)."""
    req = _request(actions, roles, attr={"never": False})
    assert _differences(tmp_path, OVERLAPPING_PATTERNS, [req], len(roles) > 1) == []
    res = build_engine(tmp_path / "store").check(
        req["principal"], req["resources"][0]["resource"], actions
    )
    found: dict[str, int] = {}
    for o in res.outputs:
        found[o.action] = found.get(o.action, 0) + 1
    assert found == counts


def test_non_key_value_in_a_map_is_false(tmp_path: Path) -> None:
    """cel-go answers `x in m` false when `m` is a map and `x` is null, a list or a map;
    cel-cpp fails with `no such overload` (make diff-cerbos, seed 4027: a derived role
    `!(R.attr.dept in P.attr.tags) && ...` with dept null and tags {} held in Cerbos only).
    The compiler guards such `in`s (streams/policy/celcompat.py)."""
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:
            - actions: ["read"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: '!(R.attr.x in R.attr.m)'
    """
    requests = [
        _request(["read"], ["user"], attr={"x": x, "m": m})
        for x in (None, [1], {}, "a", 1)
        for m in ({}, {"a": 1})
    ]
    assert _differences(tmp_path, {"doc.yaml": policy}, requests) == []


def test_has_on_a_scalar_is_false(tmp_path: Path) -> None:
    """has() on a field of a scalar (`has(R.attr.n.f)` with n a number, string, bool or null)
    is false in cel-go and was an error in cel-cpp; under none.of the error counts as false, so
    Vigil ALLOWed what Cerbos DENYs (found by make diff-cerbos, seed 1004). On a list, or with
    `n` missing, it stays an error in both (streams/policy/presence.py)."""
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:
            - actions: ["read"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  none:
                    of:
                      - expr: '!has(R.attr.n.f)'
    """
    values = (2, "s", True, None, {}, {"f": 1}, [1], [])
    requests = [_request(["read"], ["user"], attr={"n": n}) for n in values]
    requests.append(_request(["read"], ["user"], attr={}))
    assert _differences(tmp_path, {"doc.yaml": policy}, requests) == []


def test_has_on_an_inlined_variable(tmp_path: Path) -> None:
    """`has(V.nf)` of a variable that is a field selection: true where the selection
    evaluates, as in Cerbos' `V` map."""
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          variables:
            local:
              nf: R.attr.n.f
          rules:
            - actions: ["read"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  none:
                    of:
                      - expr: '!has(V.nf)'
    """
    values = (2, "s", True, None, {}, {"f": 1})
    requests = [_request(["read"], ["user"], attr={"n": n}) for n in values]
    requests.append(_request(["read"], ["user"], attr={}))
    assert _differences(tmp_path, {"doc.yaml": policy}, requests) == []
    engine = build_engine(tmp_path / "store")
    res = engine.check(
        {"id": "u", "roles": ["u"]}, {"kind": "doc", "id": "r", "attr": {"n": {"f": 1}}}, ["read"]
    )
    assert res.allowed("read")


#: Variables that evaluate or fail, read through has(), conditions and outputs.
FAILING_VARIABLES = """
    apiVersion: api.cerbos.dev/v1
    resourcePolicy:
      resource: doc
      version: default
      constants:
        local:
          k: 1
      variables:
        local:
          bad: R.attr.missing.x
          good: R.attr.a
          chain: V.bad || true
          chain2: V.bad + 1
          sel: R.attr.m
          nul: R.attr.n
          lst: "[R.attr.missing]"
          usesbad: "has(variables.bad) ? 1 : 2"
      rules:
        - name: r1
          actions: [a1]
          roles: ["*"]
          effect: EFFECT_ALLOW
          condition:
            match:
              expr: has(V.bad)
          output:
            when:
              ruleActivated: V.bad
              conditionNotMet: V.bad
        - name: r2
          actions: [a2]
          roles: ["*"]
          effect: EFFECT_ALLOW
          condition:
            match:
              expr: "!has( V . bad ) // a comment"
          output:
            when:
              ruleActivated: V.chain2
              conditionNotMet: "[V.good, V.chain2]"
        - name: r3
          actions: [a3]
          roles: ["*"]
          effect: EFFECT_ALLOW
          condition:
            match:
              expr: has(variables.good) && has(V.chain) && !has(V.chain2)
          output:
            when:
              ruleActivated: "{'a': V.chain, 'b': has(V.sel), 'c': V.usesbad}"
        - name: r4
          actions: [a4]
          roles: ["*"]
          effect: EFFECT_ALLOW
          condition:
            match:
              expr: has(V.sel.k)
          output:
            when:
              ruleActivated: V.sel.k
              conditionNotMet: V.sel.k
        - name: r5
          actions: [a5]
          roles: ["*"]
          effect: EFFECT_ALLOW
          condition:
            match:
              expr: has(V.nul) && !has(V.lst)
          output:
            when:
              ruleActivated: "[V.nul, has(V.lst)]"
              conditionNotMet: V.lst
        - name: r6
          actions: [a6]
          roles: ["*"]
          effect: EFFECT_ALLOW
          condition:
            match:
              none:
                of:
                  - expr: has(V.bad)
                  - expr: "!has(C.k)"
          output:
            when:
              ruleActivated: "has(constants.k) && has(V.bad) == false"
"""


def test_has_of_a_variable_is_whether_it_evaluates(tmp_path: Path) -> None:
    """Cerbos evaluates a policy's variables up front and leaves a failing one out of `V`:
    `has(V.x)` is whether `x` evaluates (also when `x` is no field selection, where Vigil's
    inlining was a compile error), and an output reading a failing variable fails with
    `undefined field '<name>'` (streams/policy/substitute.py)."""
    attrs = ({"a": 1, "m": {"k": 2}, "n": None}, {"a": 1, "missing": {"x": 5}, "m": {}})
    actions = [f"a{i}" for i in range(1, 7)]
    requests = [_request(actions, ["user"], attr=attr) for attr in attrs]
    assert _differences(tmp_path, {"doc.yaml": FAILING_VARIABLES}, requests) == []
    engine = build_engine(tmp_path / "store")
    res = engine.check(
        {"id": "u", "roles": ["user"]}, requests[0]["resources"][0]["resource"], actions
    )
    assert [res.allowed(a) for a in actions] == [False, True, True, True, True, True]
    # output error texts are not compared by `_differences`; these are the stock PDP's
    assert [(o.action, o.val, o.error) for o in res.outputs] == [
        ("a1", None, "undefined field 'bad'"),
        ("a2", None, "undefined field 'chain2'"),
        ("a3", {"a": True, "b": True, "c": 2}, None),
        ("a4", 2, None),
        ("a5", [None, False], None),
        ("a6", True, None),
    ]
    res = engine.check(
        {"id": "u", "roles": ["user"]}, requests[1]["resources"][0]["resource"], actions
    )
    assert [(o.action, o.error) for o in res.outputs if o.error] == [
        ("a2", "undefined field 'chain2'"),
        ("a4", "no such key: k"),
    ]


def test_undefined_field_function_is_reserved(tmp_path: Path) -> None:
    """The function failing outputs call for a missing variable does not exist for policies."""
    from streams.policy import PolicyCompileError

    (tmp_path / "doc.yaml").write_text(
        FAILING_VARIABLES.replace("V.bad + 1", 'vigil_internal_undefined_field("x")')
    )
    with pytest.raises(PolicyCompileError, match="undeclared reference"):
        build_engine(tmp_path)


def test_double_ordered_against_int_compiles(tmp_path: Path) -> None:
    """cel-go declares cross-type numeric ordering (`double < int`), so Cerbos compiles
    `R.attr.a / 2.0 < 3`; Vigil wraps the left operand in `dyn()` (streams/policy/celcompat.py)."""
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:
            - actions: ["read"]
              roles: ["user"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: R.attr.a / 2.0 < 3
    """
    requests = [_request(["read"], ["user"], attr={"a": a}) for a in (2, 8)]
    assert _differences(tmp_path, {"doc.yaml": policy}, requests) == []


#: Orderings between int, uint and double (statically typed: the checker sees both types), at
#: the edges of the ranges, with NaN and infinities, in conditions (under `none`, so an error is
#: told apart from false) and outputs, and the transformMap/transformMapEntry macros on lists and
#: maps (with and without a filter, nested, duplicate keys, int-keyed results in outputs).
MIXED_EXPRESSIONS = [
    "R.attr.d / 2.0 < 3",
    "R.attr.d / 2.0 >= 3",
    "1.5 < 2",
    "2u < 3",
    "-1 < 1u",
    "1u > -1",
    "-1.0 < 0u",
    "0u > -0.5",
    "9223372036854775807 < 9223372036854775808.0",
    "9223372036854775807 >= 9223372036854775808.0",
    "-9223372036854775808 <= -9223372036854775808.0",
    "-9223372036854775808 > -9223372036854775809.0",
    "18446744073709551615u < 18446744073709551616.0",
    "18446744073709551615u >= 1.8446744073709552e19",
    "9223372036854775807 < 9223372036854775808u",
    "9223372036854775807 > 9223372036854775806u",
    "double(R.attr.s) < 1",
    "double(R.attr.s) >= 1",
    "double(R.attr.s) > 1u",
    "double(R.attr.s) <= 1u",
    "1 < double(R.attr.s)",
    "1 >= double(R.attr.s)",
    "1.0 / 0.0 > 9223372036854775807",
    "-1.0 / 0.0 < -9223372036854775808",
    "int(R.attr.d) < 2.5",
    "uint(R.attr.d) > 1.5",
    "int(R.attr.d) <= uint(R.attr.d)",
    "R.attr.l.exists(x, x / 2.0 > 1)",
    "double(R.attr.s) < 1.0",
    "double(R.attr.s) >= 1.0",
    "size(R.attr.m.transformMap(k, v, v)) == size(R.attr.m)",
    '"a" in R.attr.m.transformMapEntry(k, v, {k: v})',
]
TRANSFORMS = [
    "R.attr.m.transformMap(k, v, v * 2.0)",
    "R.attr.m.transformMap(k, v, v > 1.0, k)",
    "R.attr.l.transformMap(i, v, v)",
    "R.attr.l.transformMap(i, v, i > 0, v + 1.0)",
    'R.attr.m.transformMapEntry(k, v, {k + "_x": v})',
    "R.attr.l.transformMapEntry(i, v, {string(v): i})",
    'R.attr.l.transformMapEntry(i, v, v > 1.0, {"k": i})',
    'R.attr.l.transformMapEntry(i, v, {"k": i})',
    'R.attr.m.transformMap(k, v, v)["a"]',
    '"x.transformMap(k, v, 1)"',
    "R.attr.mm.transformMap(k, v, v.transformMap(a, b, b + 1.0))",
    '{"a": [1, 2]}.transformMap(k, v, v.transformMapEntry(i, x, {string(x): i}))',
]
MIXED_ATTRS = [
    {"d": 4, "s": "NaN", "l": [1, 2, 3], "m": {"a": 1, "b": 2}, "mm": {"x": {"y": 1}}},
    {"d": 8.5, "s": "0.5", "l": [2, 2], "m": {"a": 3}, "mm": {}},
    {"d": -3, "s": "inf", "l": [], "m": {}, "mm": {"x": {}}},
    {"d": 1e300, "s": "-inf", "l": [0.5], "m": {"a": "x"}, "mm": {"x": {"y": "z"}}},
    {},
]


def _output_rule(name: str, expr: str) -> str:
    quoted = expr.replace("'", "''")
    return f"""
            - name: {name}
              actions: ["{name}"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              output:
                when:
                  ruleActivated: '{quoted}'"""


def _none_rule(name: str, expr: str) -> str:
    quoted = expr.replace("'", "''")
    return f"""
            - name: {name}
              actions: ["{name}"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  none:
                    of:
                      - expr: '{quoted} == false'"""


def test_mixed_numeric_ordering_and_transform_map_match_stock_cerbos(tmp_path: Path) -> None:
    """Every expression compiles in both; conditions decide and outputs evaluate the same
    (values, or an error in both) for valid, edge, NaN, infinite, empty and missing inputs."""
    rules = [_output_rule(f"o{i}", e) for i, e in enumerate(MIXED_EXPRESSIONS + TRANSFORMS)]
    rules += [_none_rule(f"c{i}", e) for i, e in enumerate(MIXED_EXPRESSIONS)]
    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:""" + "".join(rules)
    outputs = [f"o{i}" for i in range(len(MIXED_EXPRESSIONS + TRANSFORMS))]
    conditions = [f"c{i}" for i in range(len(MIXED_EXPRESSIONS))]
    requests = [
        _request(actions, ["user"], attr=attr)
        for attr in MIXED_ATTRS
        for actions in (outputs, conditions)
    ]
    assert _differences(tmp_path, {"doc.yaml": policy}, requests) == []
    res = build_engine(tmp_path / "store").check(
        {"id": "u", "roles": ["user"]},
        {"kind": "doc", "id": "r", "attr": MIXED_ATTRS[0]},
        conditions + outputs,
    )
    t, f = True, False
    # as cel-go: 2**63 - 1 and 2**63 are one double; NaN is unordered (false, no error)
    assert [res.allowed(c) for c in conditions] == [
        *(t, f, t, t, t, t, t, t, f, t, t, f, f, t, t, t),
        *(f, f, f, f, f, f, t, t, f, t, t, t, f, f, t, t),
    ]
    values = {o.action: (o.val, o.error) for o in res.outputs}
    n = len(MIXED_EXPRESSIONS)
    assert values[f"o{n}"] == ({"a": 2.0, "b": 4.0}, None)
    assert values[f"o{n + 2}"] == (None, "unsupported type conversion from 'int' to string")
    assert values[f"o{n + 5}"] == ({"1": 0, "2": 1, "3": 2}, None)
    assert values[f"o{n + 7}"] == (None, "insert failed: key k already exists")


def test_reserved_vigil_functions_are_refused(tmp_path: Path) -> None:
    """The functions transformMap is rewritten into do not exist for policies (nor in
    Cerbos); transformMap inside a string literal is just text."""
    from streams.policy import PolicyCompileError

    for name in ("vigil_internal_pairs_to_map", "vigil_internal_entries_to_map"):
        root = tmp_path / name
        root.mkdir()
        (root / "doc.yaml").write_text(
            textwrap.dedent(
                f"""
                apiVersion: api.cerbos.dev/v1
                resourcePolicy:
                  resource: doc
                  version: default
                  rules:
                    - actions: ["read"]
                      roles: ["user"]
                      effect: EFFECT_ALLOW
                      condition:
                        match:
                          expr: size([[1, 2]].{name}()) > 0
                """
            )
        )
        with pytest.raises(PolicyCompileError, match=f"undeclared reference to '{name}'"):
            build_engine(root)


def test_output_reads_effective_derived_roles(tmp_path: Path) -> None:
    """An output reading `runtime.effectiveDerivedRoles` sees the level's derived roles even
    when no condition of the policy reads them (Vigil gave it an empty list; found by
    `make diff-cerbos --role-policies`, seed 3010)."""
    files = {
        "dr.yaml": PRINCIPAL_READS_EDR["dr.yaml"],
        "doc.yaml": """
            apiVersion: api.cerbos.dev/v1
            resourcePolicy:
              resource: doc
              version: default
              importDerivedRoles: [dr]
              rules:
                - actions: ["read"]
                  roles: ["*"]
                  effect: EFFECT_ALLOW
                  output:
                    when:
                      ruleActivated: '"anyone" in runtime.effectiveDerivedRoles'
                - actions: ["write"]
                  derivedRoles: ["anyone"]
                  effect: EFFECT_ALLOW
        """,
    }
    assert _differences(tmp_path, files, [_request(["read", "write"], ["user"])]) == []
    res = build_engine(tmp_path / "store").check(
        {"id": "u", "roles": ["user"]}, {"kind": "doc", "id": "r"}, ["read"]
    )
    assert [o.val for o in res.outputs] == [True]


#: Two conditional role-policy rules at the same position (0) of their `resource` group.
SHARED_ROLE_RULE_KEY = {
    "doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:
            - actions: ["*"]
              roles: ["user"]
              effect: EFFECT_ALLOW
    """,
    "acme/doc.yaml": """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          scope: acme
          rules:
            - actions: ["zzz"]
              roles: ["user"]
              effect: EFFECT_ALLOW
    """,
    "acme/r.yaml": """
        apiVersion: api.cerbos.dev/v1
        rolePolicy:
          role: r
          scope: acme
          parentRoles: [user]
          rules:
            - resource: doc
              allowActions: ["read"]
              condition:
                match:
                  expr: R.attr.a == true
            - resource: "*"
              allowActions: ["write"]
              condition:
                match:
                  expr: R.attr.b == true
    """,
}


def _shared_key_request(actions: list[str], a: bool, b: bool) -> dict[str, Any]:
    req = _request(actions, ["r"], scope="acme", attr={"a": a, "b": b})
    return req


def test_role_policy_rules_sharing_a_cerbos_cache_key(tmp_path: Path) -> None:
    """A stock Cerbos 0.55 bug Vigil does not copy (found by `make diff-cerbos
    --role-policies`, seed 13; docs/policies.md). Cerbos caches a role-policy rule's condition
    per check under `role.<role>.v<version>/<scope>#<role>_rule-<i>`, where `i` is the rule's
    position among the rules for the same `resource`: the first `doc` rule and the first `*`
    rule share a key, so the first one evaluated answers for both. With `a` true and `b`
    false, `write` is ALLOWed after `read` (the role policy's condition for write fails: a
    fail-open) and DENYed alone; `read` is DENYed after `write`. Which rule comes first when
    both match one action follows a Go map, so it even varies between PDP starts. Vigil
    evaluates each rule's condition: the answers of a check of each action on its own."""
    single = [
        _shared_key_request([action], a, b)
        for action in ("read", "write")
        for a, b in ((True, False), (False, True))
    ]
    assert _differences(tmp_path / "single", SHARED_ROLE_RULE_KEY, single) == []
    pair = _shared_key_request(["read", "write"], True, False)
    found = _differences(tmp_path / "pair", SHARED_ROLE_RULE_KEY, [pair])
    assert len(found) == 1 and '"write": "EFFECT_ALLOW"' in found[0].split("vigil")[0]
    res = build_engine(tmp_path / "pair" / "store").check(
        pair["principal"], pair["resources"][0]["resource"], ["read", "write"]
    )
    assert res.allowed("read") and not res.allowed("write")
    assert res.actions["write"].policy == "role.r.vdefault/acme"


#: `has()` on the fields of Cerbos' protobuf messages (`request.principal`, `request.resource`,
#: `runtime`): proto3 presence, false for an empty string, list or map.
PROTO_PRESENCE = [
    "has(P.id)",
    "has(P.roles)",
    "has(P.attr)",
    "has(P.scope)",
    "has(P.policyVersion)",
    "has(R.kind)",
    "has(R.id)",
    "has(R.attr)",
    "has(R.scope)",
    "has(R.policyVersion)",
    "has(request.principal.scope)",
    "has(request.resource.attr)",
    "has(runtime.effectiveDerivedRoles)",
]


def test_presence_of_request_message_fields_is_proto3_presence(tmp_path: Path) -> None:
    """`has(P.scope)` is false in Cerbos when the principal has no scope (proto3 presence of a
    message field), true in Vigil before it read these as proto fields (every key is there)."""
    outputs = "\n".join(
        f"""
            - actions: ["a{n}"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: '{expr}'"""
        for n, expr in enumerate(PROTO_PRESENCE)
    )
    policy = f"""
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          rules:{outputs}
    """
    actions = [f"a{n}" for n in range(len(PROTO_PRESENCE))]
    full = _request(actions, ["user"], attr={"k": 1}, policyVersion="default")
    full["principal"] = {
        "id": "u",
        "roles": ["user"],
        "attr": {"a": 1},
        "scope": "acme",
        "policyVersion": "default",
    }
    requests = [_request(actions, ["user"]), _request(actions, ["user"], attr={"k": 1}), full]
    assert _differences(tmp_path, {"doc.yaml": textwrap.dedent(policy)}, requests) == []


_OVERRIDE = "SCOPE_PERMISSIONS_OVERRIDE_PARENT"
_CONSENT = "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS"


def _res(kind: str, scope: str = "", perms: str | None = None) -> str:
    head = f"resourcePolicy:\n  resource: {kind}\n  version: default\n"
    head += f"  scope: {scope}\n" if scope else ""
    head += f"  scopePermissions: {perms}\n" if perms else ""
    rule = "    - actions: [read]\n      roles: [user]\n      effect: EFFECT_ALLOW\n"
    return f"apiVersion: api.cerbos.dev/v1\n{head}  rules:\n{rule}"


def _prin(scope: str = "", perms: str | None = None) -> str:
    head = "principalPolicy:\n  principal: alice\n  version: default\n"
    head += f"  scope: {scope}\n" if scope else ""
    head += f"  scopePermissions: {perms}\n" if perms else ""
    rule = "    - resource: doc\n      actions:\n        - action: read\n          effect: EFFECT_ALLOW\n"
    return f"apiVersion: api.cerbos.dev/v1\n{head}  rules:\n{rule}"


def _role(scope: str) -> str:
    return (
        "apiVersion: api.cerbos.dev/v1\nrolePolicy:\n  role: boss\n"
        f"  scope: {scope}\n  rules:\n    - resource: doc\n      allowActions: [read]\n"
    )


_DERIVED = (
    "apiVersion: api.cerbos.dev/v1\nderivedRoles:\n  name: dr\n  definitions:\n"
    "    - name: owner\n      parentRoles: [user]\n"
)
_ROOTS = [_res("doc"), _res("img"), _res("pdf")]

#: Stores (files in the stock PDP's walk order) and whether `cerbos compile` 0.55 refuses them
#: with "policies sharing scope ... have conflicting scopePermissions".
SCOPE_PERMISSION_STORES = {
    "role and two resource policies setting it": (
        [*_ROOTS, _res("doc", "acme", _CONSENT), _res("img", "acme", _CONSENT), _role("acme")],
        True,
    ),
    "role and two resource policies, override": (
        [*_ROOTS, _res("doc", "acme", _OVERRIDE), _res("img", "acme", _OVERRIDE), _role("acme")],
        True,
    ),
    "role and two resource policies leaving it unset": (
        [*_ROOTS, _res("doc", "acme"), _res("img", "acme"), _role("acme")],
        False,
    ),
    "role and one resource policy setting it": (
        [*_ROOTS, _res("doc", "acme", _CONSENT), _role("acme")],
        False,
    ),
    "two resource policies disagreeing (the first is not recorded)": (
        [*_ROOTS, _res("doc", "acme", _OVERRIDE), _res("img", "acme", _CONSENT)],
        False,
    ),
    "unset and explicit override after the first": (
        [
            *_ROOTS,
            _res("doc", "acme", _CONSENT),
            _res("img", "acme"),
            _res("pdf", "acme", _OVERRIDE),
        ],
        True,
    ),
    "the same value after the first": (
        [
            *_ROOTS,
            _res("doc", "acme", _OVERRIDE),
            _res("img", "acme", _CONSENT),
            _res("pdf", "acme", _CONSENT),
        ],
        False,
    ),
    "principal policy in a role policy's scope": (
        [
            _res("doc"),
            _prin(),
            _res("doc", "acme", _CONSENT),
            _prin("acme", _OVERRIDE),
            _role("acme"),
        ],
        True,
    ),
    "principal policy leaving it unset in a role policy's scope": (
        [_res("doc"), _prin(), _prin("acme"), _role("acme")],
        False,
    ),
    "root policy setting it beside derived roles": (
        [_DERIVED, _res("doc", "", _CONSENT), _res("img")],
        True,
    ),
}


@pytest.mark.parametrize("name", list(SCOPE_PERMISSION_STORES))
def test_conflicting_scope_permissions_refused_as_by_cerbos(tmp_path: Path, name: str) -> None:
    """Vigil refuses exactly the stores `cerbos compile` refuses for conflicting
    scopePermissions (its index build: streams/policy/compiler.py
    `_check_shared_scope_permissions`), and accepts the others."""
    import subprocess

    from streams.policy import PolicyCompileError

    files, refused = SCOPE_PERMISSION_STORES[name]
    for i, text in enumerate(files):
        (tmp_path / f"p{i}.yaml").write_text(text)
    proc = subprocess.run(
        [str(cerbos_binary()), "compile", "--skip-tests", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode != 0) is refused, proc.stdout + proc.stderr
    assert ("have conflicting scopePermissions" in proc.stdout) is refused
    if refused:
        with pytest.raises(PolicyCompileError, match="have conflicting scopePermissions"):
            build_engine(tmp_path)
    else:
        build_engine(tmp_path)


def test_plan_of_has_variable_reading_the_resource_is_refused(tmp_path: Path) -> None:
    """`has(V.x)` is planned when `x` reads only the principal (evaluated, as in checks), and
    refused when `x` reads the resource (the stock planner's residual is not reproduced)."""
    from streams.policy.api import RequestError
    from streams.policy.planner import UNIMPLEMENTED, plan_resources

    policy = """
        apiVersion: api.cerbos.dev/v1
        resourcePolicy:
          resource: doc
          version: default
          variables:
            local:
              mine: P.attr.dept.name
              theirs: R.attr.dept.name
          rules:
            - actions: ["read"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: has(V.mine)
            - actions: ["write"]
              roles: ["*"]
              effect: EFFECT_ALLOW
              condition:
                match:
                  expr: has(V.theirs)
    """
    (tmp_path / "doc.yaml").write_text(textwrap.dedent(policy))
    engine = build_engine(tmp_path)
    base = {"resource": {"kind": "doc"}, "includeMeta": False}
    for attr, kind in (
        ({"dept": {"name": "x"}}, "KIND_ALWAYS_ALLOWED"),
        ({}, "KIND_ALWAYS_DENIED"),
    ):
        plan = {**base, "action": "read", "principal": {"id": "u", "roles": ["u"], "attr": attr}}
        assert plan_resources(engine, plan)["filter"]["kind"] == kind
    plan = {**base, "action": "write", "principal": {"id": "u", "roles": ["u"]}}
    with pytest.raises(RequestError) as info:
        plan_resources(engine, plan)
    assert info.value.code == UNIMPLEMENTED


#: Conditions with regular-expression literals, and whether `cerbos compile` 0.55 refuses them
#: (cel-go compiles the constant pattern of a member `matches` when it builds the program).
REGEX_LITERALS = {
    'R.attr.s.matches("[")': True,
    'R.attr.s.matches("a{1001}") && R.attr.s.matches("a")': True,
    '[1].exists(x, string(x).matches("("))': True,
    'R.attr.s.matches("^a+$")': False,
    'matches(R.attr.s, "[")': False,
    '"[".matches(R.attr.s)': False,
}


def _cerbos_compile_refuses(store: Path) -> str | None:
    """`cerbos compile`'s report when it refuses `store`, None when it accepts it."""
    import subprocess

    proc = subprocess.run(
        [str(cerbos_binary()), "compile", "--skip-tests", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.stdout + proc.stderr if proc.returncode != 0 else None


def _condition_store(root: Path, expr: str) -> Path:
    (root / "doc.yaml").write_text(
        textwrap.dedent(
            f"""
            apiVersion: api.cerbos.dev/v1
            resourcePolicy:
              resource: doc
              version: default
              rules:
                - actions: ["read"]
                  roles: ["*"]
                  effect: EFFECT_ALLOW
                  condition:
                    match:
                      expr: '{expr}'
            """
        )
    )
    return root


@pytest.mark.parametrize("expr", list(REGEX_LITERALS))
def test_invalid_regex_literal_refused_as_by_cerbos(tmp_path: Path, expr: str) -> None:
    """A member `matches` with an invalid literal pattern is a compile error in both
    (`invalid matches argument`); the global form and computed patterns are not checked."""
    from streams.policy import PolicyCompileError

    refused = REGEX_LITERALS[expr]
    report = _cerbos_compile_refuses(_condition_store(tmp_path, expr))
    assert (report is not None) is refused, report
    assert report is None or "invalid matches argument" in report
    if refused:
        with pytest.raises(PolicyCompileError, match="invalid matches argument"):
            build_engine(tmp_path)
    else:
        build_engine(tmp_path)


#: Conditions using transformMap/transformMapEntry results, and whether `cerbos compile` 0.55
#: refuses them: cel-go types the result as map(K, type of the body).
TRANSFORM_MAP_TYPES = {
    '{"a": 1.0}.transformMap(k, v, v * 2.0)["a"] + 1 > 0': True,
    '{"a": 1.0}.transformMap(k, v, v * 2.0)["a"] + 1.0 > 0.0': False,
    '{"a": 1.0}.transformMap(k, v, v * 2.0) == {"a": 2.0}': False,
    "[1, 2].transformMap(i, v, v + 1)[0] + 1.0 > 0.0": True,
    "[1, 2].transformMap(i, v, v + 1)[0] + 1 > 0": False,
    '{"a": 1.0}.transformMap(k, v, v)[1] > 0.0': True,
    '{"a": 1.0}.transformMap(k, v, v)["a"] < 1': False,
    'R.attr.m.transformMap(k, v, v)["a"] + 1 > 0': False,
    '{"a": 1.0}.transformMapEntry(k, v, {k: v})["a"] + 1 > 0': True,
    '{"a": 1.0}.transformMapEntry(k, v, {k: v})["a"] + 1.0 > 0.0': False,
    '{"a": 1.0}.transformMap(k, v, v > 0.0, v * 2.0)["a"] + 1 > 0': True,
    '[1, 2].transformMap(i, v, v + 1).exists(k, k == "x")': True,
    "[1, 2].transformMap(i, v, v + 1).exists(k, k == 1)": False,
}


@pytest.mark.parametrize("expr", list(TRANSFORM_MAP_TYPES))
def test_transform_map_result_typed_as_by_cerbos(tmp_path: Path, expr: str) -> None:
    """Vigil runs transformMap through a map(dyn, dyn) function (celcompat.py), and checks
    the source once more with the result typed as cel-go types it, so both refuse the same
    misuses at compile time."""
    from streams.policy import PolicyCompileError

    refused = TRANSFORM_MAP_TYPES[expr]
    report = _cerbos_compile_refuses(_condition_store(tmp_path, expr))
    assert (report is not None) is refused, report
    if refused:
        with pytest.raises(PolicyCompileError, match="no matching overload"):
            build_engine(tmp_path)
    else:
        build_engine(tmp_path)
