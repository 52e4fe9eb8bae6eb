"""A Cerbos CheckResources request answered with the principal's *live* signal state.

Request parsing, evaluation and response shapes are `streams.policy.api`'s (the ones
``vigil policy eval`` uses); this module adds what makes it Vigil's answer:

* the reserved principal attributes are replaced: ``signals`` is built by
  `streams.processing.evaluation.signal_attributes` from the subject's current signal state,
  exactly as for a grant's re-evaluation, ``grant`` is empty (a check is not a grant) and
  ``delegation`` is the empty chain (depth 0, no initiator: a check carries no ``on_behalf_of``;
  docs/delegation.md); whatever the caller sent under these names is discarded and counted,
  never used;
* one Decision record per checked action (cause ``check``, ids derived from the call id), with
  the effective request, the bundle digest, the matched policy, rule and scope, and the time;
* ``vigil.watch``: the allowed actions as grant events for ``authz.grants``;
* ``auxData.jwt``: the token is verified with the worker's key sets (Cerbos ``auxData.jwt``
  configuration, `streams.policy.auxdata`) and refusals are counted by reason;
* PlanResources by the query planner (``plan``, `streams.policy.planner`).

No I/O here: the signal state comes from a callable (the worker's store or replica), and the
Decision records and grant events are returned for the caller to publish.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams import metrics
from streams.models.grant import RESERVED_PRINCIPAL_ATTRS
from streams.policy import PolicyEngine
from streams.policy.api import (
    AuxRequest,
    InvalidAuxData,
    RequestError,
    parse_plan_request,
    parse_request,
    request_annotations,
    response_json,
    result_json,
    verified_aux_data,
)
from streams.policy.auxdata import NO_KEY_SETS, AuxDataVerifier
from streams.policy.planner import PlanUnsupported, plan_response
from streams.processing.evaluation import ALLOW, decision_id, signal_attributes
from streams.state.risk import RiskModel
from streams.state.subject import SignalState, new_signal_state, subject_snapshot

_SUBJECT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")  # as grants' principal.type

#: ``requestContext.annotations`` keys Vigil reads (docs/check-api.md).
PRINCIPAL_TYPE = "vigil.principal_type"
SESSION_ID = "vigil.session_id"
DEVICE_ID = "vigil.device_id"
WATCH = "vigil.watch"
DEFAULT_PRINCIPAL_TYPE = "user"

UNIMPLEMENTED = 12  # gRPC: a plan Vigil's planner cannot produce exactly as Cerbos would

#: ``request.principal.attr.grant`` of a plain check: every field present, none set.
NO_GRANT = {"id": "", "issued_at": "", "expires_at": ""}


@dataclass(frozen=True, slots=True)
class Limits:
    """Cerbos' ``server.requestLimits`` (same defaults)."""

    max_resources: int = 50
    max_actions: int = 50


@dataclass(slots=True)
class CheckOutcome:
    response: dict[str, Any]
    subject: str
    decisions: list[dict[str, Any]] = field(default_factory=list)
    # ``vigil.watch``: grant events (the ``authz.grants`` JSON shape) for the allowed actions
    grants: list[dict[str, Any]] = field(default_factory=list)


MAX_WATCH_TTL_SECONDS = 7 * 24 * 3600


def _watch(annotations: Mapping[str, Any]) -> tuple[str, int] | None:
    """``vigil.watch: {"grant_id": str, "ttl_seconds": number}`` -> (grant id, ttl ms)."""
    raw = annotations.get(WATCH)
    if raw is None:
        return None
    where = f"requestContext.annotations[{WATCH!r}]"
    if not isinstance(raw, dict) or set(raw) - {"grant_id", "ttl_seconds"}:
        raise RequestError(f"{where} must be an object with grant_id and ttl_seconds only")
    grant_id = raw.get("grant_id")
    ttl = raw.get("ttl_seconds")
    if not isinstance(grant_id, str) or not 0 < len(grant_id) <= 200:
        raise RequestError(f"{where}.grant_id must be a string of 1 to 200 characters")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise RequestError(f"{where}.ttl_seconds must be a number")
    if not 0 < ttl <= MAX_WATCH_TTL_SECONDS:
        raise RequestError(f"{where}.ttl_seconds must be in (0, {MAX_WATCH_TTL_SECONDS}]")
    return grant_id, round(ttl * 1000)


