"""Per-subject state: the newest value of every signal dimension, and the subject's grants.

Two plain JSON-able dicts per subject (stored with orjson in RocksDB and in the changelog under
separate keys, so the frequent telemetry signal rewrites only the small signal part):

    signal state: {"dims":    {dimension: [event_time_ms, event_id, value]},
                   "recent":  [event_id, ...]}                  # bounded, for de-duplication
    grant state:  {"grants":  {grant_id: grant},                # active grants
                   "revoked": {grant_id: [issued_at, keep_until_ms]},  # terminal tombstones
                   "released": {grant_id: [issued_at | None, keep_until_ms, release_offset]}}

A ``released`` tombstone remembers the ``authz.grants`` offset of the release: an ``issued``
for that id at a lower offset is a replay of what came before the release (ignored), at a higher
offset it is a new issuance of a released id (refused). Grant states written before releases
left tombstones have no ``released`` map.

Device and session entries (dimensions ``device:<id>`` and ``session:<id>``) are pruned when no
active grant has named them for the state retention (``prune_entries``, docs/operations.md
"Bounded state"): an entry found unnamed gets a fourth element, the worker time it was first
found so, and ``"sessions_pruned_until"`` in the signal state remembers the horizon of the newest
pruned session revocation, so that a grant issued before it is refused (``refused_by_pruning``).

A stored grant is the issued grant plus the pipeline's bookkeeping: ``digest`` (the bundle that
last judged it) and, when its policies read the clock, ``time_due`` (epoch ms of its next time
re-evaluation).

Invariant 4 (event time, not arrival time) lives here: for each dimension the newest
``event_time`` wins (ties broken by ``event_id`` so replays are deterministic); an older event is
recorded in ``recent`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

import orjson

from streams.models.signal import Signal
from streams.models.spiffe import WORKLOAD_TYPE
from streams.models.timeparse import to_rfc3339
from streams.state.risk import RiskModel

RECENT_EVENT_IDS = 64
PRUNABLE = ("device:", "session:")  # dimensions named by grants, pruned when no grant does
SESSIONS_PRUNED_UNTIL = "sessions_pruned_until"
SignalState = dict[str, Any]
GrantState = dict[str, Any]


class Applied(Enum):
    DUPLICATE = "duplicate"  # event_id seen before: nothing happens
    STALE = "stale"  # older than the dimension's current value: recorded only
    APPLIED = "applied"  # the dimension now holds this event's value


def new_signal_state() -> SignalState:
    return {"dims": {}, "recent": []}


def new_grant_state() -> GrantState:
    return {"grants": {}, "revoked": {}, "released": {}}


def dimension_of(signal: Signal) -> tuple[str, dict[str, Any]]:
    """Map a signal to the dimension it updates and the value it stores there."""
    attrs = signal.attributes
    kind = signal.type
    if kind == "device-compliance-change":
        return f"device:{attrs['device_id']}", {"status": attrs["current_status"]}
    if kind == "risk-level-change":
        value: dict[str, Any] = {"level": attrs["current_level"]}
        if "score" in attrs:
            value["score"] = float(attrs["score"])
        return "risk", value
    if kind == "network-context":
        return "network", {
            "ip": attrs["ip"],
            "zone": attrs["zone"],
            "country": attrs.get("country", ""),
            "asn": attrs.get("asn", 0),
            "anomalies": attrs.get("anomalies", []),
        }
    if kind == "account-disabled":
        return "account", {"status": "disabled"}
    if kind == "account-enabled":
        return "account", {"status": "enabled"}
    if kind == "account-purged":
        return "account", {"status": "purged"}
    if kind == "credential-compromise":
        return "credential", {"compromised": True}
    if kind == "credential-change":
        return "credential", {"compromised": False, "changed_at": signal.event_time}
    if kind == "account-credential-change-required":
        return "credential", {"compromised": False, "change_required": True}
    if kind == "assurance-level-change":
        return "assurance", {"level": attrs["current_level"]}
    if kind == "session-revoked":
        return _session_revocation(signal)
    if kind in ("session-established", "session-presented"):
        # one dimension, not one per session: no policy reads it, and the state stays bounded
        return "session-seen", {"event": kind, **attrs}
    if kind == "token-claims-change":
        grant_id = attrs.get("grant_id")
        dim = f"token-claims:{grant_id}" if grant_id else "token-claims"
        return dim, {"claims": attrs["claims"]}
    if kind in ("identifier-changed", "identifier-recycled"):
        value = {"status": kind.removeprefix("identifier-")}
        if "new_value" in attrs:
            value["new_value"] = attrs["new_value"]
        return "identifier", value
    raise ValueError(f"no dimension for signal type {kind!r}")


def _session_revocation(signal: Signal) -> tuple[str, dict[str, Any]]:
    """A named session or token is revoked for good; the sessions of a device or of the whole
    subject are revoked up to ``event_time`` (grants issued later are new sessions)."""
    attrs = signal.attributes
    if "session_id" in attrs:
        return f"session:{attrs['session_id']}", {"revoked": True}
    if "grant_id" in attrs:
        return f"token:{attrs['grant_id']}", {"revoked": True}
    if "device_id" in attrs:
        return f"device-sessions:{attrs['device_id']}", {"revoked_before": signal.event_time}
    return "sessions", {"revoked_before": signal.event_time}


def apply_signal(state: SignalState, signal: Signal) -> tuple[Applied, str, bool]:
    """Apply one signal to the state in place.

    Returns the outcome, the dimension name, and whether the dimension's *value* changed (a
    newer event repeating the current value moves the event time but nothing a policy reads).
    """
    recent: list[str] = state["recent"]
    dim, value = dimension_of(signal)
    if signal.event_id in recent:
        return Applied.DUPLICATE, dim, False
    recent.append(signal.event_id)
    if len(recent) > RECENT_EVENT_IDS:
        del recent[0]
    current = state["dims"].get(dim)
    if current is not None and (current[0], current[1]) >= (signal.event_time, signal.event_id):
        return Applied.STALE, dim, False
    state["dims"][dim] = [signal.event_time, signal.event_id, value]
    return Applied.APPLIED, dim, current is None or current[2] != value


def _dim_value(state: SignalState, dim: str) -> dict[str, Any] | None:
    entry = state["dims"].get(dim)
    return None if entry is None else entry[2]


def subject_snapshot(state: SignalState, risk: RiskModel) -> dict[str, Any]:
    """The subject-wide part of ``request.principal.attr.signals`` (risk, identity, network)."""
    account = _dim_value(state, "account") or {}
    credential = _dim_value(state, "credential") or {}
    assurance = _dim_value(state, "assurance") or {}
    network = _dim_value(state, "network") or {}
    disabled = account.get("status") in ("disabled", "purged")
    compromised = bool(credential.get("compromised", False))
    zone = str(network.get("zone", ""))
    level, score = risk.assess(
        _dim_value(state, "risk"),
        account_disabled=disabled,
        credential_compromised=compromised,
        zone=zone,
        anomalies=len(network.get("anomalies", ())),
        assurance=str(assurance.get("level", "")),
    )
    changed_at = credential.get("changed_at")
    sessions_before = (_dim_value(state, "sessions") or {}).get("revoked_before")
    identifier = _dim_value(state, "identifier") or {}
    return {
        "risk": {"level": level, "score": score},
        "identity": {
            "account_status": str(account.get("status", "enabled")),
            "assurance_level": str(assurance.get("level", "")),
            "credential_compromised": compromised,
            "credential_changed_at": to_rfc3339(changed_at) if changed_at else "",
            "credential_change_required": bool(credential.get("change_required", False)),
            "sessions_revoked_at": to_rfc3339(sessions_before) if sessions_before else "",
            "identifier_status": str(identifier.get("status", "")),
        },
        "network": {
            "zone": zone,
            "country": str(network.get("country", "")),
            "ip": str(network.get("ip", "")),
            "asn": float(network.get("asn", 0)),
            "anomalies": list(network.get("anomalies", ())),
        },
    }


def device_snapshot(
    state: SignalState, device_id: str | None, replica: list[Any] | None = None
) -> dict[str, Any]:
    """``signals.device`` for a grant: unknown devices are never compliant (default deny).
    ``replica`` is ``[event_time, status]`` of the device's own subject (``device:<id>``,
    forwarded through the subscriptions topic, docs/delegation.md); the newer of it and the
    subject's own entry for the device wins (invariant 4)."""
    if not device_id:
        return {"id": "", "compliant": False, "status": "unknown"}
    entry = state["dims"].get(f"device:{device_id}")
    status = entry[2]["status"] if entry is not None else "unknown"
    if replica is not None and (entry is None or replica[0] > entry[0]):
        status = replica[1]
    return {"id": device_id, "compliant": status == "compliant", "status": status}


