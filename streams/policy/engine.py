"""`PolicyEngine`: compile a bundle once, then answer `check()` calls on the hot path.

Evaluation follows the stock Cerbos rule-table evaluator (0.55): for each action and each of the
principal's roles, walk the resource policy's scope chain from the requested scope up to the root;
at the first level where a rule for (action, role) is satisfied, a DENY wins over any ALLOW at
that level, otherwise the ALLOW decides. Across roles the first ALLOW wins, then the first DENY;
nothing matched means DENY. A condition that fails to evaluate counts as false and is reported
(with `strict_evaluation`, it denies the actions that consulted it: `_StrictCheck`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cel_expr_python import cel

from . import cel_env
from .celerrors import cerbos_error_text
from .compiler import (
    OVERRIDE_PARENT,
    REQUIRE_PARENTAL_CONSENT,
    compile_files,
    policy_key,
    principal_policy_key,
)
from .deps import reads_clock
from .loader import load_directory
from .memokey import KeyFunction, compile_key_function
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
    OutputEntry,
    PolicyCompileError,
    PrincipalPolicy,
    ResourcePolicy,
    RolePolicy,
    RoleRule,
    Rule,
)
from .schemas import SchemaValidator

_EMPTY: dict[str, Any] = {}
_MEMO_LIMIT = 65_536
_GROUP_PROGRAM_LIMIT = 1_024


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now


class CheckMemo:
    """Condition results shared by the checks of one batch (e.g. all grants of a subject).

    Create one per batch with `engine.new_memo(now=...)` (or `CheckMemo(now)`) and pass it as
    `check(..., memo=memo)`. Every condition whose dependencies are statically known (see
    `deps.py`) is cached under (condition, values at its attribute paths), so a check that
    agrees with an earlier one on what a condition reads reuses its result and error messages;
    `now()` is the memo's fixed `now` for all its checks. Results are identical to checks
    without a memo with the same `now`. Not thread-safe; bound to the first engine it is used
    with; keep it short-lived (it holds results, not requests, and is capped in size).
    """

    __slots__ = ("now", "hits", "misses", "check_hits", "_engine", "_results", "_checks", "_max")

    def __init__(self, now: dt.datetime | None = None, *, max_entries: int = _MEMO_LIMIT) -> None:
        self.now = _utc(now)
        self.hits = 0  # conditions answered from the memo
        self.misses = 0  # conditions evaluated (and stored, when cacheable)
        self._engine: PolicyEngine | None = None
        self._results: dict[tuple[Any, ...], tuple[bool, tuple[str, ...]]] = {}
        # Whole checks, keyed on (resource chain, roles, actions, every value the chain reads).
        self.check_hits = 0
        self._checks: dict[tuple[Any, ...], CheckResult] = {}
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._results)

    def _store(self, key: tuple[Any, ...], value: tuple[bool, tuple[str, ...]]) -> None:
        if len(self._results) >= self._max:
            self._results.clear()
        self._results[key] = value

    def _store_check(self, key: tuple[Any, ...], result: CheckResult) -> None:
        if len(self._checks) >= self._max:
            self._checks.clear()
        self._checks[key] = result


# -- memo keys: the values at a condition's dependency paths, as hashable, type-exact keys ------


class _Uncacheable(Exception):
    """A value we cannot key exactly (unhashable object, NaN): evaluate, do not share."""


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_MISSING = _Sentinel("missing")  # (_MISSING, depth): the key at path[depth] is absent
_NOT_MAP = _Sentinel("not-a-map")  # (_NOT_MAP, depth, value): selecting into a non-map
_TRUE = _Sentinel("true")  # bools must not collide with 1.0 / 0.0
_FALSE = _Sentinel("false")
_NEG_ZERO = _Sentinel("-0.0")
_INT = _Sentinel("int")
_LIST = _Sentinel("list")
_MAP = _Sentinel("map")
_UNCACHEABLE = _Sentinel("uncacheable")
_UNSET = _Sentinel("unset")


def _fkey(v: float) -> Any:
    if v != v:
        raise _Uncacheable("NaN")
    if v == 0.0 and math.copysign(1.0, v) < 0:
        return _NEG_ZERO
    return v


def _freeze(v: Any, conv: bool) -> Any:
    """Hashable image of `v` that is equal only for values CEL sees as identical. With `conv`,
    mirrors `cel_env.to_cel_data` (ints become doubles, tuples lists, mappings dicts)."""
    t = type(v)
    if t is str or v is None:
        return v
    if t is bool:
        return _TRUE if v else _FALSE
    if t is float:
        return _fkey(v)
    if t is int:
        return _fkey(float(v)) if conv else (_INT, v)
    if t is dict or (conv and isinstance(v, Mapping)):
        return (
            _MAP,
            tuple((k if type(k) is str else (type(k), k), _freeze(x, conv)) for k, x in v.items()),
        )
    if t is list or (conv and t is tuple):
        return (_LIST, tuple(_freeze(x, conv) for x in v))
    if conv:
        if isinstance(v, int):
            return _fkey(float(v))
        try:
            hash(v)
        except TypeError:
            raise _Uncacheable(t.__name__) from None
        return (t, v)
    raise _Uncacheable(t.__name__)


def _walk(cur: Any, path: tuple[str, ...], i: int, conv: bool) -> Any:
    n = len(path)
    while i < n:
        if type(cur) is not dict and not isinstance(cur, Mapping):
            return (_NOT_MAP, i, _freeze(cur, conv))
        cur = cur.get(path[i], _MISSING)
        if cur is _MISSING:
            return (_MISSING, i)
        i += 1
    return _freeze(cur, conv)


def _resolve(
    path: tuple[str, ...], principal: Mapping[str, Any], resource: Mapping[str, Any]
) -> Any:
    """The value at a `P.`/`R.` dependency path, read from the caller's dicts exactly as
    `check()` builds `request.principal` / `request.resource`."""
    field = path[1]
    if field == "attr":  # the hot path: a chain of dicts ending in a scalar
        cur: Any = (principal if path[0] == "P" else resource).get("attr") or _EMPTY
        i, n = 2, len(path)
        while i < n:
            if type(cur) is not dict and not isinstance(cur, Mapping):
                return (_NOT_MAP, i, _freeze(cur, True))
            cur = cur.get(path[i], _MISSING)
            if cur is _MISSING:
                return (_MISSING, i)
            i += 1
        return cur if type(cur) is str else _freeze(cur, True)
    if path[0] == "P":
        if field == "id":
            cur = principal.get("id", "")
        elif field == "roles":
            cur = list(principal.get("roles") or ())
        elif field == "policyVersion":
            cur = principal.get("policyVersion") or ""
        elif field == "scope":
            cur = lookup_scope(principal.get("scope"))
        else:
            return (_MISSING, 1)
    else:
        if field == "id":
            cur = resource.get("id", "")
        elif field == "kind":
            cur = resource.get("kind", "")
        elif field == "policyVersion":
            cur = resource.get("policyVersion") or ""
        elif field == "scope":
            cur = resource.get("scope") or ""
        else:
            return (_MISSING, 1)
    return _walk(cur, path, 2, False)


def lookup_scope(scope: Any) -> str:
    """The scope a request's principal or resource is looked up in, and the one CEL sees as
    `P.scope`/`R.scope`: `""` and `"."` both name the root scope, as in Cerbos (whose CEL
    sees `""` for a `"."` sent; verified against the stock PDP by the generated suite)."""
    return "" if not scope or scope == "." else str(scope)


def _runtime(edr: list[str]) -> dict[str, list[str]]:
    """`runtime`, under both the proto and the JSON field name (Cerbos accepts both)."""
    return {"effectiveDerivedRoles": edr, "effective_derived_roles": edr}


_Trie = dict[str, Any]  # field -> sub-trie, or None for "the whole value"


def _trie(paths: list[tuple[str, ...]]) -> _Trie:
    """Prefix tree of dependency paths; a path that is a prefix of others takes them over."""
    root: _Trie = {}
    for path in sorted(paths, key=len):
        node: _Trie | None = root
        for part in path[:-1]:
            assert node is not None
            if part in node and node[part] is None:
                node = None  # a shorter path already takes the whole value
                break
            node = node.setdefault(part, {})
        if node is not None:
            node[path[-1]] = None
    return root


def _project(trie: _Trie, src: Mapping[str, Any]) -> dict[str, Any]:
    """The part of `to_cel_data(src)` that the paths in `trie` can reach (same values, same
    missing keys, same non-map values on the way)."""
    out: dict[str, Any] = {}
    for key, sub in trie.items():
        v = src.get(key, _MISSING)
        if v is _MISSING:
            continue
        t = type(v)
        if t is str or t is bool or t is float:
            out[key] = v
        elif sub is None or (t is not dict and not isinstance(v, Mapping)):
            out[key] = cel_env.to_cel_data(v)
        else:
            out[key] = _project(sub, v)
    return out


class _Check:
    """Per-call evaluation state. The CEL data and Activations are built only when some
    condition has to be evaluated (with a memo, often never); each condition runs at most once.

    Conditions with known dependencies run on a *projection* of the request: `P`/`R` holding
    only the union of the dependency paths of the bundle's conditions (`PolicyEngine._proj`),
    which CEL converts several times faster than the whole request. Such a condition can only
    observe values at its own paths, which the projection keeps exactly. Conditions that depend
    on the whole request run on the full data, built on first need."""

    __slots__ = (
        "engine",
        "principal",
        "resource",
        "aux_data",
        "kind",
        "version",
        "scope",
        "roles",
        "now",
        "memo",
        "_now",
        "_data",
        "_acts",
        "dr_cache",
        "dr_failed",
        "cond_cache",
        "level_edr",
        "cur_scope",
        "errors",
        "dep_values",
        "keys",
    )

    def __init__(
        self,
        engine: PolicyEngine,
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
        aux_data: Mapping[str, Any] | None,
        kind: str,
        version: str,
        scope: str,
        roles: list[str],
        now: dt.datetime | None,
        memo: CheckMemo | None,
    ) -> None:
        self.engine = engine
        self.principal = principal
        self.resource = resource
        self.aux_data = aux_data
        self.kind = kind
        self.version = version
        self.scope = scope
        self.roles = roles
        self.now = now
        self.memo = memo
        self._now: dt.datetime | None = memo.now if memo is not None else None
        self._data: dict[bool, dict[str, Any]] = {}
        self._acts: dict[tuple[bool, str | None], Any] = {}
        self.dr_cache: dict[Any, bool] = {}
        # (rule uid, derived role uid) rows whose derived role did not hold when first visited
        self.dr_failed: set[tuple[int, int]] = set()
        self.cond_cache: dict[int, bool] = {}
        self.level_edr: dict[str, list[str]] = {}
        # The resource scope the walk visited last: Cerbos 0.55 keeps one evaluation context
        # per check whose effectiveDerivedRoles are those of that scope, and principal- and
        # role-policy rules read it (so they see what the previous action's walk left).
        self.cur_scope: str | None = None
        self.errors: list[str] = []
        self.dep_values: list[Any] = [_UNSET] * len(engine._dep_paths)
        self.keys: dict[Any, tuple[Any, ...] | None] = {}

    # -- lazily built CEL input ------------------------------------------------------------------

    def data(self, full: bool) -> dict[str, Any]:
        data = self._data.get(full)
        if data is None:
            data = self._data[full] = self._full_data() if full else self._projected_data()
        return data

    def _full_data(self) -> dict[str, Any]:
        principal, resource = self.principal, self.resource
        p = {
            "id": principal.get("id", ""),
            "roles": self.roles,
            "attr": cel_env.to_cel_data(principal.get("attr") or _EMPTY),
            # As sent (Cerbos does not fill in the default); both proto and JSON field names.
            "policyVersion": principal.get("policyVersion") or "",
            "scope": lookup_scope(principal.get("scope")),
        }
        p["policy_version"] = p["policyVersion"]
        version = resource.get("policyVersion") or ""
        r = {
            "kind": self.kind,
            "id": resource.get("id", ""),
            "attr": cel_env.to_cel_data(resource.get("attr") or _EMPTY),
            "policyVersion": version,
            "policy_version": version,
            "scope": self.scope,
        }
        aux = cel_env.to_cel_data(dict(self.aux_data)) if self.aux_data else {}
        aux.setdefault("jwt", {})
        aux.setdefault("jwts", {})  # both proto maps: present, empty, when not sent (as Cerbos)
        g = self.engine._globals
        return {
            "request": {"principal": p, "resource": r, "auxData": aux, "aux_data": aux},
            "P": p,
            "R": r,
            "G": g,
            "globals": g,
            "runtime": _runtime([]),
        }

    def _projected_data(self) -> dict[str, Any]:
        eng = self.engine
        p: dict[str, Any] = {}
        for field, sub in eng._proj.get("P", _EMPTY).items():
            if field == "attr":
                a = self.principal.get("attr") or _EMPTY
                p["attr"] = _project(sub, a) if isinstance(a, Mapping) else cel_env.to_cel_data(a)
            elif field == "id":
                p["id"] = self.principal.get("id", "")
            elif field == "roles":
                p["roles"] = self.roles
            elif field == "policyVersion":
                v = self.principal.get("policyVersion") or ""
                p["policyVersion"] = p["policy_version"] = v
            elif field == "scope":
                p["scope"] = lookup_scope(self.principal.get("scope"))
        r: dict[str, Any] = {}
        for field, sub in eng._proj.get("R", _EMPTY).items():
            if field == "attr":
                a = self.resource.get("attr") or _EMPTY
                r["attr"] = _project(sub, a) if isinstance(a, Mapping) else cel_env.to_cel_data(a)
            elif field == "id":
                r["id"] = self.resource.get("id", "")
            elif field == "kind":
                r["kind"] = self.kind
            elif field == "policyVersion":
                v = self.resource.get("policyVersion") or ""
                r["policyVersion"] = r["policy_version"] = v
            elif field == "scope":
                r["scope"] = self.scope
        data: dict[str, Any] = {"P": p, "R": r, "runtime": _runtime([])}
        if eng._proj_request:
            data["request"] = {"principal": p, "resource": r}
        if eng._proj_globals:
            data["G"] = data["globals"] = eng._globals
        return data

    def edr_scope(self, level: ResourcePolicy | None, reads_runtime: bool) -> str | None:
        """The scope whose derived roles `runtime.effectiveDerivedRoles` holds for a rule of
        `level` (a resource policy: its own scope) or of a principal or role policy (`None`:
        the scope the resource walk visited last, as in Cerbos); None means an empty list
        (also when the rule does not read `runtime`, which then needs no Activation of its
        own)."""
        if level is not None:
            return level.scope if level.uses_runtime else None
        return self.cur_scope if reads_runtime else None

    def activation(self, edr: str | None, full: bool) -> Any:
        """The Activation whose runtime.effectiveDerivedRoles are those of scope `edr` (see
        `edr_scope`; None: empty, as for derived roles); `full` for conditions that need the
        whole request."""
        eng = self.engine
        if eng._clock_fns is not None:
            now = self._now
            if now is None:
                now = self._now = _utc(self.now)
            eng._clock.now = now  # read by now()/timeSince() during this check's evaluations
        k = (full, edr)
        act = self._acts.get(k)
        if act is None:
            data = self.data(full)
            if edr is not None:
                data = dict(data)
                data["runtime"] = _runtime(sorted(self.level_edr[edr]))
            if eng._clock_fns is not None:
                act = eng._env.Activation(data, functions=eng._clock_fns)
            else:
                act = eng._env.Activation(data)
            self._acts[k] = act
        return act

    # -- memo ------------------------------------------------------------------------------------

    def key(self, uid: Any, dep_ids: tuple[int, ...], edr: str | None) -> tuple[Any, ...] | None:
        """Memo key of a condition (or DENY group): its uid and the values at its dependency
        paths; None when a value cannot be keyed exactly."""
        key: Any = self.keys.get((uid, edr), _MISSING)
        if key is not _MISSING:
            return key  # type: ignore[no-any-return]
        eng = self.engine
        values = self.dep_values
        parts: list[Any] = [uid]
        for d in dep_ids:
            if d in eng._runtime_deps:
                names: list[str] = []
                if edr is not None:
                    names = sorted(self.level_edr[edr])
                try:
                    v = _walk({"effectiveDerivedRoles": names}, eng._dep_paths[d], 1, False)
                except _Uncacheable:
                    v = _UNCACHEABLE
            else:
                v = values[d]
                if v is _UNSET:
                    try:
                        v = _resolve(eng._dep_paths[d], self.principal, self.resource)
                    except _Uncacheable:
                        v = _UNCACHEABLE
                    values[d] = v
            if v is _UNCACHEABLE:
                key = None
                break
            parts.append(v)
        else:
            key = tuple(parts)
        self.keys[(uid, edr)] = key
        return key  # type: ignore[no-any-return]

    def condition(self, uid: int, cond: Condition, edr: str | None, label: str) -> bool:
        """Evaluate a rule or derived-role condition with the derived roles of scope `edr`
        (`edr_scope`), through the memo when there is one. Callers keep the per-check cache
        (each condition once per check)."""
        memo = self.memo
        full = cond.dep_ids is None or not self.engine._use_projection
        if memo is None:
            return self.evaluate(cond, self.activation(edr, full), label)
        key = None if cond.dep_ids is None else self.key(uid, cond.dep_ids, edr)
        if key is not None:
            hit = memo._results.get(key)
            if hit is not None:
                memo.hits += 1
                if hit[1]:
                    self.errors.extend(hit[1])
                return hit[0]
        memo.misses += 1
        n = len(self.errors)
        sat = self.evaluate(cond, self.activation(edr, full), label)
        if key is not None:
            memo._store(key, (sat, tuple(self.errors[n:])))
        return sat

    # -- Cerbos condition semantics --------------------------------------------------------------

    def evaluate(self, cond: Condition, activation: Any, label: str) -> bool:
        """Cerbos semantics: a leaf is true only for a boolean true; a leaf that errors (or
        returns a non-boolean) is false and recorded; then all/any/none combine booleans, left
        to right and short-circuiting, as Cerbos evaluates them. A fused all/any node (one
        program) gives the same boolean (see `Condition`), but CEL's `<error> && false` and
        `<error> || true` would hide an error Cerbos meets first, so a fused result is taken
        only when it proves that no operand failed (`_fused_exact`); otherwise the node is
        evaluated leaf by leaf, and the errors recorded never depend on sibling values."""
        program = cond.program
        if program is not None:
            if cond.op == "expr":
                return self._leaf(cond, activation, label)
            exact_true, exact_false = self.engine._fused_exact[id(cond)]
            try:
                v = program.eval(activation).value()
            except Exception:
                v = None
            if v is True and exact_true:
                return True
            if v is False and exact_false:
                return False
        op = cond.op
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


class _StrictCheck(_Check):
    """`_Check` of an engine with `strict_evaluation`: conditions are evaluated leaf by leaf
    (left to right, `all`/`any`/`none` short-circuiting, fused programs not used, since
    `(<error>) || true` is `true` in CEL and would hide the error), and every condition (rule,
    derived role or role-policy rule, by uid) whose evaluation recorded an error, or whose memo
    entry replays one, is remembered in `err_uids`. `_role_general` then attributes the first
    such condition consulted while deciding an action to that action (`strict_err`)."""

    __slots__ = ("err_uids", "strict_err")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.err_uids: set[int] = set()
        self.strict_err: tuple[str, str | None, str] | None = None

    def condition(self, uid: int, cond: Condition, edr: str | None, label: str) -> bool:
        n = len(self.errors)
        sat = super().condition(uid, cond, edr, label)
        if len(self.errors) > n:
            self.err_uids.add(uid)
        return sat

    def evaluate(self, cond: Condition, activation: Any, label: str) -> bool:
        if cond.op == "expr":
            return self._leaf(cond, activation, label)
        op = cond.op
        if op == "all":
            return all(self.evaluate(c, activation, label) for c in cond.children)
        if op == "any":
            return any(self.evaluate(c, activation, label) for c in cond.children)
        return not any(self.evaluate(c, activation, label) for c in cond.children)

    def note(self, uid: int, policy: str, rule: str | None, scope: str) -> None:
        """Attribute an erroring condition `uid` (if it errored) to the current action."""
        if self.strict_err is None and uid in self.err_uids:
            self.strict_err = (policy, rule, scope)


@dataclass(frozen=True, slots=True)
class _GroupInfo:
    uids: tuple[int, ...]
    program: Any
    dep_ids: tuple[int, ...] | None


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
        principals: dict[tuple[str, str, str], PrincipalPolicy] | None = None,
        roles: dict[tuple[str, str, str], RolePolicy] | None = None,
        default_policy_version: str = DEFAULT_VERSION,
        lenient_scope_search: bool = False,
        strict_evaluation: bool = False,
        schemas: SchemaValidator | None = None,
    ) -> None:
        self._env = env
        self._policies = policies
        self._principals = dict(principals or {})
        self._roles = dict(roles or {})
        self._default_version = default_policy_version or DEFAULT_VERSION
        self._lenient = lenient_scope_search
        self._strict = strict_evaluation
        self._schemas = schemas
        # Cerbos' scope bookkeeping (the rule table's scope maps are per policy *type*).
        self._resource_scopes = {k[2] for k in policies} | {k[2] for k in self._roles}
        self._principal_scopes = {k[2] for k in self._principals}
        self._scope_perms: dict[str, str] = {}
        for pp in self._principals.values():
            self._scope_perms[pp.scope] = pp.scope_permissions
        for rpol in policies.values():
            self._scope_perms[rpol.scope] = rpol.scope_permissions
        self._role_parents: dict[str, dict[str, tuple[str, ...]]] = {}
        self._binds_roles: dict[tuple[str, str, str, str, tuple[str, ...]], bool] = {}
        for (role, _v, scope), rp in self._roles.items():
            self._role_parents.setdefault(scope, {})[role] = rp.parent_roles
        self._principal_versions = {(k[1], k[2]) for k in self._principals}
        # True: every check runs `_check_general`. Otherwise `check()` takes the fast rule walk
        # (`_decide`), checked equal to the general evaluator on every test bundle by
        # tests/policy/test_fast_equals_general.py, which sets this to True on a second engine.
        self._general = bool(
            self._principals
            or self._roles
            or lenient_scope_search
            or strict_evaluation
            or (schemas is not None and schemas.active)
            or self._default_version != DEFAULT_VERSION
            or any(p.scope_permissions != OVERRIDE_PARENT for p in policies.values())
            or any(
                r.output_activated is not None or r.output_not_met is not None
                for p in policies.values()
                for r in p.rules
            )
        )
        self.digest = digest
        self.skipped_files = list(skipped or [])
        # Resource kinds and (exact, non-glob) actions the bundle's resource policies name: the
        # bounded label values of ``vigil_decision_actions_total`` (anything else is "other").
        self.named_kinds = frozenset(kind for kind, _v, _s in policies)
        self.named_actions = frozenset(
            a for p in policies.values() for r in p.rules for a in r.actions if "*" not in a
        )
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
        # Which checks can change with time alone (see `reads_time`); outputs count too, so
        # an output calling now() gets the clock even when no condition does.
        self._time_kinds = frozenset(
            kind
            for (kind, _v, _s), pol in policies.items()
            if any(_rule_reads_time(r) for r in pol.rules)
            or any(_condition_reads_time(d.condition) for d in pol.derived_roles.values())
        )
        time_rules: list[Rule | RoleRule] = [r for p in self._principals.values() for r in p.rules]
        time_rules += [r for rp in self._roles.values() for r in rp.rules]
        self._time_matchers = tuple(r.resource_matchers for r in time_rules if _rule_reads_time(r))
        self._time_by_kind: dict[str, bool] = {}
        self._uses_time = bool(self._time_kinds or self._time_matchers)
        # Intern the dependency paths of every condition root for the memo keys.
        self._dep_paths: list[tuple[str, ...]] = []
        index: dict[tuple[str, ...], int] = {}
        for c in self._conditions():
            if c.deps is not None and c.dep_ids is None:
                c.dep_ids = tuple(index.setdefault(p, len(index)) for p in c.deps)
        self._dep_paths = sorted(index, key=index.__getitem__)
        # Per fused all/any node: whether a true / a false result of its one program proves
        # that no operand failed (then the errors are those of leaf-by-leaf evaluation: none).
        self._fused_exact: dict[int, tuple[bool, bool]] = {}
        for c in self._conditions():
            _index_fused(c, self._fused_exact)
        self._runtime_deps = frozenset(i for p, i in index.items() if p[0] == "runtime")
        # Per resource chain: the dependency paths of every condition it can evaluate (None if
        # one of them reads something not statically known). Roles plus the values at these
        # paths determine the whole check (runtime.effectiveDerivedRoles follows from them).
        self._chain_deps: dict[tuple[str, str, str], tuple[int, ...] | None] = {}
        for chain_key, policies_in_chain in self._chains.items():
            ids: set[int] | None = set()
            for pol in policies_in_chain:
                conds = [r.condition for r in pol.rules if r.condition is not None]
                conds += [d.condition for d in pol.derived_roles.values() if d.condition]
                for c in conds:
                    if c.dep_ids is None or ids is None:
                        ids = None
                        break
                    ids.update(i for i in c.dep_ids if i not in self._runtime_deps)
            self._chain_deps[chain_key] = None if ids is None else tuple(sorted(ids))
        # The values at those paths read in one walk of the request (`memokey`).
        key_runtime = {"_resolve": _resolve, "_freeze": _freeze, "_MISSING": _MISSING}
        key_runtime["_EMPTY"] = _EMPTY
        self._key_fns: dict[tuple[str, str, str], KeyFunction] = {
            chain_key: compile_key_function([self._dep_paths[d] for d in deps], key_runtime)
            for chain_key, deps in self._chain_deps.items()
            if deps is not None
        }
        # Projection of the request onto every known dependency path (see `_Check`).
        known = [c for c in self._conditions() if c.deps is not None]
        self._proj: _Trie = _trie([p for p in self._dep_paths if p[0] in ("P", "R")])
        self._proj_request = any(re.search(r"\brequest\b", c.source) for c in known)
        self._proj_globals = any(re.search(r"\b(G|globals)\b", c.source) for c in known)
        self._use_projection = True  # tests compare against the full request
        # now()/timeSince() bound once; they read the current check's fixed now.
        self._clock = threading.local()
        self._clock_fns: list[cel.Function] | None = (
            cel_env.clock_functions(self._clock_now) if self._uses_time else None
        )
        # DENY rules of one (level, action, role) evaluated as one `a || b || ...` program.
        self._deny_groups: dict[tuple[str, str, str], tuple[Rule, ...]] = {}
        self._group_programs: dict[tuple[int, ...], _GroupInfo | None] = {}

    def reads_time(self, kind: str) -> bool:
        """Whether a check of a resource of `kind` can change with time alone: some condition
        or output that may apply to it calls `now()`/`timeSince()` (conservative: any version
        and scope of the kind, and principal/role policy rules matching it)."""
        hit = self._time_by_kind.get(kind)
        if hit is None:
            hit = kind in self._time_kinds or any(
                any(m(kind) for m in matchers) for matchers in self._time_matchers
            )
            if len(self._time_by_kind) > 10_000:
                self._time_by_kind.clear()
            self._time_by_kind[kind] = hit
        return hit

    def reads_resource(
        self, kind: str, actions: Sequence[str], known_attrs: frozenset[str] = frozenset()
    ) -> bool:
        """Whether the effect of `actions` on a resource of `kind` may depend on anything of
        the resource but its kind, scope, policy version and the attributes in `known_attrs`.
        Conservative: every version and scope of the kind; the conditions of rules matching an
        action, of the derived roles those rules name (all derived roles if a condition reads
        `runtime`), and of principal/role policy rules matching kind and action; a condition of
        unknown dependencies counts as reading everything; schema validation reads the
        resource. False means one check answers for every such resource: what `PlanResources`
        can prove without a query planner."""
        if self._schemas is not None and self._schemas.active:
            return True
        conditions: list[Condition] = []
        derived: list[DerivedRole] = []

        def acts(rule: Rule | RoleRule) -> bool:
            return any(m(a) for m in rule.action_matchers for a in actions)

        for (pkind, _v, _s), pol in self._policies.items():
            if pkind != kind:
                continue
            for rule in pol.rules:
                if acts(rule):
                    derived.extend(rule.derived_roles)
                    if rule.condition is not None:
                        conditions.append(rule.condition)
            if any(c.deps is None or any(p[0] == "runtime" for p in c.deps) for c in conditions):
                derived.extend(pol.derived_roles.values())
        rules: list[Rule | RoleRule] = [r for p in self._principals.values() for r in p.rules]
        rules += [r for rp in self._roles.values() for r in rp.rules]
        conditions.extend(
            r.condition
            for r in rules
            if r.condition is not None and acts(r) and any(m(kind) for m in r.resource_matchers)
        )
        conditions.extend(d.condition for d in derived if d.condition is not None)
        for cond in conditions:
            if cond.deps is None:
                return True
            for path in cond.deps:
                if path[0] != "R" or path[1:] in (("kind",), ("scope",), ("policyVersion",)):
                    continue
                if len(path) >= 3 and path[1] == "attr" and path[2] in known_attrs:
                    continue
                return True
        return False

    def _clock_now(self) -> dt.datetime:
        now: dt.datetime = self._clock.now
        return now

    def _conditions(self) -> list[Condition]:
        out: list[Condition] = []
        for pol in self._policies.values():
            out.extend(r.condition for r in pol.rules if r.condition is not None)
            out.extend(d.condition for d in pol.derived_roles.values() if d.condition is not None)
        for pp in self._principals.values():
            out.extend(r.condition for r in pp.rules if r.condition is not None)
        for rp in self._roles.values():
            out.extend(r.condition for r in rp.rules if r.condition is not None)
        return out

    @classmethod
    def from_directory(
        cls,
        directory: str | Path,
        *,
        globals_: Mapping[str, Any] | None = None,
        default_policy_version: str = DEFAULT_VERSION,
        lenient_scope_search: bool = False,
        strict_evaluation: bool = False,
        schema_enforcement: str = "none",
    ) -> PolicyEngine:
        """Load and compile every policy under `directory`; raises `PolicyCompileError` with
        all problems found. The options mirror Cerbos' `engine.defaultPolicyVersion`,
        `engine.lenientScopeSearch`, `schema.enforcement` and the strict evaluation mode
        described in docs/policies.md."""
        if schema_enforcement not in ("none", "warn", "reject"):
            raise ValueError("schema_enforcement must be 'none', 'warn' or 'reject'")
        bundle = load_directory(directory)
        if bundle.issues:  # like Cerbos: files that do not load stop the store before compiling
            raise PolicyCompileError(bundle.issues)
        env = cel_env.new_env()
        compiled = compile_files(env, bundle.files)
        issues: list[CompileIssue] = [*bundle.issues, *compiled.issues]
        schemas = SchemaValidator(Path(directory), schema_enforcement)
        issues.extend(schemas.load(compiled.policies))
        if issues:
            raise PolicyCompileError(issues)
        return cls(
            env,
            compiled.policies,
            bundle.digest,
            globals_=globals_,
            skipped=bundle.skipped,
            principals=compiled.principals,
            roles=compiled.roles,
            default_policy_version=default_policy_version,
            lenient_scope_search=lenient_scope_search,
            strict_evaluation=strict_evaluation,
            schemas=schemas,
        )

    @property
    def policy_keys(self) -> list[str]:
        """Keys of all loaded resource policies (for diagnostics and the health endpoint)."""
        return sorted(p.key for p in self._policies.values())

    def new_memo(self, now: dt.datetime | None = None) -> CheckMemo:
        """A `CheckMemo` for a batch of checks sharing one `now` (default: the current time)."""
        memo = CheckMemo(now)
        memo._engine = self
        return memo

    def check(
        self,
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
        actions: Sequence[str],
        *,
        aux_data: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
        memo: CheckMemo | None = None,
    ) -> CheckResult:
        """Decide every action for one principal/resource pair.

        With `memo`, condition results are shared with the memo's earlier checks that read the
        same values (see `CheckMemo`); `now` is then the memo's and must not differ."""
        if self._general:
            return self._check_general(principal, resource, actions, aux_data, now, memo)
        kind = resource.get("kind", "")
        version = resource.get("policyVersion") or DEFAULT_VERSION
        scope = lookup_scope(resource.get("scope"))
        chain = self._chains.get((kind, version, scope))
        if not chain:
            if scope in self._resource_scopes:
                # Another kind's policy makes the scope exist: Cerbos walks on to the kind's
                # policies in the ancestor scopes (reported under this scope's policy key).
                return self._check_general(principal, resource, actions, aux_data, now, memo)
            return CheckResult(
                {a: ActionResult(EFFECT_DENY, NO_MATCH, None, "") for a in actions}, [], []
            )
        if memo is not None:
            if memo._engine is None:
                memo._engine = self
            elif memo._engine is not self:
                raise ValueError("CheckMemo belongs to another PolicyEngine")
            if now is not None and _utc(now) != memo.now:
                raise ValueError("check(now=...) differs from the CheckMemo's now")
        roles: list[str] = list(principal.get("roles") or ())
        if not roles:  # no role walks the chain: nothing matched, no policy to report (Cerbos)
            return CheckResult(
                {a: ActionResult(EFFECT_DENY, NO_MATCH, None, "") for a in actions}, [], []
            )
        check_key = None
        values = None
        if memo is not None:
            values = self._chain_values((kind, version, scope), principal, resource)
            if values is not None:
                check_key = ((kind, version, scope), tuple(roles), tuple(actions), *values)
                hit = memo._checks.get(check_key)
                if hit is not None:
                    memo.check_hits += 1
                    return CheckResult(
                        dict(hit.actions), list(hit.effective_derived_roles), list(hit.errors)
                    )
        st = _Check(self, principal, resource, aux_data, kind, version, scope, roles, now, memo)
        if values is not None:  # the conditions' memo keys read the same values
            dep_values = st.dep_values
            for d, v in zip(self._chain_deps[(kind, version, scope)] or (), values, strict=True):
                dep_values[d] = v
        main_key = chain[0].key
        out: dict[str, ActionResult] = {}
        for action in actions:
            out[action] = self._decide(st, chain, roles, action, main_key)
        edr = sorted({n for names in st.level_edr.values() for n in names})
        result = CheckResult(out, edr, st.errors)
        if check_key is not None:
            assert memo is not None
            memo._store_check(check_key, CheckResult(dict(out), list(edr), list(st.errors)))
        return result

    def _chain_values(
        self,
        chain_key: tuple[str, str, str],
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
    ) -> tuple[Any, ...] | None:
        """The values at every dependency path of the chain (in `_chain_deps` order), which with
        the roles and actions key a whole check; None when the chain reads something not
        statically known or a value cannot be keyed exactly."""
        deps = self._chain_deps.get(chain_key)
        if deps is None:
            return None
        try:
            values = self._key_fns[chain_key](principal, resource)
            if values is None:  # not plain dicts all the way: path by path
                paths = self._dep_paths
                values = tuple(_resolve(paths[d], principal, resource) for d in deps)
        except _Uncacheable:
            return None
        return values

    def _decide(
        self,
        st: _Check,
        chain: tuple[ResourcePolicy, ...],
        roles: list[str],
        action: str,
        main_key: str,
    ) -> ActionResult:
        final: ActionResult | None = None
        cond_cache = st.cond_cache
        for role in roles:
            role_result: ActionResult | None = None
            for level in chain:
                self._level(st, level, roles)
                bindings = level.bindings(action, role)
                group = self._deny_group(level, action, role, bindings)
                if group:
                    self._prefilter_denies(st, level, group)
                allow_rule: str | None = None
                deny_rule: str | None = None
                for rule, dr in bindings:
                    if dr is not None and not self._derived_role(st, dr, level.scope):
                        continue
                    cond = rule.condition
                    if cond is not None:
                        sat = cond_cache.get(rule.uid)
                        if sat is None:
                            edr = st.edr_scope(level, True)
                            sat = st.condition(rule.uid, cond, edr, f"{level.key}#{rule.name}")
                            cond_cache[rule.uid] = sat
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

    def _deny_group(
        self,
        level: ResourcePolicy,
        action: str,
        role: str,
        bindings: tuple[tuple[Rule, DerivedRole | None], ...],
    ) -> tuple[Rule, ...]:
        """The conditional DENY rules of (level, action, role) without a derived role whose
        condition is a single program; checked together by `_prefilter_denies`."""
        k = (level.key, action, role)
        group = self._deny_groups.get(k)
        if group is None:
            members: list[Rule] = []
            for rule, dr in bindings:
                cond = rule.condition
                if (
                    dr is None
                    and rule.effect == EFFECT_DENY
                    and cond is not None
                    and cond.program is not None
                    and (cond.op == "expr" or self._fused_exact[id(cond)][1])
                    and rule not in members
                ):
                    members.append(rule)
            group = tuple(members) if len(members) >= 2 else ()
            if len(self._deny_groups) > 50_000:
                self._deny_groups.clear()
            self._deny_groups[k] = group
        return group

    def _group_info(self, rules: list[Rule]) -> _GroupInfo | None:
        """The `c1 || c2 || ...` program of some DENY rules (compiled once per rule set) and
        the union of their dependencies; None when it does not compile or too many exist."""
        uids = tuple(r.uid for r in rules)
        if uids in self._group_programs:
            return self._group_programs[uids]
        if len(self._group_programs) >= _GROUP_PROGRAM_LIMIT:
            return None
        conds = [r.condition for r in rules if r.condition is not None]
        source = " || ".join(f"({c.source}\n)" for c in conds)
        try:
            program = self._env.compile(source)
        except RuntimeError:
            program = None
        dep_ids: tuple[int, ...] | None = None
        if all(c.dep_ids is not None for c in conds):
            dep_ids = tuple(sorted({d for c in conds for d in c.dep_ids or ()}))
        info = None if program is None else _GroupInfo(uids, program, dep_ids)
        self._group_programs[uids] = info
        return info

    def _prefilter_denies(self, st: _Check, level: ResourcePolicy, group: tuple[Rule, ...]) -> None:
        """In the common case no DENY holds: one `c1 || c2 || ...` evaluation that is exactly
        `false` proves every member false without errors (CEL's `||` is false only when all
        operands are false), so they are cached as false. Anything else (a true or erroring
        member) leaves the rule-by-rule walk, and its errors and order, unchanged. With a memo,
        a `false` is shared under the union of the members' dependencies."""
        cond_cache = st.cond_cache
        pending: list[Rule] = []
        for rule in group:
            sat = cond_cache.get(rule.uid)
            if sat is None:
                pending.append(rule)
            elif sat:
                return
        if len(pending) < 2:
            return
        info = self._group_info(pending)
        if info is None:
            return
        memo = st.memo
        key = None
        if memo is not None and info.dep_ids is not None:
            key = st.key(info.uids, info.dep_ids, st.edr_scope(level, True))
            if key is not None and key in memo._results:
                memo.hits += 1
                for rule in pending:
                    cond_cache[rule.uid] = False
                return
        try:
            full = info.dep_ids is None or not self._use_projection
            value = info.program.eval(st.activation(st.edr_scope(level, True), full)).value()
        except Exception:
            return
        if value is not False:
            return
        for rule in pending:
            cond_cache[rule.uid] = False
        if memo is not None:
            memo.misses += 1
            if key is not None:
                memo._store(key, (False, ()))

    def _derived_role(self, st: _Check, dr: DerivedRole, edr: str | None) -> bool:
        """A derived role's condition, evaluated once per check; one that reads
        `runtime.effectiveDerivedRoles` sees those of scope `edr` (see `_level`), once per
        scope, as in Cerbos 0.55."""
        cond = dr.condition
        if cond is None:
            return True
        key: Any = (dr.uid, edr) if cond.uses_runtime else dr.uid
        sat = st.dr_cache.get(key)
        if sat is None:
            edr = edr if cond.uses_runtime else None
            sat = st.condition(dr.uid, cond, edr, f"derived role {dr.origin}/{dr.name}")
            st.dr_cache[key] = sat
        return sat

    def _level(self, st: _Check, level: ResourcePolicy, roles: list[str]) -> None:
        """On the walk's first visit of a scope level: its effective derived roles, whose
        conditions see the derived roles of the scope visited before (`cur_scope`, still
        unchanged), as Cerbos 0.55 computes them in the evaluation context it then replaces.
        Every visit then makes this level the one principal/role policies see, and a rule's
        derived role is tested in this level's own context (`_derived_role(..., scope)`)."""
        if level.scope not in st.level_edr:
            before = st.cur_scope
            st.level_edr[level.scope] = [
                name
                for name, dr in level.derived_roles.items()
                if any(dr.has_parent(role) for role in roles) and self._derived_role(st, dr, before)
            ]
        st.cur_scope = level.scope

    # -- general path: principal/role policies, scope permissions, outputs, options ----------

    def _scopes(self, scope: str, existing: set[str]) -> list[str]:
        """Cerbos' GetAllScopes: the scope itself (if any policy of the type uses it), then
        every existing ancestor; without lenient scope search a missing scope gives none."""
        if scope not in existing and not self._lenient:
            return []
        out = [scope] if scope in existing else []
        parts = scope.split(".") if scope else []
        for n in range(len(parts) - 1, -1, -1):
            parent = ".".join(parts[:n])
            if parent in existing:
                out.append(parent)
        return out

    def _with_parents(self, scope: str, roles: Sequence[str]) -> list[str]:
        """Roles plus their (transitive) parent roles declared by role policies of `scope`."""
        table = self._role_parents.get(scope)
        out = list(roles)
        if not table:
            return out
        for role in roles:
            seen: set[str] = set()
            stack = [role]
            found: list[str] = []
            while stack:
                r = stack.pop()
                if r in seen:
                    continue
                seen.add(r)
                for pr in table.get(r, ()):
                    if pr not in found:
                        found.append(pr)
                    stack.append(pr)
            out.extend(found)
        return out

    def _check_general(
        self,
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
        actions: Sequence[str],
        aux_data: Mapping[str, Any] | None,
        now: dt.datetime | None,
        memo: CheckMemo | None,
    ) -> CheckResult:
        kind = resource.get("kind", "")
        version = resource.get("policyVersion") or self._default_version
        rscope = lookup_scope(resource.get("scope"))
        pid = principal.get("id", "")
        pversion = principal.get("policyVersion") or self._default_version
        pscope = lookup_scope(principal.get("scope"))

        def nothing() -> CheckResult:
            return CheckResult(
                {a: ActionResult(EFFECT_DENY, NO_MATCH, None, "") for a in actions}, [], []
            )

        if (
            not self._lenient
            and pscope not in self._principal_scopes
            and rscope not in self._resource_scopes
        ):
            return nothing()
        pscopes = self._scopes(pscope, self._principal_scopes)
        rscopes = self._scopes(rscope, self._resource_scopes)
        pkey = principal_policy_key(pid, pversion, pscopes[0]) if pscopes else ""
        rkey = policy_key(kind, version, rscopes[0]) if rscopes else ""
        principal_exists = any((pversion, s) in self._principal_versions for s in pscopes)
        resource_exists = any((kind, version, s) in self._policies for s in rscopes) or any(
            rule.resource_matchers[0](kind)
            for s in rscopes
            for (_r, v, sc), rp in self._roles.items()
            if v == version and sc == s
            for rule in rp.rules
        )
        if not principal_exists and not resource_exists:
            return nothing()
        if memo is not None:
            if memo._engine is None:
                memo._engine = self
            elif memo._engine is not self:
                raise ValueError("CheckMemo belongs to another PolicyEngine")
            if now is not None and _utc(now) != memo.now:
                raise ValueError("check(now=...) differs from the CheckMemo's now")
        roles: list[str] = list(principal.get("roles") or ())
        check_cls = _StrictCheck if self._strict else _Check
        st = check_cls(self, principal, resource, aux_data, kind, version, rscope, roles, now, memo)
        outputs: list[OutputEntry] = []
        validation: list[dict[str, Any]] = []
        if self._schemas is not None and self._schemas.active:
            pol = self._policies.get((kind, version, rscopes[0])) if rscopes else None
            validation, reject = self._schemas.validate(pol, principal, resource, actions)
            if reject:
                return CheckResult(
                    {a: ActionResult(EFFECT_DENY, rkey, None, "") for a in actions},
                    [],
                    [],
                    [],
                    validation,
                )
        all_roles = self._with_parents(rscope, roles)
        parents_of = {r: self._with_parents(rscope, [r]) for r in roles}
        out: dict[str, ActionResult] = {}
        strict = st if isinstance(st, _StrictCheck) else None
        for action in actions:
            act: tuple[str, str, str | None, str] | None = None
            if strict is not None:
                strict.strict_err = None
            for pt in ("principal", "resource"):
                principal_pass = pt == "principal"
                main_key = pkey if principal_pass else rkey
                exists = principal_exists if principal_pass else resource_exists
                scopes = pscopes if principal_pass else rscopes
                if act is not None:
                    act = (_NO_MATCH_EFFECT, act[1], act[2], act[3])
                for i, role in enumerate(roles):
                    if i > 0 and principal_pass:
                        break
                    res = self._role_general(
                        st,
                        principal_pass,
                        scopes,
                        kind,
                        version,
                        pid,
                        action,
                        parents_of[role],
                        all_roles,
                        main_key if exists else NO_MATCH,
                        outputs,
                    )
                    if act is None or act[0] == _NO_MATCH_EFFECT:
                        act = res
                    if res[0] == EFFECT_ALLOW:
                        act = res
                        break
                    if res[0] == EFFECT_DENY and act[1] == _NMFSP and res[1] != _NMFSP:
                        act = res
                if act is not None and act[0] != _NO_MATCH_EFFECT:
                    break
            if act is None:
                out[action] = ActionResult(EFFECT_DENY, NO_MATCH, None, "")
            else:
                effect = EFFECT_DENY if act[0] == _NO_MATCH_EFFECT else act[0]
                out[action] = ActionResult(effect, act[1], act[2], act[3])
            if strict is not None and strict.strict_err is not None:
                # strict_evaluation: a condition consulted for this action failed to evaluate.
                out[action] = ActionResult(EFFECT_DENY, *strict.strict_err)
        edr = sorted({n for names in st.level_edr.values() for n in names})
        return CheckResult(out, edr, st.errors, outputs, validation)

    def _role_general(
        self,
        st: _Check,
        principal_pass: bool,
        scopes: list[str],
        kind: str,
        version: str,
        pid: str,
        action: str,
        parent_roles: list[str],
        all_roles: list[str],
        policy: str,
        outputs: list[OutputEntry],
    ) -> tuple[str, str, str | None, str]:
        """One role (or the principal pass) walking its scopes, as Cerbos' `scopesLoop`."""
        has_allow = False
        allow_rule: str | None = None
        cond_cache = st.cond_cache
        strict = st if isinstance(st, _StrictCheck) else None
        for scope in scopes:
            level: Any = None
            if principal_pass:
                level = self._principals.get((pid, version, scope))
                bindings: tuple[tuple[Rule, DerivedRole | None], ...] = (
                    tuple((r, None) for r in level.bindings(kind, action)) if level else ()
                )
            else:
                level = self._policies.get((kind, version, scope))
                if scope not in st.level_edr:
                    if level is None:
                        st.level_edr[scope] = []
                    else:
                        self._level(st, level, all_roles)
                st.cur_scope = scope  # what principal/role policies see next (`edr_scope`)
                # Role policies of this scope narrow what the role (and its parents) may do:
                # their allowActions are exhaustive for the kind once this scope has any rule
                # for the kind and one of these roles (see `_scope_binds_roles`).
                binds: bool | None = None
                for r in parent_roles:
                    rp = self._roles.get((r, version, scope))
                    if rp is None:
                        continue
                    if binds is None:
                        binds = self._scope_binds_roles(level, kind, version, scope, parent_roles)
                    if not binds:
                        break
                    rrules = [rr for rr in rp.rules if rr.resource_matchers[0](kind)]
                    matched = [rr for rr in rrules if any(m(action) for m in rr.action_matchers)]
                    if not matched:
                        return (EFFECT_DENY, rp.key, None, scope)
                    for rr in matched:
                        if rr.condition is None:
                            continue
                        sat = cond_cache.get(rr.uid)
                        if sat is None:
                            edr = st.edr_scope(None, rr.condition.uses_runtime)
                            sat = st.condition(rr.uid, rr.condition, edr, f"{rp.key}#{r}")
                            cond_cache[rr.uid] = sat
                        if strict is not None:
                            strict.note(rr.uid, rp.key, None, scope)
                        if not sat:
                            return (EFFECT_DENY, rp.key, None, scope)
                bindings = self._multi_bindings(level, action, parent_roles) if level else ()
            for rule, dr in bindings:
                if dr is not None:
                    row = (rule.uid, dr.uid)
                    if row in st.dr_failed:
                        # Cerbos caches the row as "not satisfied" when its derived role does
                        # not hold; a later visit (another action) takes it from that cache as
                        # a rule whose condition is not met: its conditionNotMet output.
                        if rule.output_not_met is not None:
                            out = self._output(st, rule.output_not_met, level, rule, action)
                            outputs.extend([out] * _rows(rule, dr, action, parent_roles))
                        continue
                    dr_sat = self._derived_role(st, dr, scope)
                    if strict is not None:
                        strict.note(dr.uid, policy, rule.name, scope)
                    if not dr_sat:
                        st.dr_failed.add(row)
                        # Cerbos' cache key has neither the action pattern nor the role: of
                        # this visit's rows only the first finds the cache empty.
                        later = _rows(rule, dr, action, parent_roles) - 1
                        if later and rule.output_not_met is not None:
                            out = self._output(st, rule.output_not_met, level, rule, action)
                            outputs.extend([out] * later)
                        continue
                cond = rule.condition
                sat = True
                if cond is not None:
                    found = cond_cache.get(rule.uid)
                    if found is None:
                        found = st.condition(
                            rule.uid,
                            cond,
                            st.edr_scope(None if principal_pass else level, cond.uses_runtime),
                            f"{level.key}#{rule.name}",
                        )
                        cond_cache[rule.uid] = found
                    if strict is not None:
                        strict.note(rule.uid, policy, rule.name, scope)
                    sat = found
                effect = rule.effect
                if rule.negated:  # REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS: DENY unless condition
                    effect = EFFECT_DENY
                    sat = not sat
                if sat:
                    if rule.output_activated is not None:
                        out = self._output(st, rule.output_activated, level, rule, action)
                        # a DENY row ends the walk at its first row: one output
                        n = 1 if effect == EFFECT_DENY or principal_pass else None
                        outputs.extend([out] * (n or _rows(rule, dr, action, parent_roles)))
                    if effect == EFFECT_DENY:
                        return (EFFECT_DENY, policy, rule.name, scope)
                    has_allow = True
                    if allow_rule is None:
                        allow_rule = rule.name
                elif rule.output_not_met is not None:
                    out = self._output(st, rule.output_not_met, level, rule, action)
                    n = 1 if principal_pass else _rows(rule, dr, action, parent_roles)
                    outputs.extend([out] * n)
            if has_allow:
                perms = self._scope_perms.get(scope)
                if perms == REQUIRE_PARENTAL_CONSENT:
                    has_allow = False
                    allow_rule = None
                elif perms == OVERRIDE_PARENT:
                    return (EFFECT_ALLOW, policy, allow_rule, scope)
        return (_NO_MATCH_EFFECT, policy, None, "")

    def _scope_binds_roles(
        self,
        level: ResourcePolicy | None,
        kind: str,
        version: str,
        scope: str,
        roles: list[str],
    ) -> bool:
        """Whether Cerbos' rule table has a row at `scope` for `kind` and one of `roles` (a role
        and its parent roles): a rule of the kind's resource policy there naming one of them
        (directly, via `*`, or via a derived role's parent roles, for any action), or a rule
        for the kind in one of their role policies there. Only then are the role policies of
        `scope` applied to the kind: every role of the chain with a role policy there denies
        the actions its own rules for the kind do not allow (even with no rule for it)."""
        key = (level.key if level is not None else "", kind, version, scope, tuple(roles))
        found = self._binds_roles.get(key)
        if found is None:
            found = level is not None and any(
                "*" in rule.roles
                or any(r in rule.roles for r in roles)
                or any(dr.has_parent(r) for dr in rule.derived_roles for r in roles)
                for rule in level.rules
            )
            if not found:
                for r in roles:
                    rp = self._roles.get((r, version, scope))
                    if rp is not None and any(rr.resource_matchers[0](kind) for rr in rp.rules):
                        found = True
                        break
            if len(self._binds_roles) > 50_000:  # bounded: role sets come from requests
                self._binds_roles.clear()
            self._binds_roles[key] = found
        return found

    def _multi_bindings(
        self, level: ResourcePolicy, action: str, roles: list[str]
    ) -> tuple[tuple[Rule, DerivedRole | None], ...]:
        """Rules of `level` for `action` and any of `roles` (a role and its parent roles),
        in rule order, each (rule, derived role) once."""
        if len(roles) == 1:
            return level.bindings(action, roles[0])
        seen: set[tuple[int, int]] = set()
        found: list[tuple[Rule, DerivedRole | None]] = []
        for role in roles:
            for rule, dr in level.bindings(action, role):
                k = (rule.uid, dr.uid if dr is not None else 0)
                if k not in seen:
                    seen.add(k)
                    found.append((rule, dr))
        order = {r.uid: i for i, r in enumerate(level.rules)}
        found.sort(key=lambda b: order[b[0].uid])
        return tuple(found)

    def _output(self, st: _Check, program: Any, level: Any, rule: Rule, action: str) -> OutputEntry:
        """A rule output; a failing expression gives no value and the error message (Cerbos
        reports `error` instead of `val`)."""
        act = st.activation(
            st.edr_scope(level if isinstance(level, ResourcePolicy) else None, True), True
        )
        src = f"{level.key}#{rule.name}"
        try:
            value = program.eval(act)
            if value.type() == cel.Type.ERROR:
                return OutputEntry(src, action, None, cerbos_error_text(str(value.value())))
            val = _jsonable(value.plain_value())
        except _NotJson as exc:
            return OutputEntry(src, action, None, str(exc))
        except Exception as exc:
            return OutputEntry(src, action, None, cerbos_error_text(str(exc)))
        return OutputEntry(src, action, val)


