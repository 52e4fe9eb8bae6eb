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
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from streams.models.grant import SubjectKey
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
    """Decode (JSON) and validate one record; raise ``SignalInvalid`` with the reason."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SignalInvalid(f"subscription record is not JSON: {exc}") from None
    try:
        rec = _RECORD.validate_python(data)
    except Exception as exc:
        raise SignalInvalid(_errors_text(exc)) from None
    body = rec.model_dump()
    key = body["member"] if rec.op in (SUBSCRIBE, UNSUBSCRIBE) else body["home"]
    return SubscriptionEvent(op=rec.op, subject_key=key, body=body)


def encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)