def session_snapshot(
    state: SignalState,
    session_id: str | None,
    grant_id: str | None = None,
    device_id: str | None = None,
    issued_at: int | None = None,
) -> dict[str, Any]:
    """``signals.session``: revoked when the grant's session or its token (the grant itself) was
    revoked, or when all sessions of the subject (or of the grant's device) were revoked at or
    after the grant was issued. A check (no grant, ``issued_at`` None) starts a new session."""
    revoked = False
    if session_id:
        value = _dim_value(state, f"session:{session_id}")
        revoked = bool(value and value.get("revoked"))
    if not revoked and grant_id:
        value = _dim_value(state, f"token:{grant_id}")
        revoked = bool(value and value.get("revoked"))
    if not revoked and issued_at is not None:
        before = (_dim_value(state, "sessions") or {}).get("revoked_before", -1)
        if device_id:
            value = _dim_value(state, f"device-sessions:{device_id}") or {}
            before = max(before, value.get("revoked_before", -1))
        revoked = issued_at <= before
    return {"id": session_id or "", "revoked": revoked}


def token_snapshot(state: SignalState, grant_id: str | None) -> dict[str, Any]:
    """``signals.token``: the newest claims a transmitter sent for the grant's token (CAEP
    token-claims-change naming it), else for every token of the subject; ``{}`` when none."""
    value = _dim_value(state, f"token-claims:{grant_id}") if grant_id else None
    if value is None:
        value = _dim_value(state, "token-claims")
    return {"claims": dict(value["claims"]) if value else {}}


