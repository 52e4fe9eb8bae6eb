"""Compile parsed Cerbos documents into indexed resource policies.

Every problem becomes a `CompileIssue` (file, JSON-ish path, message) and compilation carries on,
so one run reports all the errors of a bundle.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from cel_expr_python import cel

from .deps import dependencies
from .globs import compile_action_glob
from .loader import LoadedFile
from .model import (
    DEFAULT_VERSION,
    EFFECT_ALLOW,
    EFFECT_DENY,
    CompileIssue,
    Condition,
    DerivedRole,
    ResourcePolicy,
    Rule,
)
from .substitute import Inliner, SubstitutionError

_NAME_RE = re.compile(r"^[A-Za-z][\w\-.@]*$")
_SCOPE_RE = re.compile(r"^([0-9A-Za-z][\w\-]*)(\.[\w\-]+)*$")
_RUNTIME_RE = re.compile(r"\bruntime\b")
_SUPPORTED_KINDS = ("resourcePolicy", "derivedRoles")
_KNOWN_KINDS = (
    "principalPolicy",
    "rolePolicy",
    "exportVariables",
    "exportConstants",
)


def policy_key(kind: str, version: str, scope: str) -> str:
    """Cerbos' policy key: `resource.<kind>.v<version>` plus `/<scope>` when scoped."""
    key = f"resource.{kind}.v{version}"
    return f"{key}/{scope}" if scope else key


@dataclass(slots=True)
class CompiledBundle:
    """Resource policies indexed by (kind, version, scope), ready for the engine."""

    policies: dict[tuple[str, str, str], ResourcePolicy]
    issues: list[CompileIssue]


@dataclass(slots=True)
class _DerivedRoleSet:
    name: str
    file: str
    roles: dict[str, DerivedRole] = field(default_factory=dict)


