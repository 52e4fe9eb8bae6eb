"""Re-evaluation of one grant against live subject state: builds the Cerbos request with the
reserved ``signals``/``grant`` attributes, runs the policy engine, and makes the Decision and,
when the grant no longer holds, the Revocation record.

Ids are deterministic (a hash of grant, cause and bundle digest; without the digest for
lifecycle decisions, which no policy made) so a replay after a crash yields the same ids, and a
grant has exactly one possible revocation id.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from streams.models.timeparse import to_rfc3339
from streams.policy import CheckMemo, PolicyEngine
from streams.state.subject import (
    SignalState,
    device_snapshot,
    session_snapshot,
    token_snapshot,
)

ALLOW = "EFFECT_ALLOW"
DENY = "EFFECT_DENY"


def _digest_id(prefix: str, *parts: str) -> str:
    h = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16)
    return prefix + h.hexdigest()


def revocation_id(grant_id: str) -> str:
    """One grant, one revocation id: replays never create a second, different revocation."""
    return _digest_id("r-", grant_id)


def decision_id(grant_id: str, cause_kind: str, cause_id: str, digest: str) -> str:
    return _digest_id("d-", grant_id, cause_kind, cause_id, digest)


@dataclass(slots=True)
class Cause:
    kind: str  # signal | grant-issued | release | expiry | policy-change | time | check |
    # dependency | cascade (docs/delegation.md)
    event_id: str
    event_time: int
    # cause ``signal`` only: its type (in the record, and a metrics label) and Kafka record
    # timestamp (metrics only)
    signal_type: str = "none"
    arrival: int = -1
    # a ``credential-change`` signal only: what a CAEP credential-change SET needs
    credential_type: str | None = None
    change_type: str | None = None
    # delegation only: the original cause (signal event id or root grant id) and the path through
    # the chain (subject keys from the member to the holder, or grant ids from the root grant)
    root_cause: str | None = None
    path: tuple[str, ...] | None = None
    record: dict[str, Any] = field(init=False, repr=False, compare=False)
    """The ``cause`` of the Decision and Revocation records: built once and shared by every
    record of this cause (one signal may re-evaluate many grants); never mutated. Fields that
    are null are left out (as in JSON output; Avro writes their default, null)."""

    def __post_init__(self) -> None:
        record: dict[str, Any] = {"kind": self.kind, "event_id": self.event_id}
        if self.kind == "signal":
            record["signal_type"] = self.signal_type
            if self.credential_type is not None:
                record["credential_type"] = self.credential_type
            if self.change_type is not None:
                record["change_type"] = self.change_type
        if self.root_cause is not None:
            record["root_cause"] = self.root_cause
        if self.path is not None:
            record["path"] = list(self.path)
        self.record = record


@dataclass(slots=True)
class Evaluation:
    decision: dict[str, Any]
    revocation: dict[str, Any] | None


def effective_request(
    grant: dict[str, Any],
    subject: dict[str, Any],
    state: SignalState,
    delegation: dict[str, Any] | None = None,
    device_replica: list[Any] | None = None,
) -> dict[str, Any]:
    """The request the policy sees: the grant's principal with live signals merged in, and its
    delegation chain with each member's replicated state (``streams.state.delegation``);
    ``device_replica`` is the state of the grant's device subject, when one was forwarded."""
    principal = grant["principal"]
    attr = dict(principal["attr"])
    attr["signals"] = signal_attributes(
        subject,
        state,
        grant.get("device_id"),
        grant.get("session_id"),
        grant["grant_id"],
        grant.get("issued_at"),
        device_replica,
    )
    attr["grant"] = grant_attributes(grant)
    attr["delegation"] = delegation if delegation is not None else {"chain": [], "depth": 0}
    return {
        "principal": {"id": principal["id"], "roles": principal["roles"], "attr": attr},
        "resource": grant["resource"],
        "actions": grant["actions"],
    }


def signal_attributes(
    subject: dict[str, Any],
    state: SignalState,
    device_id: str | None,
    session_id: str | None,
    grant_id: str | None = None,
    issued_at: int | None = None,
    device_replica: list[Any] | None = None,
) -> dict[str, Any]:
    """``request.principal.attr.signals``: the one place it is built, for a grant's
    re-evaluation and for a check (``streams.processing.check``) alike, so a policy sees the
    same live state whichever way it is asked. ``subject`` is ``subject_snapshot(state, risk)``."""
    return {
        **subject,
        "device": device_snapshot(state, device_id, device_replica),
        "session": session_snapshot(state, session_id, grant_id, device_id, issued_at),
        "token": token_snapshot(state, grant_id),
    }


@lru_cache(maxsize=1 << 16)
def _rfc3339(ms: int) -> str:
    return to_rfc3339(ms)


def grant_attributes(grant: dict[str, Any]) -> dict[str, str]:
    """``request.principal.attr.grant``: the grant's own facts, as policies read them."""
    expires_at = grant.get("expires_at")
    return {
        "id": grant["grant_id"],
        "issued_at": _rfc3339(grant["issued_at"]),
        "expires_at": _rfc3339(expires_at) if expires_at else "",
    }