#: Dimensions bound to some grants only (a device, a session, a token): a change there
#: re-evaluates those grants even though the subject-wide snapshot did not move.
GRANT_SCOPED_PREFIXES = ("device:", "session:", "token:", "token-claims:", "device-sessions:")


def grant_scoped(dim: str) -> bool:
    return dim.startswith(GRANT_SCOPED_PREFIXES) or dim == "token-claims"


def grants_seeing(state: GrantState, dim: str, subject_changed: bool) -> list[dict[str, Any]]:
    """Active grants whose policy input changed: all of them, or those bound to the dimension."""
    grants = state["grants"].values()
    if subject_changed:
        return list(grants)
    if dim.startswith("device:"):
        device_id = dim[len("device:") :]
        return [g for g in grants if g.get("device_id") == device_id]
    if dim.startswith("session:"):
        session_id = dim[len("session:") :]
        return [g for g in grants if g.get("session_id") == session_id]
    if dim.startswith(("token:", "token-claims:")):
        grant_id = dim.split(":", 1)[1]
        return [g for g in grants if g.get("grant_id") == grant_id]
    if dim.startswith("device-sessions:"):
        device_id = dim[len("device-sessions:") :]
        return [g for g in grants if g.get("device_id") == device_id]
    if dim == "token-claims":
        return list(grants)
    return []


def count_active_grants(states: Iterable[bytes]) -> int:
    """Active grants in these encoded grant states (``vigil_active_grants`` at restore)."""
    return sum(len(orjson.loads(raw)["grants"]) for raw in states)