#: Raw signal state bytes of a subject key (``user:alice``), or None when it has none.
SignalLookup = Callable[[bytes], bytes | None]


def _annotation(annotations: Mapping[str, Any], key: str) -> str | None:
    value = annotations.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestError(f"requestContext.annotations[{key!r}] must be a string")
    return value


def subject_key_of(principal_id: str, annotations: Mapping[str, Any]) -> str:
    """The subject key whose signal state the principal gets: ``type:id``, the type from the
    ``vigil.principal_type`` annotation (default ``user``), as grants on ``authz.grants``."""
    kind = _annotation(annotations, PRINCIPAL_TYPE) or DEFAULT_PRINCIPAL_TYPE
    if not _SUBJECT_TYPE.match(kind):
        raise RequestError(f"requestContext.annotations[{PRINCIPAL_TYPE!r}]: invalid type {kind!r}")
    return f"{kind}:{principal_id}"


def live_principal(
    principal: dict[str, Any],
    state: SignalState,
    risk: RiskModel,
    device_id: str | None,
    session_id: str | None,
) -> dict[str, Any]:
    """The principal as the policies see it: caller attributes minus the reserved ones, plus
    the live ``signals``, an empty ``grant`` and an empty ``delegation`` chain."""
    attr = dict(principal["attr"])
    for name in RESERVED_PRINCIPAL_ATTRS:
        if attr.pop(name, None) is not None:
            metrics.CHECK_SPOOFED_ATTRIBUTES.labels(name).inc()
    attr["signals"] = signal_attributes(subject_snapshot(state, risk), state, device_id, session_id)
    attr["grant"] = dict(NO_GRANT)
    attr["delegation"] = {"chain": [], "depth": 0}
    return {**principal, "attr": attr}