class Compiler:
    """Turns loaded documents into a `CompiledBundle`; `issues` collects every problem."""

    def __init__(self, env: cel.Env) -> None:
        self._env = env
        self._uids = itertools.count(1)
        self.issues: list[CompileIssue] = []

    # -- helpers -------------------------------------------------------------------------------

    def _issue(self, file: str, path: str, message: str) -> None:
        self.issues.append(CompileIssue(file, path, message))

    def _str_list(self, file: str, path: str, value: Any, *, required: bool) -> list[str]:
        if value is None:
            if required:
                self._issue(file, path, "is required")
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self._issue(file, path, "must be a list of non-empty strings")
            return []
        if required and not value:
            self._issue(file, path, "must not be empty")
        if len(set(value)) != len(value):
            self._issue(file, path, "must not contain duplicates")
        return list(value)

    def _params(self, file: str, path: str, body: dict[str, Any]) -> Inliner:
        """Local variables and constants of a policy (imports are not supported yet)."""
        variables: dict[str, str] = {}
        constants: dict[str, Any] = {}
        for section, target in (("variables", variables), ("constants", constants)):
            block = body.get(section)
            if block is None:
                continue
            if not isinstance(block, dict):
                self._issue(file, f"{path}.{section}", "must be a mapping")
                continue
            if block.get("import"):
                self._issue(
                    file, f"{path}.{section}.import", f"importing {section} is not supported yet"
                )
            local = block.get("local") or {}
            if not isinstance(local, dict):
                self._issue(file, f"{path}.{section}.local", "must be a mapping")
                continue
            for name, value in local.items():
                if section == "variables" and not isinstance(value, str):
                    self._issue(
                        file, f"{path}.{section}.local.{name}", "must be a CEL expression string"
                    )
                    continue
                target[str(name)] = value
        try:
            inliner = Inliner(variables, constants)
        except SubstitutionError as exc:
            self._issue(file, f"{path}.constants.local", str(exc))
            inliner = Inliner(variables, {})
        for name in variables:  # report undefined references/cycles even if unused
            try:
                inliner.expand(f"V.{name}")
            except SubstitutionError as exc:
                self._issue(file, f"{path}.variables.local.{name}", str(exc))
        return inliner

    def _match(self, file: str, path: str, match: Any, inliner: Inliner) -> Condition | None:
        """Compile a `match` block: each `expr` leaf separately, all/any/none as tree nodes."""
        if not isinstance(match, dict) or len(match) != 1:
            self._issue(file, path, "must have exactly one of expr, all, any, none")
            return None
        ((op, arg),) = match.items()
        if op == "expr":
            if not isinstance(arg, str) or not arg.strip():
                self._issue(file, f"{path}.expr", "must be a non-empty CEL expression string")
                return None
            try:
                src = inliner.expand(arg)
            except SubstitutionError as exc:
                self._issue(file, f"{path}.expr", str(exc))
                return None
            try:
                program = self._env.compile(src)
            except RuntimeError as exc:
                self._issue(file, f"{path}.expr", f"invalid CEL expression: {_clean(exc)}")
                return None
            return Condition("expr", src, program, (), bool(_RUNTIME_RE.search(src)))
        if op in ("all", "any", "none"):
            items = arg.get("of") if isinstance(arg, dict) else None
            if not isinstance(items, list) or not items:
                self._issue(file, f"{path}.{op}.of", "must be a non-empty list")
                return None
            parts = [
                self._match(file, f"{path}.{op}.of[{i}]", item, inliner)
                for i, item in enumerate(items)
            ]
            children = tuple(p for p in parts if p is not None)
            if len(children) != len(parts):
                return None
            # Newlines keep a trailing `// comment` of a leaf from swallowing the rest.
            joiner = " && " if op == "all" else " || "
            body = joiner.join(f"({c.source}\n)" for c in children)
            src = f"!({body}\n)" if op == "none" else body
            return Condition(op, src, None, children, any(c.uses_runtime for c in children))
        self._issue(file, f"{path}.{op}", "unknown operator (expected expr, all, any or none)")
        return None

    def _condition(self, file: str, path: str, cond: Any, inliner: Inliner) -> Condition | None:
        if cond is None:
            return None
        if not isinstance(cond, dict) or "match" not in cond:
            key = "script" if isinstance(cond, dict) and "script" in cond else ""
            msg = "condition.script is not supported" if key else "must contain `match`"
            self._issue(file, path, msg)
            return None
        root = self._match(file, f"{path}.match", cond["match"], inliner)
        if root is not None:
            self._fuse(root)
            root.deps = dependencies(root.source)
        return root

    def _fuse(self, cond: Condition) -> None:
        """Compile the largest `none`-free all/any subtrees into one program each (see
        `Condition`); a subtree whose fused source does not type-check stays a tree."""
        if cond.op == "expr":
            return
        if cond.op != "none" and not _has_none(cond):
            try:
                cond.program = self._env.compile(cond.source)
                return
            except RuntimeError:
                pass  # e.g. a leaf that is statically non-boolean: evaluate leaf by leaf
        for child in cond.children:
            self._fuse(child)

    # -- documents -----------------------------------------------------------------------------

    def derived_roles(self, lf: LoadedFile) -> _DerivedRoleSet | None:
        file, doc = lf.rel_path, lf.document["derivedRoles"]
        base = "derivedRoles"
        if not isinstance(doc, dict):
            self._issue(file, base, "must be a mapping")
            return None
        name = doc.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            self._issue(file, f"{base}.name", "must be a valid name")
            name = ""
        inliner = self._params(file, base, doc)
        out = _DerivedRoleSet(name, file)
        defs = doc.get("definitions")
        if not isinstance(defs, list) or not defs:
            self._issue(file, f"{base}.definitions", "must be a non-empty list")
            return out
        for i, d in enumerate(defs):
            p = f"{base}.definitions[{i}]"
            if not isinstance(d, dict):
                self._issue(file, p, "must be a mapping")
                continue
            dname = d.get("name")
            if not isinstance(dname, str) or not _NAME_RE.match(dname):
                self._issue(file, f"{p}.name", "must be a valid name")
                continue
            if dname in out.roles:
                self._issue(file, f"{p}.name", f"duplicate derived role '{dname}'")
            parents = self._str_list(file, f"{p}.parentRoles", d.get("parentRoles"), required=True)
            cond = self._condition(file, f"{p}.condition", d.get("condition"), inliner)
            out.roles[dname] = DerivedRole(next(self._uids), dname, frozenset(parents), cond, name)
        return out

    def resource_policy(
        self, lf: LoadedFile, derived: dict[str, _DerivedRoleSet]
    ) -> ResourcePolicy | None:
        file, doc = lf.rel_path, lf.document["resourcePolicy"]
        base = "resourcePolicy"
        if not isinstance(doc, dict):
            self._issue(file, base, "must be a mapping")
            return None
        kind = doc.get("resource")
        if not isinstance(kind, str) or not kind:
            self._issue(file, f"{base}.resource", "is required")
            kind = ""
        version = doc.get("version", DEFAULT_VERSION)
        if not isinstance(version, str) or not re.match(r"^[\w]+$", version):
            self._issue(file, f"{base}.version", "must match ^[0-9A-Za-z_]+$")
            version = DEFAULT_VERSION
        scope = doc.get("scope") or ""
        if not isinstance(scope, str) or (scope and not _SCOPE_RE.match(scope)):
            self._issue(file, f"{base}.scope", "must be dot-separated name segments")
            scope = ""
        perms = doc.get("scopePermissions")
        if perms not in (None, "", "SCOPE_PERMISSIONS_OVERRIDE_PARENT"):
            self._issue(file, f"{base}.scopePermissions", f"{perms} is not supported yet")
        inliner = self._params(file, base, doc)

        imported: dict[str, DerivedRole] = {}
        imports = self._str_list(
            file, f"{base}.importDerivedRoles", doc.get("importDerivedRoles"), required=False
        )
        for i, imp in enumerate(imports):
            drs = derived.get(imp)
            if drs is None:
                self._issue(
                    file, f"{base}.importDerivedRoles[{i}]", f"derived roles '{imp}' not found"
                )
                continue
            for rname, role in drs.roles.items():
                if rname in imported and imported[rname] is not role:
                    self._issue(
                        file,
                        f"{base}.importDerivedRoles[{i}]",
                        f"derived role '{rname}' is defined in more than one imported set",
                    )
                imported[rname] = role

        rules: list[Rule] = []
        raw_rules = doc.get("rules")
        if raw_rules is not None and not isinstance(raw_rules, list):
            self._issue(file, f"{base}.rules", "must be a list")
            raw_rules = []
        names: set[str] = set()
        for i, r in enumerate(raw_rules or []):
            rule = self._rule(file, f"{base}.rules[{i}]", i, r, imported, inliner, names)
            if rule is not None:
                rules.append(rule)
        key = policy_key(kind, version, scope)
        # Like Cerbos, only derived roles that some rule uses are evaluated and reported.
        used = {dr.name: dr for rule in rules for dr in rule.derived_roles}
        return ResourcePolicy(
            kind,
            version,
            scope,
            key,
            file,
            rules,
            used,
            uses_runtime=any(r.condition and r.condition.uses_runtime for r in rules),
        )

    def _rule(
        self,
        file: str,
        p: str,
        i: int,
        r: Any,
        imported: dict[str, DerivedRole],
        inliner: Inliner,
        names: set[str],
    ) -> Rule | None:
        if not isinstance(r, dict):
            self._issue(file, p, "must be a mapping")
            return None
        ok = True
        name = r.get("name")
        if name is None:
            name = f"rule-{i + 1:03d}"
        elif not isinstance(name, str) or not _NAME_RE.match(name):
            self._issue(file, f"{p}.name", "must be a valid name")
            ok = False
        elif name in names:
            self._issue(file, f"{p}.name", f"duplicate rule name '{name}'")
        names.add(str(name))
        actions = self._str_list(file, f"{p}.actions", r.get("actions"), required=True)
        matchers = []
        for j, a in enumerate(actions):
            try:
                matchers.append(compile_action_glob(a))
            except ValueError as exc:
                self._issue(file, f"{p}.actions[{j}]", str(exc))
                ok = False
        roles = self._str_list(file, f"{p}.roles", r.get("roles"), required=False)
        dr_names = self._str_list(file, f"{p}.derivedRoles", r.get("derivedRoles"), required=False)
        if not roles and not dr_names:
            self._issue(file, p, "rule needs at least one of roles or derivedRoles")
            ok = False
        drs: list[DerivedRole] = []
        for j, dn in enumerate(dr_names):
            if dn not in imported:
                self._issue(file, f"{p}.derivedRoles[{j}]", f"derived role '{dn}' is not imported")
                ok = False
            else:
                drs.append(imported[dn])
        effect = r.get("effect")
        if effect not in (EFFECT_ALLOW, EFFECT_DENY):
            self._issue(file, f"{p}.effect", "must be EFFECT_ALLOW or EFFECT_DENY")
            ok = False
        n_before = len(self.issues)
        cond = self._condition(file, f"{p}.condition", r.get("condition"), inliner)
        if len(self.issues) != n_before or not ok:
            return None
        return Rule(
            next(self._uids),
            str(name),
            tuple(actions),
            tuple(matchers),
            frozenset(roles),
            tuple(drs),
            str(effect),
            cond,
        )


