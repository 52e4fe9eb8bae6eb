"""Validation of the records on the internal ``vigil.subscriptions`` topic (docs/delegation.md).

Grants that depend on other subjects are joined to them through Kafka, foreign-key-join style.
Four record kinds, each keyed by the subject whose partition applies it:

* ``subscribe`` / ``unsubscribe`` (key: the chain *member*): the grant ``grant_id`` held by
  ``home`` depends on ``member`` (and, with ``parent_grant_id``, on that grant of the member);
* ``state`` (key: ``home``): the member's policy-visible state (``signals`` in the shape of
  ``request.principal.attr.signals`` without the grant-bound parts, its ``roles`` and, for a
  device subject, its own compliance ``device``),
  forwarded on subscribe and whenever it changes, with the ``cause`` of the change;
* ``cascade`` (key: ``home``): the delegation grant ``grant_id`` was made under ended; the
  home revokes it, naming ``root_cause`` and ``path``.

Only workers write this topic; a record that is not exactly one of these is dead-lettered like
any other bad input (Kafka ACLs keep others from writing it, docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeGuard

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from streams.models.grant import SubjectKey, is_subject_key, text_list
from streams.models.limits import MAX_ID_CHARS, MAX_LIST_ITEMS, check_free_form
from streams.models.signal import SignalInvalid, _errors_text

Name = Annotated[str, Field(max_length=MAX_ID_CHARS)]

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
STATE = "state"
CASCADE = "cascade"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscribeIn(_Strict):
    op: Literal["subscribe"]
    member: SubjectKey
    home: SubjectKey
    grant_id: Name = Field(min_length=1)
    parent_grant_id: Name | None = None


class UnsubscribeIn(_Strict):
    op: Literal["unsubscribe"]
    member: SubjectKey
    home: SubjectKey
    grant_id: Name = Field(min_length=1)


class ForwardCauseIn(_Strict):
    kind: Literal["signal", "dependency"]
    event_id: Name
    event_time: int
    signal_type: Name = "none"
    arrival: int = -1


class StateIn(_Strict):
    op: Literal["state"]
    member: SubjectKey
    home: SubjectKey
    roles: Annotated[list[Name], Field(max_length=MAX_LIST_ITEMS)]
    signals: dict[str, Any]
    cause: ForwardCauseIn
    # a device subject's own compliance: [event_time, status]; None for other subjects
    device: tuple[int, Name] | None = None

    @field_validator("signals")
    @classmethod
    def _signals(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_free_form(value)
        for part in ("risk", "identity", "network"):
            if not isinstance(value.get(part), dict):
                raise ValueError(f"signals.{part} must be an object")
        return value


class CascadeIn(_Strict):
    op: Literal["cascade"]
    home: SubjectKey
    grant_id: Name = Field(min_length=1)
    root_cause: Name = Field(min_length=1)
    path: Annotated[list[Name], Field(min_length=2, max_length=MAX_LIST_ITEMS)]
    event_time: int


_RECORD: TypeAdapter[SubscribeIn | UnsubscribeIn | StateIn | CascadeIn] = TypeAdapter(
    Annotated[SubscribeIn | UnsubscribeIn | StateIn | CascadeIn, Field(discriminator="op")]
)


@dataclass(slots=True)
class SubscriptionEvent:
    """A validated record: ``subject_key`` is the subject whose partition applies it (the
    member for subscribe/unsubscribe, the home for state/cascade); ``body`` the plain record."""

    op: str
    subject_key: str
    body: dict[str, Any]


def validate_subscription(raw: bytes) -> SubscriptionEvent:
    """Decode (JSON) and validate one record; raise ``SignalInvalid`` with the reason.

    Well-formed records take a hand-written fast path (``_fast_record``); anything it is not
    sure about goes through the pydantic models, which also produce the error messages. Both
    give the same event (tests/models/test_models_subscription_fast_path.py)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SignalInvalid(f"subscription record is not JSON: {exc}") from None
    fast = _fast_record(data)
    return fast if fast is not None else _validate_with_models(data)


def _validate_with_models(data: Any) -> SubscriptionEvent:
    try:
        rec = _RECORD.validate_python(data)
    except Exception as exc:
        raise SignalInvalid(_errors_text(exc)) from None
    body = rec.model_dump()
    key = body["member"] if rec.op in (SUBSCRIBE, UNSUBSCRIBE) else body["home"]
    return SubscriptionEvent(op=rec.op, subject_key=key, body=body)