def expire_grants(state: GrantState, now_ms: int) -> list[dict[str, Any]]:
    """Remove grants past ``expires_at``; return them (the pipeline publishes their expiry and
    leaves tombstones)."""
    expired = [
        g for g in state["grants"].values() if g.get("expires_at") and g["expires_at"] <= now_ms
    ]
    for grant in expired:
        del state["grants"][grant["grant_id"]]
    return expired


def ephemeral(grant: dict[str, Any]) -> bool:
    """A grant of a ``workload`` principal with an ``expires_at``: its id is bounded by its
    lifetime, so its expiry leaves no tombstone and its release one kept only until
    ``expires_at`` (an issuance replayed later is refused as already expired). Thousands of
    such grants per second leave no state behind (docs/concepts.md "Ephemeral workloads")."""
    return bool(grant.get("expires_at")) and grant["principal"]["type"] == WORKLOAD_TYPE


def grant_state_empty(state: GrantState) -> bool:
    """No active grant, no tombstone and no grant of another subject subscribed to this one
    (docs/delegation.md): the state says nothing a new one would not, so its key is deleted (a
    changelog tombstone) rather than kept forever. The subject's roles as a chain member go
    with it."""
    return (
        not state["grants"]
        and not state["revoked"]
        and not state.get("released")
        and not state.get("subscribers")
    )


def named_entries(state: GrantState) -> set[str]:
    """The device and session dimensions the active grants name."""
    named: set[str] = set()
    for grant in state["grants"].values():
        if grant.get("device_id"):
            named.add(f"device:{grant['device_id']}")
        if grant.get("session_id"):
            named.add(f"session:{grant['session_id']}")
    return named


def prune_entries(
    state: SignalState, named: set[str], now_ms: int, retention_ms: int
) -> tuple[bool, list[str]]:
    """Drop device and session entries no active grant has named for ``retention_ms``.

    An entry goes when (1) no grant in ``named`` names it, (2) the sweep first found it unnamed
    at least ``retention_ms`` ago by the worker's clock (the entry's fourth element; naming it
    again clears it) and (3) its event time is at least ``retention_ms`` old. Returns whether the
    state changed (stamps count: they must reach the changelog too) and the pruned dimensions.

    A pruned session entry is a revocation forgotten: the state keeps the horizon
    (``now - retention``) in ``sessions_pruned_until``; every pruned revocation is at or before
    it, so a grant issued at or before it may predate one and ``refused_by_pruning`` refuses it.
    """
    horizon = now_ms - retention_ms
    dims: dict[str, list[Any]] = state["dims"]
    changed = False
    pruned: list[str] = []
    for dim in [d for d in dims if d.startswith(PRUNABLE)]:
        entry = dims[dim]
        if dim in named:
            if len(entry) > 3:
                del entry[3:]  # named again: the retention starts over when it is not
                changed = True
        elif len(entry) < 4:
            entry.append(now_ms)  # first found unnamed
            changed = True
        elif entry[3] <= horizon and entry[0] <= horizon:
            del dims[dim]
            pruned.append(dim)
            changed = True
            if dim.startswith("session:"):
                state[SESSIONS_PRUNED_UNTIL] = max(
                    state.get(SESSIONS_PRUNED_UNTIL, horizon), horizon
                )
    return changed, pruned


def refused_by_pruning(state: SignalState, grant: dict[str, Any]) -> int | None:
    """The pruning horizon that refuses this grant, or None: a grant naming a session the state
    holds no entry for, issued at or before the horizon of a pruned session revocation, could
    belong to a session whose revocation was forgotten (it is refused, never judged as live)."""
    until = state.get(SESSIONS_PRUNED_UNTIL)
    session_id = grant.get("session_id")
    if until is None or not session_id or grant["issued_at"] > until:
        return None
    if f"session:{session_id}" in state["dims"]:
        return None  # the revocation is still known: the grant is judged (and denied) with it
    return int(until)