def _has_none(cond: Condition) -> bool:
    return cond.op == "none" or any(_has_none(c) for c in cond.children)


def _clean(exc: Exception) -> str:
    return str(exc).replace("INVALID_ARGUMENT: ", "").strip()


def compile_files(env: cel.Env, files: list[LoadedFile]) -> CompiledBundle:
    """Compile derived roles first (resource policies import them), then resource policies."""
    c = Compiler(env)
    derived: dict[str, _DerivedRoleSet] = {}
    resource_files: list[LoadedFile] = []
    for lf in files:
        kinds = [k for k in (*_SUPPORTED_KINDS, *_KNOWN_KINDS) if k in lf.document]
        if len(kinds) != 1:
            c._issue(
                lf.rel_path,
                "",
                "must define exactly one policy (resourcePolicy, derivedRoles, ...)",
            )
            continue
        if kinds[0] in _KNOWN_KINDS:
            c._issue(lf.rel_path, kinds[0], f"{kinds[0]} is not supported yet")
            continue
        if kinds[0] == "derivedRoles":
            drs = c.derived_roles(lf)
            if drs is None or not drs.name:
                continue
            if drs.name in derived:
                c._issue(
                    lf.rel_path,
                    "derivedRoles.name",
                    f"derived roles '{drs.name}' already defined in {derived[drs.name].file}",
                )
                continue
            derived[drs.name] = drs
        else:
            resource_files.append(lf)
    policies: dict[tuple[str, str, str], ResourcePolicy] = {}
    for lf in resource_files:
        pol = c.resource_policy(lf, derived)
        if pol is None:
            continue
        k = (pol.kind, pol.version, pol.scope)
        if k in policies:
            c._issue(
                lf.rel_path, "resourcePolicy", f"{pol.key} already defined in {policies[k].file}"
            )
            continue
        policies[k] = pol
    for (kind, version, scope), pol in policies.items():  # Cerbos requires every ancestor scope
        parts = scope.split(".") if scope else []
        for n in range(len(parts) - 1, -1, -1):
            parent = ".".join(parts[:n])
            if (kind, version, parent) not in policies:
                c._issue(
                    pol.file,
                    "resourcePolicy.scope",
                    f"missing ancestor policy {policy_key(kind, version, parent)}",
                )
    return CompiledBundle(policies, c.issues)
