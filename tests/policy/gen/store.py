"""Seeded generator of valid Cerbos 0.55 policy stores.

A store has resource policies for one to three kinds (a root policy per version and scoped
policies along parent scope chains, with `scopePermissions` set per scope string), derived-role
sets with conditions, exported variables and constants imported by policies, local variables
and constants, principal policies (root and scoped), role policies, rule outputs and
`engine.globals`. Conditions come from `cel.Gen`. Everything is chosen through one
`random.Random(seed)` over lists, so a seed always gives the same files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .cel import Gen, Names

KINDS = ["doc", "album:photo", "report", "ticket"]
ROLES = ["user", "admin", "viewer", "editor", "guest"]
ACTIONS = ["read", "write", "delete", "share:link", "share:email", "approve", "view:public"]
RULE_ACTIONS = [*ACTIONS, "*", "share:*", "view:*"]
SCOPES = ["acme", "acme.hr", "acme.hr.uk", "acme.sales", "beta", "beta.x"]
PRINCIPALS = ["alice", "bob", "carol", "dave"]
DERIVED_NAMES = ["owner", "team_member", "boss", "trusted", "any_user", "same_dept"]
PERMISSIONS = [
    None,
    "SCOPE_PERMISSIONS_OVERRIDE_PARENT",
    "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS",
]
EFFECTS = ["EFFECT_ALLOW", "EFFECT_DENY"]


@dataclass
class Features:
    """Which policy features a generated store may use (all by default)."""

    principal_policies: bool = True
    role_policies: bool = True
    outputs: bool = True
    scopes: bool = True


@dataclass
class Store:
    """A generated store: files by relative path, the globals the PDP and Vigil both get, and
    the names requests should use."""

    seed: int
    files: dict[str, str]
    globals_: dict[str, Any]
    kinds: list[str]
    roles: list[str]
    scopes: list[str]
    versions: list[str]
    derived_roles: list[str] = field(default_factory=list)

    def write(self, root: Path) -> Path:
        for rel, text in self.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        root.mkdir(parents=True, exist_ok=True)
        return root


def _dump(rel: str, doc: dict[str, Any]) -> tuple[str, str]:
    full = {"apiVersion": "api.cerbos.dev/v1", **doc}
    if rel.endswith(".json"):
        return rel, json.dumps(full, indent=1)
    return rel, yaml.safe_dump(full, sort_keys=False, width=10_000, allow_unicode=True)


class _Builder:
    def __init__(self, seed: int, features: Features) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.f = features
        self.files: dict[str, str] = {}
        self.n_file = 0

    def pick(self, seq: Any) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def sample(self, seq: list[Any], lo: int, hi: int) -> list[Any]:
        return self.rng.sample(seq, self.rng.randint(lo, min(hi, len(seq))))

    def add(self, stem: str, doc: dict[str, Any]) -> None:
        self.n_file += 1
        ext = ".json" if self.rng.random() < 0.15 else ".yaml"
        rel, text = _dump(f"{stem}_{self.n_file}{ext}", doc)
        self.files[rel] = text

    # -- shared pieces

    def globals_(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.rng.random() < 0.7:
            out["min_level"] = self.pick([1, 2, 2.5])
            out["region"] = self.pick(["eu", "us"])
            out["strict"] = self.rng.random() < 0.5
        return out

    def exports(self, names: Names) -> tuple[list[str], list[str]]:
        """exportConstants / exportVariables documents; returns the set names."""
        const_sets, var_sets = [], []
        if self.rng.random() < 0.5:
            defs = {
                "ec_limit": self.pick([2, 3.5, 10]),
                "ec_depts": self.sample(["eng", "ops", "sales", ""], 1, 3),
                "ec_on": self.rng.random() < 0.5,
                "ec_name": self.pick(["eng", "alice"]),
            }
            keep = dict(self.sample(sorted(defs.items()), 1, 4))
            self.add("export_consts", {"exportConstants": {"name": "ec", "definitions": keep}})
            const_sets.append("ec")
            names.constants.update(keep)
        if self.rng.random() < 0.5:
            gen = Gen(self.rng, Names(constants={}, globals_=names.globals_))
            defs: dict[str, str] = {}
            kinds: dict[str, str] = {}
            for i in range(self.rng.randint(1, 3)):
                name = f"ev_{i}"
                # exported variables may use earlier ones
                gen.names.variables = dict(kinds)
                if self.rng.random() < 0.75:
                    defs[name], kinds[name] = gen.cond(), "bool"
                else:
                    defs[name], kinds[name] = gen.str_term(), "str"
            self.add("export_vars", {"exportVariables": {"name": "ev", "definitions": defs}})
            var_sets.append("ev")
            names.variables.update(kinds)
        return const_sets, var_sets

    def locals_(
        self, names: Names, const_sets: list[str], var_sets: list[str], exported: Names
    ) -> tuple[dict[str, Any], dict[str, Any], Names]:
        """`variables`/`constants` blocks of one policy and the names they make visible."""
        visible = Names(globals_=names.globals_, derived_roles=names.derived_roles)
        variables: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        if const_sets and self.rng.random() < 0.6:
            constants["import"] = list(const_sets)
            visible.constants.update(exported.constants)
        if self.rng.random() < 0.4:
            local = {"lc_n": self.pick([1, 2, 4.5]), "lc_tags": self.sample(["a", "b", "c"], 0, 2)}
            constants["local"] = local
            visible.constants.update(local)
        if var_sets and self.rng.random() < 0.6:
            variables["import"] = list(var_sets)
            visible.variables.update(exported.variables)
        if self.rng.random() < 0.5:
            gen = Gen(self.rng, visible)
            local: dict[str, str] = {}
            for i in range(self.rng.randint(1, 3)):
                name = f"lv_{i}"
                if self.rng.random() < 0.7:
                    local[name] = gen.cond()
                    visible.variables[name] = "bool"
                else:
                    local[name] = gen.value()
                    visible.variables[name] = "any"
            variables["local"] = local
        return variables, constants, visible

    def condition(self, gen: Gen) -> dict[str, Any]:
        return {"match": gen.match()}

    def output(self, gen: Gen) -> dict[str, Any]:
        when: dict[str, str] = {}
        if self.rng.random() < 0.8:
            when["ruleActivated"] = gen.value()
        if self.rng.random() < 0.5 or not when:
            when["conditionNotMet"] = gen.value()
        return {"when": when}

    # -- documents

    def derived_roles(self, names: Names, roles: list[str]) -> list[tuple[str, list[str]]]:
        sets: list[tuple[str, list[str]]] = []
        pool = list(DERIVED_NAMES)
        self.rng.shuffle(pool)
        for s in range(self.rng.randint(0, 2)):
            defs = []
            set_names = [pool.pop() for _ in range(self.rng.randint(1, 2))]
            gen = Gen(self.rng, Names(globals_=names.globals_))
            for name in set_names:
                d: dict[str, Any] = {
                    "name": name,
                    "parentRoles": self.sample([*roles, "*"], 1, 2),
                }
                if self.rng.random() < 0.75:
                    d["condition"] = self.condition(gen)
                defs.append(d)
            set_name = f"dr_{s}"
            self.add("derived", {"derivedRoles": {"name": set_name, "definitions": defs}})
            sets.append((set_name, set_names))
        return sets

    def rule_actions(self) -> list[str]:
        """1-3 action patterns, possibly overlapping (`share:*` and `*`): a rule's output is
        evaluated once per matching pattern (docs/policies.md)."""
        return self.sample(RULE_ACTIONS, 1, 3)

    def resource_rule(
        self, gen: Gen, roles: list[str], derived: list[str], i: int
    ) -> dict[str, Any]:
        rule: dict[str, Any] = {"actions": self.rule_actions(), "effect": "EFFECT_ALLOW"}
        if self.rng.random() < 0.3:
            rule["effect"] = "EFFECT_DENY"
        use_roles = not derived or self.rng.random() < 0.7
        if use_roles:
            rule["roles"] = self.sample([*roles, "*"], 1, 2)
        if derived and (not use_roles or self.rng.random() < 0.3):
            rule["derivedRoles"] = self.sample(derived, 1, 2)
        if self.rng.random() < 0.6:
            rule["condition"] = self.condition(gen)
        if self.rng.random() < 0.5:
            rule["name"] = f"rule_{i}"
        # A rule binding a role through several derived roles (or through roles and a derived
        # role) has rows whose order the stock PDP takes from a Go map: the order of their
        # outputs (activated for one, conditionNotMet for another) changes between PDP starts
        # (seed 7). Outputs only where that order cannot show.
        single = "roles" not in rule and len(rule.get("derivedRoles", [])) == 1
        if self.f.outputs and ("derivedRoles" not in rule or single) and self.rng.random() < 0.3:
            rule["output"] = self.output(gen)
        return rule

    def resource_policy(
        self,
        kind: str,
        version: str,
        scope: str,
        perms: dict[str, str | None],
        ctx: tuple[Names, list[str], list[str], Names, list[tuple[str, list[str]]], list[str]],
    ) -> dict[str, Any]:
        names, const_sets, var_sets, exported, dr_sets, roles = ctx
        imported = self.sample(dr_sets, 0, 2)
        derived = [n for _, ns in imported for n in ns]
        variables, constants, visible = self.locals_(names, const_sets, var_sets, exported)
        visible.derived_roles = [n for _, ns in dr_sets for n in ns]
        gen = Gen(self.rng, visible)
        body: dict[str, Any] = {"resource": kind, "version": version}
        if scope:
            body["scope"] = scope
            if perms.get(scope):
                body["scopePermissions"] = perms[scope]
        if imported:
            body["importDerivedRoles"] = [s for s, _ in imported]
        if variables:
            body["variables"] = variables
        if constants:
            body["constants"] = constants
        body["rules"] = [
            self.resource_rule(gen, roles, derived, i) for i in range(self.rng.randint(1, 5))
        ]
        return {"resourcePolicy": body}

    def principal_policy(
        self, pid: str, scope: str, perms: dict[str, str | None], kinds: list[str], names: Names
    ) -> dict[str, Any]:
        # runtime.effectiveDerivedRoles here: those of the resource scope the walk visited
        # last, in this or an earlier action of the request (as in Cerbos 0.55)
        gen = Gen(self.rng, Names(globals_=names.globals_, derived_roles=names.derived_roles))
        rules = []
        resources = self.sample([*kinds, "*"], 1, 2)
        # a `*` rule and a kind rule may both match an action; the stock PDP visits their rows
        # in an order that varies between server starts, so outputs after a DENY row come and
        # go: no outputs then
        outputs = self.f.outputs and not ("*" in resources and len(resources) > 1)
        for res in resources:
            actions = []
            for j, action in enumerate(self.sample(RULE_ACTIONS, 1, 3)):
                a: dict[str, Any] = {"action": action, "effect": self.pick(EFFECTS)}
                if self.rng.random() < 0.5:
                    a["condition"] = self.condition(gen)
                if self.rng.random() < 0.3:
                    a["name"] = f"p_{res.replace(':', '_').replace('*', 'any')}_{j}"
                if outputs and self.rng.random() < 0.2:
                    a["output"] = self.output(gen)
                actions.append(a)
            rules.append({"resource": res, "actions": actions})
        body: dict[str, Any] = {"principal": pid, "version": "default"}
        if scope:
            body["scope"] = scope
            if perms.get(scope):
                body["scopePermissions"] = perms[scope]
        body["rules"] = rules
        return {"principalPolicy": body}

    def role_policy(
        self, role: str, scope: str, parents: list[str], kinds: list[str], names: Names
    ) -> dict[str, Any]:
        gen = Gen(self.rng, Names(globals_=names.globals_))
        rules = []
        # Stock Cerbos caches a role rule's condition under its position among the rules for
        # the same `resource`, shared by the rules at that position for other resources (a bug:
        # test_role_policy_rules_sharing_a_cerbos_cache_key): one condition per position.
        positions: dict[str, int] = {}
        conditional: set[int] = set()
        for _ in range(self.rng.randint(1, 3)):
            rule: dict[str, Any] = {
                "resource": self.pick([*kinds, "*"]),
                "allowActions": self.sample(RULE_ACTIONS, 1, 3),
            }
            i = positions[rule["resource"]] = positions.get(rule["resource"], -1) + 1
            if self.rng.random() < 0.4 and i not in conditional:
                rule["condition"] = self.condition(gen)
                conditional.add(i)
            rules.append(rule)
        return {
            "rolePolicy": {
                "role": role,
                "scope": scope,
                # unspecified here conflicts with the resource policies of the scope
                "scopePermissions": "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS",
                "parentRoles": parents,
                "rules": rules,
            }
        }


def _closed(scopes: list[str]) -> list[str]:
    """`scopes` plus all their ancestors, parents first."""
    out: set[str] = set()
    for s in scopes:
        parts = s.split(".")
        out.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(out, key=lambda s: (s.count("."), s))


def generate_store(seed: int, features: Features | None = None) -> Store:
    """A valid Cerbos 0.55 store for `seed` (the same files for the same seed)."""
    f = features or Features()
    b = _Builder(seed, f)
    rng = b.rng
    names = Names(globals_=b.globals_())
    roles = b.sample(ROLES, 2, 4)
    kinds = b.sample(KINDS, 1, 3)
    scopes = _closed(b.sample(SCOPES, 1, 3)) if f.scopes else []
    perms: dict[str, str | None] = {s: b.pick(PERMISSIONS) for s in scopes}
    role_scopes: dict[str, str] = {}
    if f.role_policies and scopes:
        for i in range(rng.randint(0, 2)):
            role_scopes[f"{b.pick(scopes).replace('.', '_')}_role{i}"] = b.pick(scopes)
    # Stock Cerbos often refuses a role policy that shares its scope with other policies
    # ("conflicting scopePermissions", even when all say REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS),
    # so resource and principal policies live outside role-policy scopes and their subtrees.
    taken = set(role_scopes.values())
    free = [s for s in scopes if not set(_closed([s])) & taken]

    exported = Names(globals_=names.globals_)
    const_sets, var_sets = b.exports(exported)
    dr_sets = b.derived_roles(names, roles)
    names.derived_roles = [n for _, ns in dr_sets for n in ns]
    ctx = (names, const_sets, var_sets, exported, dr_sets, roles)

    versions = ["default"]
    for kind in kinds:
        kind_versions = ["default"] + (["v2"] if rng.random() < 0.3 else [])
        for version in kind_versions:
            if version not in versions:
                versions.append(version)
            chosen = _closed(b.sample(free, 0, len(free))) if free else []
            for scope in ["", *chosen]:
                doc = b.resource_policy(kind, version, scope, perms, ctx)
                b.add(f"{scope or 'root'}/{kind.replace(':', '_')}", doc)
    if f.principal_policies:
        for pid in b.sample(PRINCIPALS, 0, 2):
            b.add(f"principal_{pid}", b.principal_policy(pid, "", perms, kinds, names))
            if free and rng.random() < 0.5:
                for scope in _closed([b.pick(free)]):
                    doc = b.principal_policy(pid, scope, perms, kinds, names)
                    b.add(f"{scope}/principal_{pid}", doc)
    for role, scope in role_scopes.items():
        parents = b.sample(roles, 1, 2)
        b.add(f"{scope}/role_{role}", b.role_policy(role, scope, parents, kinds, names))
    return Store(
        seed=seed,
        files=b.files,
        globals_=names.globals_,
        kinds=kinds,
        roles=[*roles, *role_scopes],
        scopes=scopes,
        versions=versions,
        derived_roles=names.derived_roles,
    )