def _exact(cond: Condition, value: bool) -> bool:
    """Whether CEL evaluating the (none-free) tree `cond` to `value` proves that no operand
    failed: `all` is true only when every operand is true, `any` false only when every one is
    false; an `any` that is true (or an `all` that is false) may have absorbed an error."""
    if cond.op == "expr":
        return True
    same = (cond.op == "all") == value
    if not same and len(cond.children) != 1:
        return False
    return all(_exact(c, value) for c in cond.children)


def _index_fused(cond: Condition, out: dict[int, tuple[bool, bool]]) -> None:
    if cond.op == "expr":
        return
    if cond.program is not None:
        out[id(cond)] = (_exact(cond, True), _exact(cond, False))
    for child in cond.children:
        _index_fused(child, out)


def _condition_reads_time(cond: Condition | None) -> bool:
    return cond is not None and any(reads_clock(leaf.source) for leaf in cond.leaves())


def _rule_reads_time(rule: Rule | RoleRule) -> bool:
    if _condition_reads_time(rule.condition):
        return True
    return isinstance(rule, Rule) and any(reads_clock(src) for src in rule.output_sources)


_NO_MATCH_EFFECT = "EFFECT_NO_MATCH"
_NMFSP = "NO_MATCH_FOR_SCOPE_PERMISSIONS"