# -- fast path ------------------------------------------------------------------------------

_KEYS = {
    SUBSCRIBE: frozenset(SubscribeIn.model_fields),
    UNSUBSCRIBE: frozenset(UnsubscribeIn.model_fields),
    STATE: frozenset(StateIn.model_fields),
    CASCADE: frozenset(CascadeIn.model_fields),
}
_CAUSE_KEYS = frozenset(ForwardCauseIn.model_fields)
_CAUSE_KINDS = frozenset({"signal", "dependency"})
_SIGNAL_PARTS = ("risk", "identity", "network")


def _name(value: object, min_len: int = 0) -> TypeGuard[str]:
    return type(value) is str and min_len <= len(value) <= MAX_ID_CHARS


def _fast_cause(cause: object) -> dict[str, Any] | None:
    if type(cause) is not dict or not cause.keys() <= _CAUSE_KEYS:
        return None
    kind, event_id, event_time = cause.get("kind"), cause.get("event_id"), cause.get("event_time")
    signal_type, arrival = cause.get("signal_type", "none"), cause.get("arrival", -1)
    if not (
        type(kind) is str
        and kind in _CAUSE_KINDS
        and _name(event_id)
        and type(event_time) is int
        and _name(signal_type)
        and type(arrival) is int
    ):
        return None
    return {
        "kind": kind,
        "event_id": event_id,
        "event_time": event_time,
        "signal_type": signal_type,
        "arrival": arrival,
    }


def _fast_signals(signals: object) -> bool:
    if type(signals) is not dict:
        return False
    for part in _SIGNAL_PARTS:
        if type(signals.get(part)) is not dict:
            return False
    try:
        check_free_form(signals)
    except ValueError:
        return False
    return True


def _fast_body(op: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The record exactly as ``model_dump`` of its model gives it, or None."""
    if op in (SUBSCRIBE, UNSUBSCRIBE):
        member, home, grant_id = data.get("member"), data.get("home"), data.get("grant_id")
        if not (is_subject_key(member) and is_subject_key(home) and _name(grant_id, 1)):
            return None
        body: dict[str, Any] = {"op": op, "member": member, "home": home, "grant_id": grant_id}
        if op == SUBSCRIBE:
            parent = data.get("parent_grant_id")
            if parent is not None and not _name(parent):
                return None
            body["parent_grant_id"] = parent
        return body
    if op == STATE:
        member, home, roles = data.get("member"), data.get("home"), data.get("roles")
        signals, device = data.get("signals"), data.get("device")
        cause = _fast_cause(data.get("cause"))
        if not (
            cause is not None
            and is_subject_key(member)
            and is_subject_key(home)
            and text_list(roles)
            and _fast_signals(signals)
        ):
            return None
        if device is not None:
            if not (
                type(device) is list
                and len(device) == 2
                and type(device[0]) is int
                and _name(device[1])
            ):
                return None
            device = (device[0], device[1])
        return {
            "op": op,
            "member": member,
            "home": home,
            "roles": list(roles),
            "signals": signals,
            "cause": cause,
            "device": device,
        }
    home, grant_id, root = data.get("home"), data.get("grant_id"), data.get("root_cause")
    path, event_time = data.get("path"), data.get("event_time")
    if not (
        is_subject_key(home)
        and _name(grant_id, 1)
        and _name(root, 1)
        and text_list(path, 2)
        and type(event_time) is int
    ):
        return None
    return {
        "op": op,
        "home": home,
        "grant_id": grant_id,
        "root_cause": root,
        "path": list(path),
        "event_time": event_time,
    }


def _fast_record(data: Any) -> SubscriptionEvent | None:
    """The event of a well-formed record exactly as ``_validate_with_models`` gives it, or None
    when the record needs the models (missing or unknown keys, coercions, errors)."""
    if type(data) is not dict:
        return None
    op = data.get("op")
    if type(op) is not str:
        return None
    keys = _KEYS.get(op)
    if keys is None or not data.keys() <= keys:
        return None
    body = _fast_body(op, data)
    if body is None:
        return None
    key = body["member"] if op in (SUBSCRIBE, UNSUBSCRIBE) else body["home"]
    return SubscriptionEvent(op=op, subject_key=key, body=body)


def encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)
