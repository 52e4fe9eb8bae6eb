"""The capability inventory of a policy bundle: what the policies cover, who owns it, which live
signals gate it, and where the policies and the live state disagree (`vigil inventory`).

Computed from the compiled bundle, so it sees what the engine sees: each resource policy's
actions (every action a rule names; a lone `*` only when nothing else is named), the owner from
the policy document's `metadata.annotations.owner`, and the reserved attributes (`signals.*`,
`grant.*`, `delegation.*` under `request.principal.attr`) read by the (variable-inlined)
conditions of the rules that can decide the action, and by the derived roles those rules use.
Reads are found by `deps.read_paths`; members of `delegation.chain` read through a comprehension
variable (`P.attr.delegation.chain.all(m, m.signals.risk.level ...)`) are reported as
`delegation.chain[].signals.risk.level`. A condition the analysis cannot follow is reported as
`unresolved` rather than guessed.

Gaps found from the bundle alone: policy documents without an owner. With a `LiveState` (the
worker's state changelog and the check decisions, read by `streams.processing.live_state`): actions seen in
active grants or checks that no policy can allow, signals the policies read that no producer has
sent (no subject holds that signal dimension), and delegated grants whose chain is deeper than
the policies of their kind allow (the smallest bound some condition puts on `delegation.depth`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streams.models.grant import RESERVED_PRINCIPAL_ATTRS
from streams.models.live_state import LiveState

from . import cel_env
from .compiler import POLICY_KINDS, compile_files
from .deps import read_paths, tokenize
from .loader import load_directory
from .model import EFFECT_ALLOW, Condition, PolicyCompileError, ResourcePolicy, Rule

_PRINCIPAL_ATTR = ("P", "attr")
_DEPTH = ("P", "attr", "delegation", "depth")
_CHAIN = ("P", "attr", "delegation", "chain")
_COMPARISONS = {"<", "<=", ">", ">=", "=="}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}


@dataclass(slots=True)
class ActionEntry:
    """One resource kind and action a resource policy covers."""

    kind: str
    action: str
    policy: str
    file: str
    owner: str
    #: roles (and `derived:<name>` derived roles) of the ALLOW rules that can grant it
    allowed_roles: list[str]
    #: reserved attributes the deciding conditions read, e.g. `signals.risk.level`
    signals: list[str]
    #: other attributes they read, e.g. `R.attr.owner`
    attributes: list[str]
    #: some condition reads something the analysis cannot follow (e.g. `P.attr[key]`)
    unresolved: bool
    #: the smallest bound the conditions put on `delegation.depth` (None: no bound)
    max_delegation_depth: int | None


@dataclass(slots=True)
class PolicyEntry:
    """One policy document of the bundle and its owner (`""` when it has none)."""

    file: str
    kind: str
    name: str
    owner: str


@dataclass(frozen=True, slots=True)
class Gap:
    """Something the inventory found missing: `kind` is one of `no-owner`, `no-policy`,
    `signal-never-sent`, `delegation-too-deep`."""

    kind: str
    subject: str
    detail: str


@dataclass(slots=True)
class Inventory:
    digest: str
    actions: list[ActionEntry]
    policies: list[PolicyEntry]
    gaps: list[Gap]
    live: bool = False
    #: with a live state: how much of it was read (`grants`, `subjects`, `checks`)
    live_counts: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "live": self.live,
            "live_counts": self.live_counts,
            "actions": [asdict(a) for a in self.actions],
            "policies": [asdict(p) for p in self.policies],
            "gaps": [asdict(g) for g in self.gaps],
        }


def _owner(document: dict[str, Any]) -> str:
    metadata = document.get("metadata") or {}
    owner = (metadata.get("annotations") or {}).get("owner", "")
    return owner.strip() if isinstance(owner, str) else ""


def _document_name(kind: str, body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    for key in ("resource", "principal", "role", "name"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return ""


def _attribute(path: tuple[str, ...]) -> str:
    """`("P", "attr", "signals", "risk", "level")` -> `signals.risk.level` for reserved
    attributes; other paths keep their root (`R.attr.owner`)."""
    if path[:2] == _PRINCIPAL_ATTR and len(path) > 2 and path[2] in RESERVED_PRINCIPAL_ATTRS:
        return ".".join(path[2:])
    return ".".join(path)


def _member_paths(src: str) -> set[str]:
    """`delegation.chain[].<path>` for each `<var>.<path>` read through a comprehension over
    `P.attr.delegation.chain` (or `request.principal.attr.delegation.chain`)."""
    try:
        toks = tokenize(src)
    except Exception:
        return set()
    out: set[str] = set()
    n = len(toks)
    for i in range(n):
        # `... delegation . chain . <macro> ( <var> ,`
        if not (
            toks[i] == ("id", "chain")
            and i >= 2
            and toks[i - 1] == ("op", ".")
            and toks[i - 2] == ("id", "delegation")
            and i + 4 < n
            and toks[i + 1] == ("op", ".")
            and toks[i + 2][0] == "id"
            and toks[i + 3] == ("op", "(")
            and toks[i + 4][0] == "id"
        ):
            continue
        var = toks[i + 4][1]
        for j in range(i + 5, n):
            if toks[j] != ("id", var) or toks[j - 1] == ("op", "."):
                continue
            path: list[str] = []
            k = j
            while k + 2 < n and toks[k + 1] == ("op", ".") and toks[k + 2][0] == "id":
                if k + 3 < n and toks[k + 3] == ("op", "("):
                    break  # a member call ends the path
                path.append(toks[k + 2][1])
                k += 2
            if path:
                out.add("delegation.chain[]." + ".".join(path))
    return out


def _depth_bounds(src: str, deny: bool) -> list[int]:
    """Largest chain depths the comparisons of `delegation.depth` with a number allow: in an
    ALLOW rule `depth <= 2` allows 2; in a DENY rule `depth > 2` allows 2."""
    try:
        raw = tokenize(src)
    except Exception:
        return []
    toks: list[tuple[str, str]] = []
    for tok in raw:  # the tokenizer gives `<=` as `<`, `=`
        if tok == ("op", "=") and toks and toks[-1] in (("op", c) for c in "<>=!"):
            toks[-1] = ("op", toks[-1][1] + "=")
        else:
            toks.append(tok)
    texts = [t for _, t in toks]
    bounds: list[int] = []
    for i in range(len(toks)):
        for root in (list(_DEPTH), ["request", "principal", *_DEPTH[1:]]):
            width = 2 * len(root) - 1
            if texts[i : i + width] != [p for r in root for p in (r, ".")][:-1]:
                continue
            op: str | None = None
            num: str | None = None
            after = toks[i + width : i + width + 2]
            before = toks[max(0, i - 2) : i]
            if len(after) == 2 and after[0][1] in _COMPARISONS and after[1][0] == "num":
                op, num = after[0][1], after[1][1]
            elif len(before) == 2 and before[1][1] in _COMPARISONS and before[0][0] == "num":
                op, num = _FLIPPED[before[1][1]], before[0][1]
            if op is None or num is None:
                continue
            try:
                value = float(num.rstrip("uU"))
            except ValueError:
                continue
            if deny:  # the DENY holds beyond the bound: what stays allowed is below it
                op = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!="}[op]
            if op == "<=":
                bounds.append(int(value))
            elif op == "<":
                bounds.append(int(value) - (1 if value == int(value) else 0))
    return bounds


def _conditions(rule: Rule) -> list[Condition]:
    found = [rule.condition] if rule.condition is not None else []
    found += [dr.condition for dr in rule.derived_roles if dr.condition is not None]
    return found


def _policy_actions(policy: ResourcePolicy) -> list[str]:
    named = sorted({a for r in policy.rules for a in r.actions if a != "*"})
    return named or (["*"] if policy.rules else [])


def _entry(policy: ResourcePolicy, action: str, owner: str) -> ActionEntry:
    rules = [r for r in policy.rules if action in r.actions or r.matches_action(action)]
    signals: set[str] = set()
    attributes: set[str] = set()
    unresolved = False
    bounds: list[int] = []
    roles: set[str] = set()
    for rule in rules:
        if rule.effect == EFFECT_ALLOW:
            roles.update(rule.roles)
            roles.update(f"derived:{dr.name}" for dr in rule.derived_roles)
        for cond in _conditions(rule):
            bounds += _depth_bounds(cond.source, deny=rule.effect != EFFECT_ALLOW)
            paths = read_paths(cond.source)
            if paths is None:
                unresolved = True
                continue
            for p in paths:
                name = _attribute(p)
                reserved = name.split(".")[0] in RESERVED_PRINCIPAL_ATTRS
                (signals if reserved else attributes).add(name)
            signals.update(_member_paths(cond.source))
    # `has(P.attr.delegation.initiator)` next to `P.attr.delegation.initiator.signals...`:
    # report the specific reads, the bare prefix only when nothing under it is read.
    specific = sorted(
        s
        for s in signals
        if not any(o != s and o.startswith(s + ".") or o.startswith(s + "[]") for o in signals)
    )
    return ActionEntry(
        kind=policy.kind,
        action=action,
        policy=policy.key,
        file=policy.file,
        owner=owner,
        allowed_roles=sorted(roles),
        signals=specific,
        attributes=sorted(attributes),
        unresolved=unresolved,
        max_delegation_depth=min(bounds) if bounds else None,
    )


def _compile(directory: str | Path) -> tuple[str, dict[str, dict[str, Any]], list[ResourcePolicy]]:
    loaded = load_directory(directory)
    if loaded.issues:
        raise PolicyCompileError(loaded.issues)
    compiled = compile_files(cel_env.new_env(), loaded.files)
    if compiled.issues:
        raise PolicyCompileError(compiled.issues)
    documents = {lf.rel_path: lf.document for lf in loaded.files}
    return loaded.digest, documents, list(compiled.policies.values())


def build_inventory(directory: str | Path, live: LiveState | None = None) -> Inventory:
    """The inventory of the bundle in `directory` (raises `PolicyCompileError` as the engine
    does), with the live gaps when `live` is given."""
    digest, documents, policies = _compile(directory)
    entries: list[PolicyEntry] = []
    gaps: list[Gap] = []
    for file, doc in sorted(documents.items()):
        if doc.get("disabled") is True:
            continue
        kind = next((k for k in POLICY_KINDS if k in doc), "")
        entry = PolicyEntry(file, kind, _document_name(kind, doc.get(kind)), _owner(doc))
        entries.append(entry)
        if not entry.owner:
            gaps.append(
                Gap("no-owner", file, f"{kind} {entry.name} has no metadata.annotations.owner")
            )
    actions = [
        _entry(pol, action, _owner(documents.get(pol.file, {})))
        for pol in sorted(policies, key=lambda p: p.key)
        for action in _policy_actions(pol)
    ]
    inventory = Inventory(digest, actions, entries, gaps)
    if live is not None:
        inventory.live = True
        inventory.live_counts = {
            "grants": len(live.grants),
            "subjects": live.subjects,
            "checks": sum(live.checks.values()),
        }
        inventory.gaps += live_gaps(policies, actions, live)
    return inventory


def _allowed_by_some_rule(policies: Iterable[ResourcePolicy], kind: str, action: str) -> str:
    """`""` when some ALLOW rule of a `kind` policy matches `action`, else why not."""
    of_kind = [p for p in policies if p.kind == kind]
    if not of_kind:
        return f"no resource policy for kind {kind!r}"
    if any(r.effect == EFFECT_ALLOW and r.matches_action(action) for p in of_kind for r in p.rules):
        return ""
    return f"no rule of {', '.join(sorted(p.key for p in of_kind))} allows {action!r}"


def _member_signal(name: str) -> str | None:
    """The subject-level `signals.*` attribute a read stands for: a member's signals come from
    the same producers as the principal's (`delegation.initiator.signals.risk.level` and
    `delegation.chain[].signals.risk.level` are `signals.risk.level`)."""
    for prefix in ("delegation.initiator.", "delegation.chain[]."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name if name.startswith("signals.") else None


#: `signals.*` attributes the pipeline fills from the grant itself, not from a producer.
PIPELINE_SIGNALS = frozenset({"signals.device.id", "signals.session.id"})


def _sent(name: str, sent: frozenset[str]) -> bool:
    return any(name == s or name.startswith(s + ".") or s.startswith(name + ".") for s in sent)


def live_gaps(
    policies: list[ResourcePolicy], actions: list[ActionEntry], live: LiveState
) -> list[Gap]:
    gaps: list[Gap] = []
    seen: dict[tuple[str, str], list[str]] = {}
    for grant in live.grants:
        for action in grant.actions:
            seen.setdefault((grant.kind, action), []).append(f"grant {grant.grant_id}")
    for (kind, action), count in live.checks.items():
        seen.setdefault((kind, action), []).append(f"{count} check(s)")
    for (kind, action), where in sorted(seen.items()):
        why = _allowed_by_some_rule(policies, kind, action)
        if why:
            gaps.append(Gap("no-policy", f"{kind}:{action}", f"{why}; seen in {', '.join(where)}"))
    read: dict[str, set[str]] = {}
    for entry in actions:
        for name in entry.signals:
            signal = _member_signal(name)
            if signal is not None and signal not in PIPELINE_SIGNALS:
                read.setdefault(signal, set()).add(entry.policy)
    for signal, keys in sorted(read.items()):
        if not _sent(signal, live.sent_signals):
            gaps.append(
                Gap(
                    "signal-never-sent",
                    signal,
                    f"read by {', '.join(sorted(keys))}; no subject has it from a producer",
                )
            )
    limits: dict[str, int] = {}
    for entry in actions:
        bound = entry.max_delegation_depth
        if bound is not None:
            limits[entry.kind] = min(bound, limits.get(entry.kind, bound))
    for grant in live.grants:
        allowed = limits.get(grant.kind)
        depth = len(grant.on_behalf_of)
        if allowed is not None and depth > allowed:
            chain = " -> ".join([*grant.on_behalf_of, grant.subject])
            gaps.append(
                Gap(
                    "delegation-too-deep",
                    f"grant {grant.grant_id}",
                    f"depth {depth} > {allowed} allowed for {grant.kind}: {chain}",
                )
            )
    return gaps
