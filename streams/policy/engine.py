"""`PolicyEngine`: compile a bundle once, then answer `check()` calls on the hot path.

Evaluation follows the stock Cerbos rule-table evaluator (0.55): for each action and each of the
principal's roles, walk the resource policy's scope chain from the requested scope up to the root;
at the first level where a rule for (action, role) is satisfied, a DENY wins over any ALLOW at
that level, otherwise the ALLOW decides. Across roles the first ALLOW wins, then the first DENY;
nothing matched means DENY. A condition that fails to evaluate counts as false and is reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cel_expr_python import cel

from . import cel_env
from .compiler import compile_files, policy_key
from .loader import load_directory
from .model import (
    DEFAULT_VERSION,
    EFFECT_ALLOW,
    EFFECT_DENY,
    NO_MATCH,
    ActionResult,
    CheckResult,
    CompileIssue,
    Condition,
    DerivedRole,
    PolicyCompileError,
    ResourcePolicy,
)

_EMPTY: dict[str, Any] = {}


class _Check:
    """Per-call evaluation state: one Activation, and caches so each condition runs once."""

    __slots__ = (
        "activation",
        "data",
        "dr_cache",
        "cond_cache",
        "level_edr",
        "level_act",
        "errors",
        "functions",
    )

    def __init__(
        self, env: cel.Env, data: dict[str, Any], functions: list[cel.Function] | None
    ) -> None:
        self.data = data
        self.functions = functions
        self.activation = (
            env.Activation(data, functions=functions) if functions else env.Activation(data)
        )
        self.dr_cache: dict[int, bool] = {}
        self.cond_cache: dict[int, bool] = {}
        self.level_edr: dict[str, list[str]] = {}
        self.level_act: dict[str, Any] = {}
        self.errors: list[str] = []

    def evaluate(self, cond: Condition, activation: Any, label: str) -> bool:
        """Cerbos semantics: a leaf is true only for a boolean true; a leaf that errors (or
        returns a non-boolean) is false and recorded; then all/any/none combine booleans."""
        op = cond.op
        if op == "expr":
            return self._leaf(cond, activation, label)
        if op == "all":
            return all(self.evaluate(c, activation, label) for c in cond.children)
        if op == "any":
            return any(self.evaluate(c, activation, label) for c in cond.children)
        return not any(self.evaluate(c, activation, label) for c in cond.children)

    def _leaf(self, cond: Condition, activation: Any, label: str) -> bool:
        try:
            value = cond.program.eval(activation)
        except Exception as exc:  # a custom function raised: same as a CEL error
            self.errors.append(f"{label}: {exc}")
            return False
        v = value.value()
        if v is True:
            return True
        if v is False:
            return False
        if value.type() == cel.Type.ERROR:
            self.errors.append(f"{label}: {v}")
        else:
            self.errors.append(f"{label}: condition returned {value.type().name()}, not bool")
        return False


class PolicyEngine:
    """A compiled, immutable policy bundle. Build with `from_directory`; share freely."""

    def __init__(
        self,
        env: cel.Env,
        policies: dict[tuple[str, str, str], ResourcePolicy],
        digest: str,
        *,
        globals_: Mapping[str, Any] | None = None,
        skipped: list[str] | None = None,
    ) -> None:
        self._env = env
        self._policies = policies
        self.digest = digest
        self.skipped_files = list(skipped or [])
        self._globals = cel_env.to_cel_data(dict(globals_ or {}))
        self._chains: dict[tuple[str, str, str], tuple[ResourcePolicy, ...]] = {}
        for kind, version, scope in policies:
            chain = []
            parts = scope.split(".") if scope else []
            for n in range(len(parts), -1, -1):
                pol = policies.get((kind, version, ".".join(parts[:n])))
                if pol is not None:
                    chain.append(pol)
            self._chains[(kind, version, scope)] = tuple(chain)
        self._uses_time = any(
            "now" in leaf.source or "timeSince" in leaf.source
            for c in self._conditions()
            for leaf in c.leaves()
        )

    def _conditions(self) -> list[Condition]:
        out: list[Condition] = []
        for pol in self._policies.values():
            out.extend(r.condition for r in pol.rules if r.condition is not None)
            out.extend(d.condition for d in pol.derived_roles.values() if d.condition is not None)
        return out

    @classmethod
    def from_directory(
        cls, directory: str | Path, *, globals_: Mapping[str, Any] | None = None
    ) -> PolicyEngine:
        """Load and compile every policy under `directory`; raises `PolicyCompileError` with
        all problems found."""
        bundle = load_directory(directory)
        env = cel_env.new_env()
        compiled = compile_files(env, bundle.files)
        issues: list[CompileIssue] = [*bundle.issues, *compiled.issues]
        if issues:
            raise PolicyCompileError(issues)
        return cls(env, compiled.policies, bundle.digest, globals_=globals_, skipped=bundle.skipped)

    @property
    def policy_keys(self) -> list[str]:
        """Keys of all loaded resource policies (for diagnostics and the health endpoint)."""
        return sorted(p.key for p in self._policies.values())

    def check(
        self,
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
        actions: Sequence[str],
        *,
        aux_data: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> CheckResult:
        """Decide every action for one principal/resource pair."""
        kind = resource.get("kind", "")
        version = resource.get("policyVersion") or DEFAULT_VERSION
        scope = resource.get("scope") or ""
        chain = self._chains.get((kind, version, scope))
        if not chain:
            return CheckResult(
                {a: ActionResult(EFFECT_DENY, NO_MATCH, None, "") for a in actions}, [], []
            )
        roles: list[str] = list(principal.get("roles") or ())
        p = {
            "id": principal.get("id", ""),
            "roles": roles,
            "attr": cel_env.to_cel_data(principal.get("attr") or _EMPTY),
            "policyVersion": principal.get("policyVersion") or DEFAULT_VERSION,
            "scope": principal.get("scope") or "",
        }
        r = {
            "kind": kind,
            "id": resource.get("id", ""),
            "attr": cel_env.to_cel_data(resource.get("attr") or _EMPTY),
            "policyVersion": version,
            "scope": scope,
        }
        aux = cel_env.to_cel_data(dict(aux_data)) if aux_data else {}
        aux.setdefault("jwt", {})
        request = {"principal": p, "resource": r, "auxData": aux}
        data = {
            "request": request,
            "P": p,
            "R": r,
            "G": self._globals,
            "globals": self._globals,
            "runtime": {"effectiveDerivedRoles": []},
        }
        functions = None
        if self._uses_time:
            if now is None:
                now = dt.datetime.now(dt.UTC)
            elif now.tzinfo is None:
                now = now.replace(tzinfo=dt.UTC)
            functions = cel_env.time_functions(now)
        st = _Check(self._env, data, functions)
        main_key = chain[0].key
        out: dict[str, ActionResult] = {}
        for action in actions:
            out[action] = self._decide(st, chain, roles, action, main_key)
        edr = sorted({n for names in st.level_edr.values() for n in names})
        return CheckResult(out, edr, st.errors)

    def _decide(
        self,
        st: _Check,
        chain: tuple[ResourcePolicy, ...],
        roles: list[str],
        action: str,
        main_key: str,
    ) -> ActionResult:
        final: ActionResult | None = None
        for role in roles:
            role_result: ActionResult | None = None
            for level in chain:
                activation = self._level(st, level, roles)
                allow_rule: str | None = None
                deny_rule: str | None = None
                for rule, dr in level.bindings(action, role):
                    if dr is not None and not self._derived_role(st, dr):
                        continue
                    cond = rule.condition
                    if cond is not None:
                        sat = st.cond_cache.get(rule.uid)
                        if sat is None:
                            sat = st.evaluate(cond, activation, f"{level.key}#{rule.name}")
                            st.cond_cache[rule.uid] = sat
                        if not sat:
                            continue
                    if rule.effect == EFFECT_DENY:
                        deny_rule = rule.name
                        break
                    if allow_rule is None:
                        allow_rule = rule.name
                if deny_rule is not None:
                    role_result = ActionResult(EFFECT_DENY, main_key, deny_rule, level.scope)
                    break
                if allow_rule is not None:
                    role_result = ActionResult(EFFECT_ALLOW, main_key, allow_rule, level.scope)
                    break
            if role_result is None:
                continue
            if final is None:
                final = role_result
            if role_result.effect == EFFECT_ALLOW:
                final = role_result
                break
        # The policy exists but no rule matched: Cerbos reports DENY against the policy key.
        return final or ActionResult(EFFECT_DENY, main_key, None, "")

    def _derived_role(self, st: _Check, dr: DerivedRole) -> bool:
        sat = st.dr_cache.get(dr.uid)
        if sat is None:
            if dr.condition is None:
                sat = True
            else:
                sat = st.evaluate(
                    dr.condition, st.activation, f"derived role {dr.origin}/{dr.name}"
                )
            st.dr_cache[dr.uid] = sat
        return sat

    def _level(self, st: _Check, level: ResourcePolicy, roles: list[str]) -> Any:
        """Activation for a scope level; computes its effective derived roles on first visit."""
        act = st.level_act.get(level.scope)
        if act is not None:
            return act
        names = [
            name
            for name, dr in level.derived_roles.items()
            if any(dr.has_parent(role) for role in roles) and self._derived_role(st, dr)
        ]
        st.level_edr[level.scope] = names
        if level.uses_runtime:
            data = dict(st.data)
            data["runtime"] = {"effectiveDerivedRoles": sorted(names)}
            act = (
                self._env.Activation(data, functions=st.functions)
                if st.functions
                else self._env.Activation(data)
            )
        else:
            act = st.activation
        st.level_act[level.scope] = act
        return act


__all__ = ["PolicyEngine", "policy_key"]