class _NotJson(ValueError):
    """An output value Cerbos cannot turn into a protobuf `Value` (its message is cel-go's)."""


def _json_key(k: Any) -> str:
    if isinstance(k, str):
        return k
    kind = "bool" if isinstance(k, bool) else "int" if isinstance(k, int) else type(k).__name__
    raise _NotJson(f"unsupported type conversion from '{kind}' to string")


def _jsonable(v: Any) -> Any:
    """CEL output values as JSON-like Python (as Cerbos' protobuf Value conversion); a map
    with keys other than strings raises `_NotJson` (an output error in Cerbos)."""
    if isinstance(v, dict):
        return {_json_key(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return float(v) if isinstance(v, int) and abs(v) > 2**53 else v
    if isinstance(v, dt.datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, dt.timedelta):
        return f"{v.total_seconds():g}s"
    if isinstance(v, bytes | bytearray):
        import base64

        return base64.b64encode(bytes(v)).decode()
    return str(v)


__all__ = ["CheckMemo", "PolicyEngine", "policy_key"]


def _rows(rule: Rule, dr: DerivedRole | None, action: str, roles: list[str]) -> int:
    """How many rows of Cerbos' rule table `rule` (via `dr`, if any) has for `action` and one of
    `roles` (a role and its parent roles): one per matching action pattern and per role entry
    of the rule (or of the derived role's parent roles) in `roles`; a `*` entry makes it one
    row whatever the other entries. Cerbos evaluates a rule's output once per such row."""
    n_actions = sum(1 for m in rule.action_matchers if m(action))
    names = dr.parent_roles if dr is not None else rule.roles
    n_roles = 1 if "*" in names else sum(1 for r in names if r in roles)
    return max(1, n_actions * n_roles)
