"""The fast rule walk (`PolicyEngine._decide`) equals the general evaluator (`_check_general`).

`check()` takes the fast path for bundles of resource policies only (no principal or role
policies, scope permissions, outputs, schemas or non-default options); the project rule is that
a fast path must be proven equal to the general one. For every such bundle the tests use (the
directories, and the inline bundles test modules write from literals), two engines
are built from the same directory, the second with `_general = True` (the documented way to force
the general evaluator), and a deterministic set of generated requests is checked on both, with
and without a `CheckMemo`: the whole `CheckResult` (per-action effect, policy, scope and rule;
effective derived roles; errors; outputs) must be identical.

Requests are generated from what the bundle itself contains: principals with every role a rule
or derived role names plus unknown ones (and no roles), resources of every kind, version and
scope (and their root/child/unknown spellings), every action a rule names plus unknown ones, and
attributes at every path a condition reads, set to constants taken from the conditions, to
random values of other types, to lists of constants, or left out.
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import random
import re
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.policy import PolicyEngine
from streams.policy.model import ActionResult, CheckResult, Condition, PolicyCompileError

from .conftest import POLICIES

REPO = POLICIES.parent
BUNDLE_DIRS: list[Path] = [
    POLICIES,
    *sorted(p for p in (REPO / "tests/policy/bundles").iterdir() if p.is_dir()),
    *sorted(p for p in (REPO / "tests/policy_tools/data").iterdir() if p.is_dir()),
]
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
REQUESTS_PER_BUNDLE = 600
INLINE_REQUESTS = 200
BATCH = 40  # checks sharing one CheckMemo

# A bundle for what the other bundles exercise little: a three-level scope chain with derived
# roles at two levels and `runtime.effectiveDerivedRoles` (read at all three levels: each level
# sees its own derived roles, whatever level an earlier action's walk ended at; and by a
# derived role, which sees those of the level visited before), conditional
# DENY groups (with conditions that can fail), wildcard actions and roles, principals whose
# roles disagree, and a kind without scoped policies in a scope another kind defines. Compared
# by the inline test.
_SCOPED_ROLES = """
apiVersion: api.cerbos.dev/v1
derivedRoles:
  name: chain_roles
  definitions:
    - name: owner
      parentRoles: ["user", "admin"]
      condition:
        match:
          expr: R.attr.owner == P.id
    - name: senior
      parentRoles: ["user"]
      condition:
        match:
          expr: P.attr.level > 3
    - name: fresh
      parentRoles: ["user", "guest"]
      condition:
        match:
          expr: size(runtime.effectiveDerivedRoles) == 0 || R.attr.n == 3
"""
_SCOPED_ROOT = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  importDerivedRoles: ["chain_roles"]
  rules:
    - name: root-read
      actions: ["read", "list:*"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: R.attr.public == true
    - name: root-owner
      actions: ["*"]
      derivedRoles: ["owner"]
      effect: EFFECT_ALLOW
    - name: root-admin
      actions: ["*"]
      roles: ["admin"]
      effect: EFFECT_ALLOW
    - name: root-fresh
      actions: ["list:*", "read"]
      derivedRoles: ["fresh"]
      effect: EFFECT_ALLOW
    - name: root-runtime
      actions: ["edit"]
      roles: ["*"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: '"senior" in runtime.effectiveDerivedRoles && R.attr.n < 10'
"""
_SCOPED_A = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  scope: a
  importDerivedRoles: ["chain_roles"]
  rules:
    - name: a-deny-flag
      actions: ["*"]
      roles: ["*"]
      effect: EFFECT_DENY
      condition:
        match:
          expr: R.attr.flag == "blocked"
    - name: a-deny-n
      actions: ["*"]
      roles: ["*"]
      effect: EFFECT_DENY
      condition:
        match:
          expr: R.attr.n > 100
    - name: a-deny-region
      actions: ["edit", "read"]
      roles: ["user", "guest"]
      effect: EFFECT_DENY
      condition:
        match:
          any:
            of:
              - expr: P.attr.region != R.attr.region
              - expr: P.attr.level < 1
    - name: a-fresh
      actions: ["list:*"]
      derivedRoles: ["fresh"]
      effect: EFFECT_DENY
      condition:
        match:
          expr: R.attr.flag == "fresh"
    - name: a-senior
      actions: ["edit"]
      derivedRoles: ["senior"]
      effect: EFFECT_ALLOW
      condition:
        match:
          all:
            of:
              - expr: R.attr.n >= 5
              - expr: '"senior" in runtime.effectiveDerivedRoles'