def evaluate_grant(
    engine: PolicyEngine,
    grant: dict[str, Any],
    subject_key: str,
    subject: dict[str, Any],
    state: SignalState,
    cause: Cause,
    now_ms: int,
    memo: CheckMemo,
    previous_digest: str | None = None,
    delegation: dict[str, Any] | None = None,
    device_replica: list[Any] | None = None,
) -> Evaluation:
    """Evaluate every action of a grant; DENY on any action means the grant no longer holds."""
    request = effective_request(grant, subject, state, delegation, device_replica)
    started = time.perf_counter()
    # The memo's now() is the batch's clock, the same instant recorded as evaluated_at; it lets
    # grants of a batch share condition results whose inputs are equal.
    result = engine.check(request["principal"], request["resource"], request["actions"], memo=memo)
    elapsed = time.perf_counter() - started
    actions = []
    denied = []
    for action in grant["actions"]:
        res = result.actions[action]
        actions.append(
            {
                "action": action,
                "effect": res.effect,
                "policy": res.policy,
                "rule": res.rule,
                "scope": res.scope,
            }
        )
        if res.effect != ALLOW:
            denied.append(res)
    digest = engine.digest
    grant_id = grant["grant_id"]
    did = decision_id(grant_id, cause.kind, cause.event_id, digest)
    decision = {
        "decision_id": did,
        "grant_id": grant_id,
        "subject": subject_key,
        "cause": cause.record,
        "effect": DENY if denied else ALLOW,
        "actions": actions,
        "request": request,
        "policy_digest": digest,
        "previous_policy_digest": previous_digest,
        "evaluated_at": now_ms,
        "cause_event_time": cause.event_time,
        "eval_duration_seconds": elapsed,
        "errors": list(result.errors),
    }
    revocation = None
    if denied:
        first = denied[0]
        revocation = revocation_record(
            grant,
            subject_key,
            decision,
            [a["action"] for a in actions if a["effect"] != ALLOW],
            first.policy,
            first.rule,
            now_ms,
        )
    return Evaluation(decision=decision, revocation=revocation)


def revocation_record(
    grant: dict[str, Any],
    subject_key: str,
    decision: dict[str, Any],
    denied_actions: list[str],
    policy: str | None,
    rule: str | None,
    now_ms: int,
) -> dict[str, Any]:
    """The Revocation that goes with ``decision`` (same cause, digests and times)."""
    return {
        "revocation_id": revocation_id(grant["grant_id"]),
        "grant_id": grant["grant_id"],
        "subject": subject_key,
        "session_id": grant.get("session_id"),
        "device_id": grant.get("device_id"),
        "decision_id": decision["decision_id"],
        "cause": decision["cause"],
        "denied_actions": denied_actions,
        "policy": policy,
        "rule": rule,
        "policy_digest": decision["policy_digest"],
        "previous_policy_digest": decision["previous_policy_digest"],
        "revoked_at": now_ms,
        "cause_event_time": decision["cause_event_time"],
    }


def lifecycle_decision(
    grant: dict[str, Any],
    subject_key: str,
    cause: Cause,
    now_ms: int,
    policy_digest: str,
    effect: str = DENY,
) -> dict[str, Any]:
    """A Decision made without policy evaluation: the grant stopped being watched (cause
    ``expiry``; ``release``). Every action gets ``effect`` with no policy and no rule, the
    request is the grant as issued (no signal snapshot: nothing was evaluated), and the id does
    not depend on the bundle (no policy decided), so a replay under another bundle repeats it."""
    principal = grant["principal"]
    attr = dict(principal["attr"])
    attr["grant"] = grant_attributes(grant)
    return {
        "decision_id": decision_id(grant["grant_id"], cause.kind, cause.event_id, ""),
        "grant_id": grant["grant_id"],
        "subject": subject_key,
        "cause": cause.record,
        "effect": effect,
        "actions": [
            {"action": a, "effect": effect, "policy": "", "rule": None, "scope": ""}
            for a in grant["actions"]
        ],
        "request": {
            "principal": {"id": principal["id"], "roles": principal["roles"], "attr": attr},
            "resource": grant["resource"],
            "actions": grant["actions"],
        },
        "policy_digest": policy_digest,
        "previous_policy_digest": None,
        "evaluated_at": now_ms,
        "cause_event_time": cause.event_time,
        "eval_duration_seconds": 0.0,
        "errors": [],
    }


def expiry_outputs(
    grant: dict[str, Any], subject_key: str, now_ms: int, policy_digest: str
) -> Evaluation:
    """Decision (DENY) and Revocation with cause ``expiry`` for a grant past ``expires_at``;
    the cause is the grant's expiry instant, so replays give the same ids."""
    expires_at = grant["expires_at"]
    cause = Cause("expiry", f"{grant['grant_id']}@{expires_at}", expires_at)
    decision = lifecycle_decision(grant, subject_key, cause, now_ms, policy_digest)
    revocation = revocation_record(
        grant, subject_key, decision, list(grant["actions"]), None, None, now_ms
    )
    return Evaluation(decision=decision, revocation=revocation)


def delegation_revocation(
    grant: dict[str, Any],
    subject_key: str,
    request: dict[str, Any],
    cause: Cause,
    rule: str,
    now_ms: int,
    policy_digest: str,
) -> Evaluation:
    """Decision (DENY) and Revocation of a grant ended by its delegation, not by a policy: a
    chain member was disabled or compromised (``rule`` ``vigil.delegation.member-disabled`` |
    ``vigil.delegation.member-compromised``, ``request`` the effective request that shows it),
    or the grant it was made under ended (cause ``cascade``, rule ``vigil.delegation.cascade``).
    Like ``expiry``, no policy decided: every action is denied, ``policy`` is empty."""
    decision = lifecycle_decision(grant, subject_key, cause, now_ms, policy_digest)
    decision["request"] = request
    for action in decision["actions"]:
        action["rule"] = rule
    revocation = revocation_record(
        grant, subject_key, decision, list(grant["actions"]), None, rule, now_ms
    )
    return Evaluation(decision=decision, revocation=revocation)
