"""A verified SET to Vigil signals: which signal type, on which topic, keyed by which subject,
with which attributes (docs/shared-signals.md, "Event mapping").

Session and token events act on the grants they name (a session id, the token's ``jti`` as
grant id, a device); user events on every grant of the user. When the subject does not name the
principal (an opaque session id, a ``jwt_id``, a complex subject without ``user``), the
``Locator`` finds the subjects holding such grants.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from streams.models.signal import SIGNAL_TOPIC_ROLE, SignalInvalid, validate_signal
from streams.ssf.events import SESSION_EVENTS
from streams.ssf.subjects import SubjectInvalid, SubjectRefused, Target, targets
from streams.ssf.verify import ACCESS_DENIED, INVALID_REQUEST, SetRejected, VerifiedSet

_COMMON = frozenset({"event_timestamp", "initiating_entity", "reason_admin", "reason_user"})


class Locator(Protocol):
    def subjects(
        self, grant_id: str | None, session_id: str | None, device_id: str | None
    ) -> set[str]: ...


class NoLocator:
    def subjects(
        self, grant_id: str | None, session_id: str | None, device_id: str | None
    ) -> set[str]:
        return set()


@dataclass(frozen=True, slots=True)
class SignalOut:
    role: str  # identity | device | network | risk: the topic it goes to
    key: str  # subject key
    value: dict[str, Any]


def _attributes(name: str, event: dict[str, Any], target: Target) -> tuple[str, dict[str, Any]]:
    """(Vigil signal type, attributes) for one event and target."""
    extra = {k: v for k, v in event.items() if k not in _COMMON}
    if name in ("session-revoked", "sessions-revoked"):
        attrs: dict[str, Any] = {}
        if name == "session-revoked":
            if target.session_id:
                attrs["session_id"] = target.session_id
            elif target.grant_id:
                attrs["grant_id"] = target.grant_id
            elif target.device_id:
                attrs["device_id"] = target.device_id
        return "session-revoked", attrs
    if name == "token-claims-change":
        attrs = {"claims": extra["claims"]}
        if target.grant_id:
            attrs["grant_id"] = target.grant_id
        return name, attrs
    if name in ("session-established", "session-presented"):
        if target.session_id:
            extra["session_id"] = target.session_id
        return name, extra
    if name == "device-compliance-change":
        if not target.device_id:
            raise SetRejected(
                INVALID_REQUEST, "device-compliance-change needs a device in its sub_id"
            )
        return name, {**extra, "device_id": target.device_id}
    if name == "identifier-changed":
        return name, {"new_value": extra["new-value"]} if "new-value" in extra else {}
    return name, extra


def _event_id(iss: str, jti: str, key: str) -> str:
    digest = hashlib.blake2b(f"{iss}\x1f{jti}\x1f{key}".encode(), digest_size=16).hexdigest()
    return f"ssf-{digest}"


def signals_for(
    verified: VerifiedSet,
    locator: Locator,
    max_future_skew_ms: int = 300_000,
    now_ms: int | None = None,
) -> list[SignalOut]:
    """The signals one SET becomes; ``SetRejected`` when the subject or payload cannot map.
    An empty list: the subject holds nothing in Vigil (a session with no grants).

    An ``event_timestamp`` further ahead than the pipeline allows (``max_future_skew_seconds``)
    is refused here, so the SET is not answered 202 and then dead-lettered."""
    transmitter = verified.transmitter
    claims = verified.claims
    event = verified.event.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        found = targets(claims["sub_id"], transmitter, verified.event_name in SESSION_EVENTS)
    except SubjectInvalid as exc:
        raise SetRejected(INVALID_REQUEST, str(exc)) from None
    except SubjectRefused as exc:
        raise SetRejected(ACCESS_DENIED, str(exc)) from None
    stamp = event.get("event_timestamp")
    if stamp is not None:
        event_ms, source = int(stamp * 1000), "event_timestamp"
    else:
        event_ms, source = int(claims["iat"] * 1000), "iat"
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if event_ms > now_ms + max_future_skew_ms:
        raise SetRejected(
            INVALID_REQUEST,
            f"{source} is more than {max_future_skew_ms / 1000:g} s in the future",
        )
    out: list[SignalOut] = []
    for target in found:
        if target == Target():
            raise SetRejected(
                INVALID_REQUEST, "sub_id names no user, session, device or token Vigil can act on"
            )
        kind, attrs = _attributes(verified.event_name, event, target)
        attrs["event_time_source"] = source
        attrs["ssf_jti"] = verified.jti
        if target.principal is not None:
            keys: Iterable[str] = [f"{transmitter.subjects.principal_type}:{target.principal}"]
        else:
            keys = sorted(locator.subjects(target.grant_id, target.session_id, target.device_id))
        for key in keys:
            stype, sid = key.split(":", 1)
            value = {
                "event_id": _event_id(verified.iss, verified.jti, key),
                "type": kind,
                "subject": {"type": stype, "id": sid},
                "source": f"ssf:{transmitter.name}",
                "event_time": event_ms,
                "attributes": attrs,
            }
            try:
                validate_signal(value)  # the pipeline would dead-letter it: say so now instead
            except SignalInvalid as exc:
                raise SetRejected(
                    INVALID_REQUEST, f"event does not map to a signal: {exc}"
                ) from None
            out.append(SignalOut(SIGNAL_TOPIC_ROLE[kind], key, value))
    return out