"""
_SCOPED_AB = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  scope: a.b
  rules:
    - name: ab-guest
      actions: ["read"]
      roles: ["guest"]
      effect: EFFECT_ALLOW
    - name: ab-deny-guest-edit
      actions: ["edit", "list:*"]
      roles: ["guest"]
      effect: EFFECT_DENY
    - name: ab-runtime
      actions: ["list:*", "edit"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: 'size(runtime.effectiveDerivedRoles) == 0 && R.attr.n == 2'
"""
_OTHER_ROOT = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: other
  version: default
  rules:
    - name: other-read
      actions: ["read"]
      roles: ["user", "guest"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: R.attr.n == 1 || R.attr.flag == "open"
"""
SCOPED_BUNDLE = {
    "roles.yaml": _SCOPED_ROLES,
    "doc.yaml": _SCOPED_ROOT,
    "a/doc.yaml": _SCOPED_A,
    "a/b/doc.yaml": _SCOPED_AB,
    "other.yaml": _OTHER_ROOT,
}

_ATTR = re.compile(r"\b(P|R|request\.principal|request\.resource)\.attr((?:\.[A-Za-z_]\w*)+)")
_JWT = re.compile(r"\b(request\.auxData|request\.aux_data)\.jwt((?:\.[A-Za-z_]\w*)+)")
_STR = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'")
_NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


def _engines(directory: Path) -> tuple[PolicyEngine, PolicyEngine]:
    fast = PolicyEngine.from_directory(directory)
    general = PolicyEngine.from_directory(directory)
    general._general = True  # force `_check_general` (see PolicyEngine.__init__)
    return fast, general


def _fast_bundles() -> list[Path]:
    """The bundles on which `check()` takes the fast path (the others never use it)."""
    return [d for d in BUNDLE_DIRS if not PolicyEngine.from_directory(d)._general]


def _paths(pattern: re.Pattern[str], src: str) -> list[tuple[str, tuple[str, ...]]]:
    """(root, field path) of each dotted path in `src`; a trailing `.name(` is a method call."""
    out = []
    for m in pattern.finditer(src):
        parts = m.group(2)[1:].split(".")
        if src[m.end() : m.end() + 1] == "(":
            parts = parts[:-1]
        if parts:
            out.append((m.group(1), tuple(parts)))
    return out


def _fixtures(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Principals and resources of the bundle's Cerbos test suites (realistic starting points
    that reach ALLOW decisions, which random attributes rarely do)."""
    principals: list[dict[str, Any]] = []
    resources: list[dict[str, Any]] = []
    for path in sorted(directory.glob("**/tests/**/*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc, dict):
            continue
        principals.extend((doc.get("principals") or {}).values())
        resources.extend((doc.get("resources") or {}).values())
    return principals, resources


def _conditions(engine: PolicyEngine) -> list[Condition]:
    return [leaf for c in engine._conditions() for leaf in c.leaves()]


class _Vocabulary:
    """What a bundle mentions: the material requests are made of."""

    def __init__(self, engine: PolicyEngine, directory: Path) -> None:
        self.principals, self.resources = _fixtures(directory)
        keys = sorted(engine._policies)
        self.kinds = sorted({k for k, _v, _s in keys}) or ["zz-kind"]  # a derived-roles-only
        self.versions = sorted({v for _k, v, _s in keys}) or ["default"]  # bundle has none
        self.scopes = sorted({s for _k, _v, s in keys}) or [""]
        roles: set[str] = set()
        actions: set[str] = set()
        for pol in engine._policies.values():
            for rule in pol.rules:
                roles.update(rule.roles)
                actions.update(rule.actions)
                for dr in rule.derived_roles:
                    roles.update(dr.parent_roles)
            for dr in pol.derived_roles.values():
                roles.update(dr.parent_roles)
        self.roles = sorted(r for r in roles if r != "*") + ["zz-extra", "*"]
        concrete = sorted(a for a in actions if "*" not in a)
        wild = sorted(a.replace("*", "zz") for a in actions if "*" in a and a != "*")
        self.actions = concrete + wild + ["zz-unknown", "*"]
        p_paths: set[tuple[str, ...]] = set()
        r_paths: set[tuple[str, ...]] = set()
        jwt_paths: set[tuple[str, ...]] = set()
        consts: set[Any] = {True, False}
        for leaf in _conditions(engine):
            src = leaf.source
            for root, path in _paths(_ATTR, src):
                (p_paths if root in ("P", "request.principal") else r_paths).add(path)
            for _root, path in _paths(_JWT, src):
                jwt_paths.add(path)
            for a, b in _STR.findall(src):
                consts.add(a or b)
            for num in _NUM.findall(src):
                consts.add(float(num) if "." in num else int(num))
        self.p_paths = sorted(_leaves(p_paths))
        self.r_paths = sorted(_leaves(r_paths))
        self.jwt_paths = sorted(_leaves(jwt_paths))
        self.consts = sorted(consts, key=repr)


def _leaves(paths: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """Paths not a prefix of another (a prefix is set by setting its extensions, or alone)."""
    return {p for p in paths if not any(q != p and q[: len(p)] == p for q in paths)} | {
        p for p in paths if len(p) == 1
    }


class _Requests:
    def __init__(self, vocab: _Vocabulary, seed: int) -> None:
        self.v = vocab
        self.rnd = random.Random(seed)

    def value(self) -> Any:
        rnd, consts = self.rnd, self.v.consts
        pick = rnd.random()
        if pick < 0.6:
            return rnd.choice(consts)
        if pick < 0.7:
            return rnd.sample(consts, k=min(len(consts), rnd.randint(0, 3)))
        if pick < 0.8:
            return rnd.choice(["zz", "", 0, -1, 3.5, 10**6, None])
        if pick < 0.9:
            return {"zz": rnd.choice(consts)}
        return rnd.choice([True, False, "true", "HIGH", "LOW", "enabled"])

    def attrs(
        self, paths: list[tuple[str, ...]], seed: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Attributes at `paths`; from a `seed`, only one or two of them changed."""
        if seed is not None:
            out = copy.deepcopy(seed)
            paths = self.rnd.sample(paths, k=min(len(paths), self.rnd.randint(0, 2)))
        else:
            out = {}
        for path in paths:
            if self.rnd.random() < 0.15:
                _drop(out, path)  # missing attribute
                continue
            node = out
            for part in path[:-1]:
                nxt = node.get(part)
                if not isinstance(nxt, dict):
                    nxt = node[part] = {}
                node = nxt
            node[path[-1]] = self.value()
        return out

    def seed(self, pool: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not pool or self.rnd.random() < 0.5:
            return None
        return self.rnd.choice(pool)

    def scope(self) -> Any:
        rnd, scopes = self.rnd, self.v.scopes
        pick = rnd.random()
        if pick < 0.7:
            return rnd.choice(scopes)
        if pick < 0.8:
            return rnd.choice([None, ".", ""])
        if pick < 0.9:
            base = rnd.choice(scopes)
            return f"{base}.zz" if base else "zz"
        return "zz.unknown"

    def request(self) -> tuple[dict[str, Any], dict[str, Any], list[str], dict[str, Any] | None]:
        rnd, v = self.rnd, self.v
        n_roles = rnd.choice([0, 1, 1, 1, 1, 2, 2, 2, 3])
        roles = rnd.sample(v.roles, k=min(n_roles, len(v.roles)))
        ids = [c for c in v.consts if isinstance(c, str)] or ["alice"]
        pid = rnd.choice(ids + ["alice", "bob"])
        pseed = self.seed(v.principals)
        if pseed is not None and rnd.random() < 0.7:
            extra = rnd.choice(v.roles)
            roles = list(pseed.get("roles") or roles)
            if extra not in roles and rnd.random() < 0.5:  # the seed's roles plus another one
                roles.insert(rnd.randint(0, len(roles)), extra)
            pid = pseed.get("id", pid)
        pattr = self.attrs(v.p_paths, (pseed or {}).get("attr") or {} if pseed else None)
        principal: dict[str, Any] = {"id": pid, "roles": roles, "attr": pattr}
        if rnd.random() < 0.1:
            principal["scope"] = self.scope()
        rseed = self.seed(v.resources)
        kind = rnd.choice(v.kinds) if rnd.random() < 0.95 else "zz-kind"
        if rseed is not None and rnd.random() < 0.8:
            kind = rseed.get("kind", kind)
        version = rnd.choice([*v.versions, None, None, "zz"]) if rnd.random() < 0.3 else None
        resource: dict[str, Any] = {
            "kind": kind,
            "id": rnd.choice(ids + ["r1"]),
            "attr": self.attrs(v.r_paths, rseed.get("attr") or {} if rseed else None),
            "scope": self.scope(),
        }
        if rseed is not None and rnd.random() < 0.7:
            resource["scope"] = rseed.get("scope")
            version = rseed.get("policyVersion")
        if version is not None:
            resource["policyVersion"] = version
        if rnd.random() < 0.2 and resource["attr"]:  # owner-style comparisons with P.id
            resource["attr"][rnd.choice(sorted(resource["attr"]))] = pid
        if rnd.random() < 0.2:
            actions = list(v.actions)
        else:
            actions = rnd.sample(v.actions, k=min(len(v.actions), rnd.randint(1, 4)))
        aux = {"jwt": self.attrs(v.jwt_paths)} if v.jwt_paths and rnd.random() < 0.8 else None
        return principal, resource, actions, aux


def _drop(attrs: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = attrs
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _describe(req: tuple[Any, ...], fast: CheckResult, general: CheckResult) -> str:
    return f"request {req!r}\n fast:    {fast!r}\n general: {general!r}"


@pytest.mark.parametrize("directory", _fast_bundles(), ids=lambda d: d.name)
def test_fast_path_equals_general_path(directory: Path) -> None:
    _compare(directory, directory.name, REQUESTS_PER_BUNDLE)


def _inline_bundles() -> list[tuple[str, dict[str, str]]]:
    """The bundles test modules write themselves (`{"x.yaml": TEXT, ...}` literals, the text a
    string constant or a module-level string), named `<module>:<line>`."""
    found = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        consts: dict[str, str] = {}
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                consts[node.targets[0].id] = node.value.value
        for node in ast.walk(tree):
            if not isinstance(node, ast.Dict) or not node.keys:
                continue
            files: dict[str, str] = {}
            for key, value in zip(node.keys, node.values, strict=True):
                if not (
                    isinstance(key, ast.Constant) and str(key.value).endswith((".yaml", ".yml"))
                ):
                    break
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    files[str(key.value)] = value.value
                elif isinstance(value, ast.Name) and value.id in consts:
                    files[str(key.value)] = consts[value.id]
                else:
                    break
            else:
                found.append((f"{path.stem}:{node.lineno}", files))
    return found


def test_inline_test_bundles_fast_path_equals_general_path(tmp_path: Path) -> None:
    compared = []
    for name, files in _inline_bundles():
        root = tmp_path / name.replace(":", "_")
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        try:
            engine = PolicyEngine.from_directory(root)
        except PolicyCompileError:
            continue  # a bundle a test expects to be refused
        if not engine._general:
            _compare(root, name, INLINE_REQUESTS)
            compared.append(name)
    assert len(compared) >= 10 and "test_fast_equals_general:" in " ".join(compared), compared


def _compare(directory: Path, name: str, count: int) -> None:
    fast, general = _engines(directory)
    assert not fast._general
    gen = _Requests(_Vocabulary(fast, directory), zlib.crc32(name.encode()))
    requests = [gen.request() for _ in range(count)]
    for start in range(0, len(requests), BATCH):
        fast_memo, general_memo = fast.new_memo(NOW), general.new_memo(NOW)
        for req in requests[start : start + BATCH]:
            principal, resource, actions, aux = req
            want = general.check(principal, resource, actions, aux_data=aux, now=NOW)
            got = fast.check(principal, resource, actions, aux_data=aux, now=NOW)
            assert got == want, _describe(req, got, want)
            kw: dict[str, Any] = {"aux_data": aux, "now": NOW}
            got_memo = fast.check(principal, resource, actions, memo=fast_memo, **kw)
            want_memo = general.check(principal, resource, actions, memo=general_memo, **kw)
            assert want_memo == want, _describe(req, want_memo, want)
            assert got_memo == want, _describe(req, got_memo, want)


def test_every_fast_bundle_is_compared() -> None:
    """The comparison above covers the bundles that use the fast path, and the generated
    requests reach decisions of every kind (so it cannot pass by comparing only NO_MATCH)."""
    fast_dirs = {d.name for d in _fast_bundles()}
    assert {"policies", "fused", "variables"} <= fast_dirs
    fast, _general = _engines(POLICIES)
    gen = _Requests(_Vocabulary(fast, POLICIES), 1)
    seen: set[tuple[str, bool]] = set()
    for principal, resource, actions, aux in (gen.request() for _ in range(300)):
        res = fast.check(principal, resource, actions, aux_data=aux, now=NOW)
        seen.update((r.effect, r.rule is not None) for r in res.actions.values())
    assert {("EFFECT_ALLOW", True), ("EFFECT_DENY", True), ("EFFECT_DENY", False)} <= seen


def test_principal_without_roles_matches_no_policy_on_both_paths() -> None:
    """Regression: the fast path reported DENY against the resource policy for a principal with
    no roles, the general one (like Cerbos, where no role walks the policies) NO_MATCH."""
    fast, general = _engines(POLICIES)
    principal = {"id": "alice", "roles": [], "attr": {}}
    resource = {"kind": "document", "id": "d1", "attr": {"owner": "alice"}}
    for engine in (fast, general):
        for memo in (None, engine.new_memo(NOW)):
            res = engine.check(principal, resource, ["read"], now=NOW, memo=memo)
            assert res.actions["read"] == ActionResult("EFFECT_DENY", "NO_MATCH", None, "")
            assert res.effective_derived_roles == [] and res.errors == []