class LiveChecker:
    """Answers CheckResources requests with live state; one per worker."""

    def __init__(
        self,
        engine: Callable[[], PolicyEngine],
        risk: RiskModel,
        signals: SignalLookup,
        limits: Limits = Limits(),
        aux_data: AuxDataVerifier = NO_KEY_SETS,
    ) -> None:
        self._engine = engine  # the bundle the worker runs *now* (switches between calls)
        self.risk = risk
        self._signals = signals
        self.limits = limits
        self.aux_data = aux_data  # Cerbos auxData.jwt: how request tokens are verified

    def check(self, body: Any, call_id: str, now_ms: int | None = None) -> CheckOutcome:
        """Raises `RequestError` (the Cerbos error body) for a request Cerbos would refuse."""
        request_id, principal, entries, raw_aux, include_meta = parse_request(body)
        if len(entries) > self.limits.max_resources:
            raise RequestError(
                f"number of resources in batch ({len(entries)}) exceeds configured limit "
                f"({self.limits.max_resources})"
            )
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        when = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC)
        aux = self._verified(raw_aux, when)  # Cerbos: after the resource limit, before actions'
        for _, actions in entries:
            if len(actions) > self.limits.max_actions:
                raise RequestError(
                    f"number of actions ({len(actions)}) exceeds configured limit "
                    f"({self.limits.max_actions})"
                )
        annotations = request_annotations(body)
        watch = _watch(annotations)
        subject, effective = self._live(principal, annotations)
        engine = self._engine()
        # one memo per request: its resources share condition results on the principal (the
        # engine guarantees the same results as without; `now()` is fixed for the request)
        memo = engine.new_memo(now=when)
        outcome = CheckOutcome(response={}, subject=subject)
        effects: dict[str, int] = {}  # metric increments, once per request (each takes a lock)
        results = []
        for index, (resource, actions) in enumerate(entries):
            started = time.perf_counter()
            result = engine.check(effective, resource, actions, aux_data=aux, memo=memo)
            elapsed = time.perf_counter() - started
            results.append(result_json(resource, actions, result, include_meta))
            request = {"principal": effective, "resource": resource}
            if aux:
                request["auxData"] = aux
            for action in actions:
                decided = result.actions[action]
                effects[decided.effect] = effects.get(decided.effect, 0) + 1
                outcome.decisions.append(
                    {
                        "decision_id": decision_id(
                            "", "check", f"{call_id}/{index}/{action}", engine.digest
                        ),
                        "grant_id": None,
                        "subject": subject,
                        "cause": {"kind": "check", "event_id": call_id},
                        "effect": decided.effect,
                        "actions": [
                            {
                                "action": action,
                                "effect": decided.effect,
                                "policy": decided.policy or "",
                                "rule": decided.rule,
                                "scope": decided.scope or "",
                            }
                        ],
                        "request": {**request, "actions": [action]},
                        "policy_digest": engine.digest,
                        "previous_policy_digest": None,
                        "evaluated_at": now_ms,
                        "cause_event_time": now_ms,
                        "eval_duration_seconds": elapsed / len(actions),
                        "errors": [str(e) for e in result.errors],
                        "call_id": call_id,
                        "request_id": request_id or None,
                    }
                )
            if watch is not None:
                allowed = [a for a in actions if result.actions[a].effect == ALLOW]
                if allowed:
                    gid = watch[0] if len(entries) == 1 else f"{watch[0]}/{index}"
                    outcome.grants.append(
                        {
                            "op": "issued",
                            "grant_id": gid,
                            "principal": {
                                "id": principal["id"],
                                "type": subject.split(":", 1)[0],
                                "roles": principal["roles"],
                                "attr": principal["attr"],  # reserved names dropped on intake
                            },
                            "resource": {k: v for k, v in resource.items() if v != ""},
                            "actions": allowed,
                            "session_id": _annotation(annotations, SESSION_ID),
                            "device_id": _annotation(annotations, DEVICE_ID),
                            "issued_at": now_ms,
                            "expires_at": now_ms + watch[1],
                        }
                    )
        for effect, count in effects.items():
            metrics.CHECK_ACTIONS.labels(effect).inc(count)
        outcome.response = response_json(request_id, results, call_id)
        return outcome

    def _verified(self, aux: AuxRequest | None, when: dt.datetime) -> dict[str, Any] | None:
        """The request's verified ``auxData`` (claims), refusals counted by reason."""
        try:
            return verified_aux_data(aux, self.aux_data, when)
        except InvalidAuxData as exc:
            metrics.CHECK_AUX_DATA_REJECTED.labels(exc.reason).inc()
            raise

    def _live(
        self, principal: dict[str, Any], annotations: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The principal's subject key and the principal with its live signals merged in."""
        subject = subject_key_of(principal["id"], annotations)
        raw = self._signals(subject.encode())
        state = orjson.loads(raw) if raw is not None else new_signal_state()
        effective = live_principal(
            principal,
            state,
            self.risk,
            _annotation(annotations, DEVICE_ID),
            _annotation(annotations, SESSION_ID),
        )
        return subject, effective

    def plan(self, body: Any, call_id: str, now_ms: int | None = None) -> dict[str, Any]:
        """PlanResources with the live principal: Cerbos's query planner
        (`streams.policy.planner`), the principal's attributes and live signals folded in as
        constants. A plan the planner cannot produce exactly as Cerbos would is refused with
        UNIMPLEMENTED (code 12) and the reason, never approximated. Raises `RequestError`."""
        req = parse_plan_request(body)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        when = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC)
        aux = self._verified(req["aux"], when)  # Cerbos extracts auxData first
        actions: list[str] = req["actions"]
        if len(actions) > self.limits.max_actions:
            raise RequestError(
                f"number of actions ({len(actions)}) exceeds configured limit "
                f"({self.limits.max_actions})"
            )
        engine = self._engine()
        _, effective = self._live(req["principal"], request_annotations(body))
        plural = bool("actions" in body and body["actions"])
        try:
            return plan_response(
                engine, req, effective, call_id, plural=plural, aux_data=aux, now=when
            )
        except PlanUnsupported as exc:
            raise RequestError(f"cannot plan: {exc}", code=UNIMPLEMENTED) from None


__all__ = [
    "CheckOutcome",
    "Limits",
    "LiveChecker",
    "SignalLookup",
    "live_principal",
    "subject_key_of",
]
