"""Compile parsed Cerbos documents into indexed resource policies.

Every problem becomes a `CompileIssue` (file, JSON-ish path, message) and compilation carries on,
so one run reports all the errors of a bundle.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from cel_expr_python import cel

from .celcompat import compile_source
from .deps import dependencies
from .globs import compile_action_glob, compile_kind_glob, sanitized_name
from .loader import LoadedFile
from .model import (
    DEFAULT_VERSION,
    EFFECT_ALLOW,
    EFFECT_DENY,
    CompileIssue,
    Condition,
    DerivedRole,
    PrincipalPolicy,
    ResourcePolicy,
    RolePolicy,
    RoleRule,
    Rule,
)
from .substitute import CONSTANT_ROOTS, Inliner, SubstitutionError, rewrite

_NAME_RE = re.compile(r"^[A-Za-z][\w\-.@]*$")
_SCOPE_RE = re.compile(r"^([0-9A-Za-z][\w\-]*)(\.[\w\-]+)*$")
_RUNTIME_RE = re.compile(r"\bruntime\b")
POLICY_KINDS = (
    "resourcePolicy",
    "derivedRoles",
    "principalPolicy",
    "rolePolicy",
    "exportVariables",
    "exportConstants",
)
_KNOWN_KINDS: tuple[str, ...] = ()
OVERRIDE_PARENT = "SCOPE_PERMISSIONS_OVERRIDE_PARENT"
REQUIRE_PARENTAL_CONSENT = "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS"
_SCOPE_PERMISSIONS = (OVERRIDE_PARENT, REQUIRE_PARENTAL_CONSENT)
#: Policy kinds with a `scope` field.
_SCOPED_KINDS = ("resourcePolicy", "principalPolicy", "rolePolicy")


def _key(kind: str, name: str, version: str, scope: str) -> str:
    """Cerbos' policy key as it reports it (`matchedPolicy`, decisions, output `src`): name and
    version sanitised (runs of characters other than word characters and `.` become `_`, so
    kind `album:object` is `resource.album_object.vdefault`), plus `/<scope>` when scoped."""
    key = f"{kind}.{sanitized_name(name)}.v{sanitized_name(version)}"
    return f"{key}/{scope}" if scope else key


def policy_key(kind: str, version: str, scope: str) -> str:
    """`resource.<kind>.v<version>[/<scope>]`."""
    return _key("resource", kind, version, scope)


def principal_policy_key(principal: str, version: str, scope: str) -> str:
    return _key("principal", principal, version, scope)


def role_policy_key(role: str, version: str, scope: str) -> str:
    return _key("role", role, version, scope)


@dataclass(slots=True)
class CompiledBundle:
    """Resource policies indexed by (kind, version, scope), ready for the engine, plus
    principal policies by (principal, version, scope) and role policies by (role, version,
    scope)."""

    policies: dict[tuple[str, str, str], ResourcePolicy]
    issues: list[CompileIssue]
    principals: dict[tuple[str, str, str], PrincipalPolicy] = field(default_factory=dict)
    roles: dict[tuple[str, str, str], RolePolicy] = field(default_factory=dict)


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
        # exportVariables / exportConstants by name: (file, definitions)
        self.exported: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
            "variables": {},
            "constants": {},
        }

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

    def _params(self, file: str, path: str, body: dict[str, Any], top_level: Any = None) -> Inliner:
        """Variables and constants of a policy: `import`ed export sets, then `local`, then the
        deprecated top-level `variables:` map of the document (still honoured by Cerbos; a name
        defined there and in the policy is an error, as in Cerbos)."""
        variables: dict[str, str] = {}
        constants: dict[str, Any] = {}
        imported_vars: set[str] = set()
        import_index: dict[str, int] = {}
        for section, target in (("variables", variables), ("constants", constants)):
            block = body.get(section)
            if block is None:
                continue
            if not isinstance(block, dict):
                self._issue(file, f"{path}.{section}", "must be a mapping")
                continue
            origin: dict[str, str] = {}
            imports = self._str_list(
                file, f"{path}.{section}.import", block.get("import"), required=False
            )
            for i, name in enumerate(imports):
                found = self.exported[section].get(name)
                if found is None:
                    kind = "exportVariables" if section == "variables" else "exportConstants"
                    self._issue(file, f"{path}.{section}.import[{i}]", f"{kind} '{name}' not found")
                    continue
                for vname, value in found[1].items():
                    if vname in target and origin.get(vname) != name:
                        self._issue(
                            file,
                            f"{path}.{section}.import[{i}]",
                            f"{section[:-1]} '{vname}' has multiple definitions "
                            f"(import {origin.get(vname)} and import {name})",
                        )
                    target[vname] = value
                    origin[vname] = name
                    if section == "variables":
                        imported_vars.add(vname)
                        import_index[vname] = i
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
                if str(name) in origin:
                    self._issue(
                        file,
                        f"{path}.{section}.local.{name}",
                        f"{section[:-1]} '{name}' has multiple definitions "
                        f"(import {origin[str(name)]} and local)",
                    )
                target[str(name)] = value
        top_names: set[str] = set()
        for name, value in (top_level or {}).items():
            if name in variables:
                self._issue(
                    file,
                    f"variables.{name}",
                    f"variable '{name}' has multiple definitions (in {path}.variables and in "
                    "the deprecated top-level variables)",
                )
                continue
            variables[name] = value
            top_names.add(name)
        try:
            inliner = Inliner(variables, constants)
        except SubstitutionError as exc:
            self._issue(file, f"{path}.constants.local", str(exc))
            inliner = Inliner(variables, {})
        for name in variables:  # report undefined references/cycles even if unused
            try:
                inliner.expand(f"V.{name}")
            except SubstitutionError as exc:
                if name in imported_vars:
                    # The export set itself was checked; what is left are its constants, which
                    # Cerbos resolves with the importing policy's (unused variables included).
                    self._issue(
                        file,
                        f"{path}.variables.import[{import_index[name]}]",
                        f"imported variable '{name}': {exc}",
                    )
                    continue
                where = (
                    f"variables.{name}" if name in top_names else f"{path}.variables.local.{name}"
                )
                self._issue(file, where, str(exc))
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
                program, src = compile_source(self._env, src)
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
        name = doc.get("name")  # its pattern is checked by docspec (Cerbos: ^[\w\-\.]+$)
        if not isinstance(name, str) or not name:
            self._issue(file, f"{base}.name", "is required")
            name = ""
        inliner = self._params(file, base, doc, lf.document.get("variables"))
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
            if not isinstance(dname, str) or not dname:
                self._issue(file, f"{p}.name", "is required")
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
        perms = self._scope_permissions(file, base, doc)
        inliner = self._params(file, base, doc, lf.document.get("variables"))

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
                if perms == REQUIRE_PARENTAL_CONSENT:
                    rule.negated = rule.effect == EFFECT_ALLOW and rule.condition is not None
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
            # outputs too: `runtime.effectiveDerivedRoles` in an output reads this level's set
            uses_runtime=any(
                (r.condition is not None and r.condition.uses_runtime)
                or any(_RUNTIME_RE.search(src) for src in r.output_sources)
                for r in rules
            ),
            scope_permissions=perms,
            schemas=doc.get("schemas"),
        )

    def _scope_permissions(self, file: str, base: str, doc: dict[str, Any]) -> str:
        perms = doc.get("scopePermissions")
        if perms in (None, "", "SCOPE_PERMISSIONS_UNSPECIFIED"):
            return OVERRIDE_PARENT
        if perms not in _SCOPE_PERMISSIONS:
            self._issue(file, f"{base}.scopePermissions", f"unknown scope permissions {perms!r}")
            return OVERRIDE_PARENT
        return str(perms)

    def _output(
        self, file: str, p: str, out: Any, inliner: Inliner
    ) -> tuple[Any, Any, tuple[str, ...]]:
        """`output.expr` (older form: on activation) or `output.when.{ruleActivated,
        conditionNotMet}`, compiled with the policy's variables and constants inlined; also
        returns the inlined sources."""
        if out is None:
            return None, None, ()
        if not isinstance(out, dict):
            self._issue(file, f"{p}.output", "must be a mapping")
            return None, None, ()
        srcs: dict[str, Any] = {}
        if out.get("expr") is not None:
            srcs["ruleActivated"] = (f"{p}.output.expr", out["expr"])
        when = out.get("when")
        if when is not None:
            if not isinstance(when, dict):
                self._issue(file, f"{p}.output.when", "must be a mapping")
                when = {}
            for k in ("ruleActivated", "conditionNotMet"):
                if when.get(k) is not None:
                    srcs[k] = (f"{p}.output.when.{k}", when[k])
        progs: dict[str, Any] = {}
        expanded: list[str] = []
        for k, (path, src) in srcs.items():
            if not isinstance(src, str) or not src.strip():
                self._issue(file, path, "must be a non-empty CEL expression string")
                continue
            try:
                progs[k], text = compile_source(self._env, inliner.expand(src, output=True))
                expanded.append(text)
            except SubstitutionError as exc:
                self._issue(file, path, str(exc))
            except RuntimeError as exc:
                self._issue(file, path, f"invalid CEL expression: {_clean(exc)}")
        return progs.get("ruleActivated"), progs.get("conditionNotMet"), tuple(expanded)

    def _action_matchers(self, file: str, p: str, actions: list[str]) -> list[Any] | None:
        out = []
        for j, a in enumerate(actions):
            try:
                out.append(compile_action_glob(a))
            except ValueError as exc:
                self._issue(file, f"{p}[{j}]", str(exc))
                return None
        return out

    def _head(
        self, file: str, base: str, doc: dict[str, Any], field_name: str
    ) -> tuple[str, str, str]:
        name = doc.get(field_name)
        if not isinstance(name, str) or not name:
            self._issue(file, f"{base}.{field_name}", "is required")
            name = ""
        version = doc.get("version", DEFAULT_VERSION)
        if not isinstance(version, str) or not re.match(r"^[\w]+$", version):
            self._issue(file, f"{base}.version", "must match ^[0-9A-Za-z_]+$")
            version = DEFAULT_VERSION
        scope = doc.get("scope") or ""
        if not isinstance(scope, str) or (scope and not _SCOPE_RE.match(scope)):
            self._issue(file, f"{base}.scope", "must be dot-separated name segments")
            scope = ""
        return name, version, scope

    def principal_policy(self, lf: LoadedFile) -> PrincipalPolicy | None:
        file, doc = lf.rel_path, lf.document["principalPolicy"]
        base = "principalPolicy"
        if not isinstance(doc, dict):
            self._issue(file, base, "must be a mapping")
            return None
        principal, version, scope = self._head(file, base, doc, "principal")
        perms = self._scope_permissions(file, base, doc)
        inliner = self._params(file, base, doc, lf.document.get("variables"))
        rules: list[Rule] = []
        resources: dict[str, str] = {}  # resource -> path of its rule (Cerbos' policy.Validate)
        for p, rr, res, res_matcher in self._resource_rules(file, base, doc, principal=True):
            if res in resources:
                self._issue(file, p, f"duplicate resource '{res}' (also at {resources[res]})")
            resources.setdefault(res, p)
            acts = rr.get("actions")
            if not isinstance(acts, list) or not acts:
                self._issue(file, f"{p}.actions", "must be a non-empty list")
                continue
            names: set[str] = set()
            for j, a in enumerate(acts):
                ap = f"{p}.actions[{j}]"
                if not isinstance(a, dict):
                    self._issue(file, ap, "must be a mapping")
                    continue
                action = a.get("action")
                if not isinstance(action, str) or not action:
                    self._issue(file, f"{ap}.action", "is required")
                    continue
                name = a.get("name")
                if name is None:
                    name = f"{res}_rule-{j + 1:03d}"
                elif not isinstance(name, str) or not _NAME_RE.match(name):
                    self._issue(file, f"{ap}.name", "must be a valid name")
                    continue
                elif name in names:
                    self._issue(file, f"{ap}.name", f"duplicate action rule name '{name}'")
                    continue
                matchers = self._action_matchers(file, f"{ap}.action", [action])
                effect = a.get("effect")
                if effect not in (EFFECT_ALLOW, EFFECT_DENY):
                    self._issue(file, f"{ap}.effect", "must be EFFECT_ALLOW or EFFECT_DENY")
                    continue
                n_before = len(self.issues)
                cond = self._condition(file, f"{ap}.condition", a.get("condition"), inliner)
                on, off, out_src = self._output(file, ap, a.get("output"), inliner)
                if len(self.issues) != n_before or matchers is None:
                    continue
                names.add(name)
                rule = Rule(
                    next(self._uids),
                    name,
                    (action,),
                    tuple(matchers),
                    frozenset({"*"}),
                    (),
                    str(effect),
                    cond,
                    resource_matchers=(res_matcher,),
                    output_activated=on,
                    output_not_met=off,
                    output_sources=out_src,
                )
                if perms == REQUIRE_PARENTAL_CONSENT:
                    rule.negated = rule.effect == EFFECT_ALLOW and cond is not None
                rules.append(rule)
        key = principal_policy_key(principal, version, scope)
        return PrincipalPolicy(principal, version, scope, key, file, rules, perms)

    def role_policy(self, lf: LoadedFile) -> RolePolicy | None:
        file, doc = lf.rel_path, lf.document["rolePolicy"]
        base = "rolePolicy"
        if not isinstance(doc, dict):
            self._issue(file, base, "must be a mapping")
            return None
        role, version, scope = self._head(file, base, doc, "role")
        parents = self._str_list(
            file, f"{base}.parentRoles", doc.get("parentRoles"), required=False
        )
        inliner = self._params(file, base, doc, lf.document.get("variables"))
        rules: list[RoleRule] = []
        for p, rr, _res, res_matcher in self._resource_rules(file, base, doc, principal=False):
            acts = self._str_list(file, f"{p}.allowActions", rr.get("allowActions"), required=True)
            matchers = self._action_matchers(file, f"{p}.allowActions", acts)
            n_before = len(self.issues)
            cond = self._condition(file, f"{p}.condition", rr.get("condition"), inliner)
            if len(self.issues) != n_before or matchers is None:
                continue
            rules.append(RoleRule(next(self._uids), (res_matcher,), tuple(matchers), cond))
        key = role_policy_key(role, version, scope)
        return RolePolicy(role, version, scope, key, file, tuple(parents), rules)

    def _resource_rules(
        self, file: str, base: str, doc: dict[str, Any], *, principal: bool
    ) -> Iterator[tuple[str, dict[str, Any], str, Any]]:
        """The `rules` of a principal or role policy that are mappings with a valid `resource`
        glob: (JSON path, rule, resource, compiled glob on request kinds, see
        `compile_kind_glob`). Problems are reported, rules skipped."""
        raw_rules = doc.get("rules")
        if raw_rules is not None and not isinstance(raw_rules, list):
            self._issue(file, f"{base}.rules", "must be a list")
            raw_rules = []
        for i, rr in enumerate(raw_rules or []):
            p = f"{base}.rules[{i}]"
            if not isinstance(rr, dict):
                self._issue(file, p, "must be a mapping")
                continue
            res = rr.get("resource")
            if not isinstance(res, str) or not res:
                self._issue(file, f"{p}.resource", "is required")
                continue
            try:
                res_matcher = compile_kind_glob(res, sanitize_literal=principal)
            except ValueError as exc:
                self._issue(file, f"{p}.resource", str(exc))
                continue
            yield p, rr, res, res_matcher

    def export(self, lf: LoadedFile, kind: str) -> None:
        """exportVariables / exportConstants: a named set of definitions to import."""
        file, doc = lf.rel_path, lf.document[kind]
        if not isinstance(doc, dict):
            self._issue(file, kind, "must be a mapping")
            return
        if lf.document.get("variables"):  # as Cerbos' policy.Validate
            self._issue(
                file,
                "variables",
                f"{kind} policies do not support the deprecated top-level variables field",
            )
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            self._issue(file, f"{kind}.name", "is required")
            return
        defs = doc.get("definitions")
        if not isinstance(defs, dict) or not defs:
            self._issue(file, f"{kind}.definitions", "must be a non-empty mapping")
            return
        section = "variables" if kind == "exportVariables" else "constants"
        if name in self.exported[section]:
            self._issue(
                file,
                f"{kind}.name",
                f"{kind} '{name}' already defined in {self.exported[section][name][0]}",
            )
            return
        ok = True
        if section == "variables":
            for vname, value in defs.items():
                if not isinstance(value, str):
                    self._issue(
                        file, f"{kind}.definitions.{vname}", "must be a CEL expression string"
                    )
                    ok = False
            if ok:
                # Constants are resolved in each importing policy's scope (as in Cerbos), so
                # on its own an export is checked with every `C.x` as an untyped placeholder.
                inliner = Inliner({str(k): _defer_constants(v) for k, v in defs.items()}, {})
                for vname in defs:
                    try:
                        src = inliner.expand(f"V.{vname}")
                    except SubstitutionError as exc:
                        self._issue(file, f"{kind}.definitions.{vname}", str(exc))
                        ok = False
                        continue
                    try:
                        compile_source(self._env, src)
                    except RuntimeError as exc:
                        self._issue(
                            file,
                            f"{kind}.definitions.{vname}",
                            f"invalid CEL expression: {_clean(exc)}",
                        )
                        ok = False
        else:
            try:
                Inliner({}, {str(k): v for k, v in defs.items()})
            except SubstitutionError as exc:
                self._issue(file, f"{kind}.definitions", str(exc))
                ok = False
        self.exported[section][name] = (file, {str(k): v for k, v in defs.items()} if ok else {})

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
        on, off, out_src = self._output(file, p, r.get("output"), inliner)
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
            output_activated=on,
            output_not_met=off,
            output_sources=out_src,
        )


def _defer_constants(src: Any) -> Any:
    """An exported variable's source with `C.x`/`constants.x` as `dyn(null)`, for checking
    the export on its own (the importing policy supplies the constants)."""
    if not isinstance(src, str):
        return src
    return rewrite(src, lambda root, _name: "dyn(null)" if root in CONSTANT_ROOTS else None)


def _has_none(cond: Condition) -> bool:
    return cond.op == "none" or any(_has_none(c) for c in cond.children)


def _clean(exc: Exception) -> str:
    return str(exc).replace("INVALID_ARGUMENT: ", "").strip()


class _Keyed(Protocol):
    file: str
    key: str


_P = TypeVar("_P", bound=_Keyed)


def _index(
    c: Any,
    kind: str,
    compiled: Iterable[_P | None],
    key_of: Callable[[_P], tuple[str, str, str]],
) -> dict[tuple[str, str, str], _P]:
    """Policies of one kind by (name, version, scope); a second one with the same key is a
    compile error in its own file."""
    out: dict[tuple[str, str, str], _P] = {}
    for pol in compiled:
        if pol is None:
            continue
        k = key_of(pol)
        if k in out:
            c._issue(pol.file, kind, f"{pol.key} already defined in {out[k].file}")
            continue
        out[k] = pol
    return out


_UNSPECIFIED_PERMISSIONS = "SCOPE_PERMISSIONS_UNSPECIFIED"
_PERMISSION_NUMBERS = (_UNSPECIFIED_PERMISSIONS, OVERRIDE_PARENT, REQUIRE_PARENTAL_CONSENT)


def _check_shared_scope_permissions(c: Compiler, docs: list[tuple[LoadedFile, str]]) -> None:
    """Refuse the stores Cerbos 0.55 refuses with "policies sharing scope S have conflicting
    scopePermissions", exactly as its index build decides it (internal/storage/index, addPolicy):
    policies are visited in the order of its directory walk (path components in byte order);
    per scope string (every policy kind; derived roles and exports are in scope ""), the
    first policy visited is not recorded, and each later one adds its `scopePermissions` as
    written (unspecified and `SCOPE_PERMISSIONS_OVERRIDE_PARENT` are different values; role
    policies, derived roles and exports have none, i.e. unspecified); two different values
    recorded make a conflict. So a role policy sharing its scope with two resource policies
    that set a value conflicts, while two resource policies of one scope disagreeing do not
    when only the first visited sets it. Reported at the policy that completed the conflict."""
    recorded: dict[str, set[str]] = {}
    conflicting: set[str] = set()
    for lf, kind in sorted(docs, key=lambda d: d[0].rel_path.split("/")):
        body = lf.document[kind]
        scope = str(body.get("scope") or "") if kind in _SCOPED_KINDS else ""
        perms: Any = None
        if kind in ("resourcePolicy", "principalPolicy"):
            perms = body.get("scopePermissions")
        if isinstance(perms, int) and 0 <= perms < len(_PERMISSION_NUMBERS):
            perms = _PERMISSION_NUMBERS[perms]
        seen = recorded.get(scope)
        if seen is None:
            recorded[scope] = set()
            continue
        if scope in conflicting:
            continue
        seen.add(str(perms or _UNSPECIFIED_PERMISSIONS))
        if len(seen) > 1:
            conflicting.add(scope)
            field = {"rolePolicy": ".scope"}.get(kind, ".scopePermissions")
            c._issue(
                lf.rel_path,
                kind + (field if kind in _SCOPED_KINDS else ""),
                f"policies sharing scope {scope} have conflicting scopePermissions",
            )


def compile_files(env: cel.Env, files: list[LoadedFile]) -> CompiledBundle:
    """Compile exported variables/constants first, then derived roles, then the policies that
    import them. Documents with `disabled: true` are skipped."""
    c = Compiler(env)
    derived: dict[str, _DerivedRoleSet] = {}
    by_kind: dict[str, list[LoadedFile]] = {k: [] for k in POLICY_KINDS}
    for lf in files:
        kinds = [k for k in POLICY_KINDS if k in lf.document]
        if len(kinds) != 1:
            c._issue(
                lf.rel_path,
                "",
                "must define exactly one policy (resourcePolicy, derivedRoles, ...)",
            )
            continue
        if lf.document.get("disabled") is True:
            continue
        by_kind[kinds[0]].append(lf)
    _check_shared_scope_permissions(c, [(lf, k) for k, lfs in by_kind.items() for lf in lfs])
    for kind in ("exportVariables", "exportConstants"):
        for lf in by_kind[kind]:
            c.export(lf, kind)
    for lf in by_kind["derivedRoles"]:
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
    policies: dict[tuple[str, str, str], ResourcePolicy] = _index(
        c,
        "resourcePolicy",
        (c.resource_policy(lf, derived) for lf in by_kind["resourcePolicy"]),
        lambda pol: (pol.kind, pol.version, pol.scope),
    )
    principals: dict[tuple[str, str, str], PrincipalPolicy] = _index(
        c,
        "principalPolicy",
        (c.principal_policy(lf) for lf in by_kind["principalPolicy"]),
        lambda pp: (pp.principal, pp.version, pp.scope),
    )
    roles: dict[tuple[str, str, str], RolePolicy] = _index(
        c,
        "rolePolicy",
        (c.role_policy(lf) for lf in by_kind["rolePolicy"]),
        lambda rp: (rp.role, rp.version, rp.scope),
    )
    groups: list[tuple[str, str, dict[Any, Any], Any]] = [
        ("resourcePolicy", "resource", policies, policy_key),
        ("principalPolicy", "principal", principals, principal_policy_key),
    ]
    for base, _, table, keyfn in groups:  # Cerbos requires every ancestor scope
        for (name, version, scope), pol in table.items():
            parts = scope.split(".") if scope else []
            for n in range(len(parts) - 1, -1, -1):
                parent = ".".join(parts[:n])
                if (name, version, parent) not in table:
                    c._issue(
                        pol.file,
                        f"{base}.scope",
                        f"missing ancestor policy {keyfn(name, version, parent)}",
                    )
    return CompiledBundle(policies, c.issues, principals, roles)
