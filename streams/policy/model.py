"""Data shapes of the policy engine: public results and compile errors, plus compiled rules.

Kept free of CEL and YAML so that callers (pipeline, web views) can import the result types
without pulling in the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EFFECT_ALLOW = "EFFECT_ALLOW"
EFFECT_DENY = "EFFECT_DENY"
NO_MATCH = "NO_MATCH"
DEFAULT_VERSION = "default"


@dataclass(slots=True)
class ActionResult:
    """Effect for one action, with the policy key, deciding rule and scope (for audit)."""

    effect: str
    policy: str
    rule: str | None
    scope: str


@dataclass(slots=True)
class OutputEntry:
    """One rule output (Cerbos `outputs[]`): `src` is `<policy key>#<rule name>`."""

    src: str
    action: str
    val: Any
    #: the evaluation error of the output expression (then `val` is None), as Cerbos' `error`
    error: str | None = None


@dataclass(slots=True)
class CheckResult:
    """Outcome of one check: per-action effects, active derived roles, evaluation errors,
    rule outputs (in Cerbos' order) and schema validation errors (Cerbos' shape:
    `{"path", "message", "source": "SOURCE_PRINCIPAL"|"SOURCE_RESOURCE"}`)."""

    actions: dict[str, ActionResult]
    effective_derived_roles: list[str]
    errors: list[str]
    outputs: list[OutputEntry] = field(default_factory=list)
    validation_errors: list[dict[str, Any]] = field(default_factory=list)

    def allowed(self, action: str) -> bool:
        """True only for an explicit ALLOW; unknown actions are denied (default deny)."""
        res = self.actions.get(action)
        return res is not None and res.effect == EFFECT_ALLOW


@dataclass(frozen=True, slots=True)
class CompileIssue:
    """One compile error: the file, a JSON-ish path into its document, and a message."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        loc = f"{self.file}: {self.path}" if self.path else self.file
        return f"{loc}: {self.message}"


class PolicyCompileError(Exception):
    """Raised with every problem found in a bundle, so authors fix them in one pass."""

    def __init__(self, errors: list[CompileIssue]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} policy compile error(s):\n{lines}")


@dataclass(slots=True)
class Condition:
    """A compiled `match` tree. Leaves (`op == "expr"`) hold one CEL program each, because Cerbos
    turns a failing leaf into false *before* combining: `none.of: [<error>]` is true.

    An `all`/`any` node without `none` below it is *fused*: `program` is then one CEL program
    for the whole subtree (`(a) && (b)`, `(a) || (b)`). CEL's commutative error handling gives
    Cerbos' result: an erroring (or non-boolean) operand makes the fused result false or an
    error exactly when Cerbos' result is false, and an error counts as false. `none` is never
    fused (`none.of: [<error>]` is true in Cerbos but `!(<error>)` is an error in CEL).

    On the root of a rule or derived-role condition, `deps` are the attribute paths the whole
    condition reads (see `deps.py`), None meaning "the whole request"; `dep_ids` are the same
    paths interned by the engine for the `CheckMemo` key."""

    op: str
    source: str
    program: Any = None
    children: tuple[Condition, ...] = ()
    uses_runtime: bool = False
    deps: tuple[tuple[str, ...], ...] | None = None
    dep_ids: tuple[int, ...] | None = None

    @property
    def fused(self) -> bool:
        """True when one CEL program decides this node (a leaf, or a fused all/any)."""
        return self.program is not None

    def leaves(self) -> list[Condition]:
        if self.op == "expr":
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]


@dataclass(slots=True)
class DerivedRole:
    """A derived role definition; `uid` keys the per-check evaluation cache."""

    uid: int
    name: str
    parent_roles: frozenset[str]
    condition: Condition | None
    origin: str

    def has_parent(self, role: str) -> bool:
        return "*" in self.parent_roles or role in self.parent_roles


@dataclass(slots=True)
class Rule:
    """A resource-policy rule with its action globs compiled to matchers."""

    uid: int
    name: str
    actions: tuple[str, ...]
    action_matchers: tuple[Any, ...]
    roles: frozenset[str]
    derived_roles: tuple[DerivedRole, ...]
    effect: str
    condition: Condition | None
    # Principal-policy rules: the resource kinds they apply to.
    resource_matchers: tuple[Any, ...] = ()
    # Rule outputs: compiled CEL programs (None when absent).
    output_activated: Any = None
    output_not_met: Any = None
    # Their (inlined) CEL sources, to know whether an output reads the clock.
    output_sources: tuple[str, ...] = ()
    # REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS: a conditional ALLOW becomes DENY-unless-condition.
    negated: bool = False

    def matches_resource(self, kind: str) -> bool:
        return any(m(kind) for m in self.resource_matchers)

    def matches_action(self, action: str) -> bool:
        return any(m(action) for m in self.action_matchers)


@dataclass(slots=True)
class ResourcePolicy:
    """One compiled resource policy (one scope level) with a memoised (action, role) index."""

    kind: str
    version: str
    scope: str
    key: str
    file: str
    rules: list[Rule]
    derived_roles: dict[str, DerivedRole]
    uses_runtime: bool = False
    scope_permissions: str = "SCOPE_PERMISSIONS_OVERRIDE_PARENT"
    schemas: Any = None  # the policy's `schemas` block, validated by schemas.py
    _index: dict[tuple[str, str], tuple[tuple[Rule, DerivedRole | None], ...]] = field(
        default_factory=dict
    )

    def bindings(self, action: str, role: str) -> tuple[tuple[Rule, DerivedRole | None], ...]:
        """Rules that apply to (action, role); derived-role rules carry the derived role to test.

        Computed on first use and memoised: actions and roles come from small, closed sets.
        """
        key = (action, role)
        found = self._index.get(key)
        if found is not None:
            return found
        out: list[tuple[Rule, DerivedRole | None]] = []
        for rule in self.rules:
            if not rule.matches_action(action):
                continue
            if "*" in rule.roles or role in rule.roles:
                out.append((rule, None))
            for dr in rule.derived_roles:
                if dr.has_parent(role):
                    out.append((rule, dr))
        result = tuple(out)
        if len(self._index) > 50_000:  # bound memory if callers send unbounded action names
            self._index.clear()
        self._index[key] = result
        return result


@dataclass(slots=True)
class PrincipalPolicy:
    """One compiled principal policy (one scope level): rules carry resource matchers."""

    principal: str
    version: str
    scope: str
    key: str
    file: str
    rules: list[Rule]
    scope_permissions: str = "SCOPE_PERMISSIONS_OVERRIDE_PARENT"
    _index: dict[tuple[str, str], tuple[Rule, ...]] = field(default_factory=dict)

    def bindings(self, kind: str, action: str) -> tuple[Rule, ...]:
        key = (kind, action)
        found = self._index.get(key)
        if found is None:
            found = tuple(
                r for r in self.rules if r.matches_resource(kind) and r.matches_action(action)
            )
            if len(self._index) > 50_000:
                self._index.clear()
            self._index[key] = found
        return found


@dataclass(slots=True)
class RoleRule:
    """A role-policy rule: resource kinds, the allowed actions, an optional condition."""

    uid: int
    resource_matchers: tuple[Any, ...]
    action_matchers: tuple[Any, ...]
    condition: Condition | None


@dataclass(slots=True)
class RolePolicy:
    """One compiled role policy: narrows what `role` may do in `scope` (see docs)."""

    role: str
    version: str
    scope: str
    key: str
    file: str
    parent_roles: tuple[str, ...]
    rules: list[RoleRule]
