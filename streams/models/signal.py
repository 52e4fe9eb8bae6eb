"""Validation of decoded signals (pydantic at the edge) into a plain ``Signal`` for the hot path.

Signal types follow the OpenID CAEP 1.0 / RISC 1.0 event names where one exists, plus
``network-context``. Each type has its own attribute model so a malformed attribute is reported
with its path instead of surfacing later as a wrong decision.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from streams.models.limits import (
    LATEST_TIME_MS,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_SUBJECT_ID_CHARS,
    MAX_SUBJECT_TYPE_CHARS,
    check_free_form,
)
from streams.models.spiffe import WORKLOAD_TYPE, check_subject_id, spiffe_id_problem
from streams.models.timeparse import to_epoch_ms

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
# Text attributes (ids, levels, zones, reasons): bounded like every id (streams.models.limits).
Text = Annotated[str, Field(max_length=MAX_ID_CHARS)]
MAX_ASN = 2**32 - 1  # autonomous system numbers are 32-bit (RFC 6793)


class _Attrs(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class DeviceComplianceChange(_Attrs):
    device_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    previous_status: Literal["compliant", "not-compliant"] | None = None
    current_status: Literal["compliant", "not-compliant"]


class RiskLevelChange(_Attrs):
    current_level: Literal["LOW", "MEDIUM", "HIGH"]
    previous_level: Literal["LOW", "MEDIUM", "HIGH"] | None = None
    score: float | None = Field(default=None, ge=0, le=100)

    @field_validator("current_level", "previous_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        """CAEP examples spell levels in lower case; accept both."""
        return value.upper() if isinstance(value, str) else value


class CredentialChange(_Attrs):
    credential_type: Text | None = None
    change_type: Text | None = None


class AssuranceLevelChange(_Attrs):
    current_level: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    previous_level: Text | None = None


class AccountStatus(_Attrs):
    reason: Text | None = None


class SessionRevoked(_Attrs):
    """One session (``session_id``), one token (``grant_id``: the grant whose id is the token's
    ``jti``), the sessions on one device (``device_id``), or, with none of them, every session of
    the subject that began before ``event_time`` (CAEP session-revoked with a wildcard subject,
    RISC sessions-revoked)."""

    session_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    grant_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    device_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)


class SessionSeen(_Attrs):
    """CAEP session-established / session-presented: recorded, not read by policies."""

    session_id: Text | None = None
    fp_ua: Text | None = None
    acr: Text | None = None
    amr: list[Text] | None = Field(default=None, max_length=MAX_LIST_ITEMS)
    ext_id: Text | None = None


class TokenClaimsChange(_Attrs):
    """CAEP token-claims-change: the new claims of one token (``grant_id``), or of every token of
    the subject when no token is named."""

    grant_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    claims: dict[str, Any] = Field(min_length=1)  # bounded with every attribute (limits.py)


class IdentifierChange(_Attrs):
    """RISC identifier-changed (``new-value``, when the transmitter sends it) and
    identifier-recycled."""

    new_value: Text | None = None


class NetworkContext(_Attrs):
    ip: str = Field(max_length=64)
    country: str | None = Field(default=None, max_length=2)
    asn: int | None = Field(default=None, ge=0, le=MAX_ASN)
    zone: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    anomalies: list[Text] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        """inet_pton is C and ~20x cheaper than ipaddress on this hot path; same acceptance."""
        family = socket.AF_INET6 if ":" in value else socket.AF_INET
        try:
            socket.inet_pton(family, value)
        except OSError:
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
        return value


ATTRIBUTE_MODELS: dict[str, type[_Attrs]] = {
    "device-compliance-change": DeviceComplianceChange,
    "risk-level-change": RiskLevelChange,
    "credential-change": CredentialChange,
    "assurance-level-change": AssuranceLevelChange,
    "account-disabled": AccountStatus,
    "account-enabled": AccountStatus,
    "credential-compromise": AccountStatus,
    "session-revoked": SessionRevoked,
    "network-context": NetworkContext,
    "session-established": SessionSeen,
    "session-presented": SessionSeen,
    "token-claims-change": TokenClaimsChange,
    "account-purged": AccountStatus,
    "account-credential-change-required": AccountStatus,
    "identifier-changed": IdentifierChange,
    "identifier-recycled": IdentifierChange,
}
SIGNAL_TYPES = frozenset(ATTRIBUTE_MODELS)

#: Which input topic (by role: identity, device, network, risk) carries each signal type. The one
#: place this mapping lives; docs/topics-and-schemas.md shows it. A signal on another topic is
#: dead-lettered: topic ACLs decide who may send what (an MDM writes signals.device, the IdP
#: signals.identity), so a type on the wrong topic is a misrouted or spoofed signal.
SIGNAL_TOPIC_ROLE: dict[str, str] = {
    "account-disabled": "identity",
    "account-enabled": "identity",
    "assurance-level-change": "identity",
    "credential-change": "identity",
    "credential-compromise": "identity",
    "session-revoked": "identity",
    "session-established": "identity",
    "session-presented": "identity",
    "token-claims-change": "identity",
    "account-purged": "identity",
    "account-credential-change-required": "identity",
    "identifier-changed": "identity",
    "identifier-recycled": "identity",
    "device-compliance-change": "device",
    "network-context": "network",
    "risk-level-change": "risk",
}
SIGNAL_TOPIC_ROLES = ("identity", "device", "network", "risk")


def check_signal_topic(signal_type: str, topic: str, roles: frozenset[str]) -> None:
    """Raise ``SignalInvalid`` unless ``topic`` (which carries ``roles``) carries ``signal_type``."""
    role = SIGNAL_TOPIC_ROLE[signal_type]
    if role not in roles:
        carried = sorted(t for t, r in SIGNAL_TOPIC_ROLE.items() if r in roles)
        raise SignalInvalid(
            f"signal type {signal_type!r} belongs on the {role} topic; {topic} carries "
            f"{'/'.join(sorted(roles))} signals only ({', '.join(carried)})"
        )


class SubjectRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(pattern=_NAME, max_length=MAX_SUBJECT_TYPE_CHARS)
    id: str = Field(min_length=1, max_length=MAX_SUBJECT_ID_CHARS)

    @model_validator(mode="after")
    def _workload_id(self) -> SubjectRef:
        check_subject_id(self.type, self.id)  # a workload is named by its SPIFFE ID
        return self


class SignalEnvelope(BaseModel):
    """The common envelope; ``attributes`` is checked per type by ``ATTRIBUTE_MODELS``."""

    model_config = ConfigDict(extra="ignore")
    event_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    type: str
    subject: SubjectRef
    source: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    event_time: int
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event_time", mode="before")
    @classmethod
    def _event_time(cls, value: object) -> int:
        return to_epoch_ms(value)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in SIGNAL_TYPES:
            raise ValueError(
                f"unsupported signal type {value!r}; expected one of {sorted(SIGNAL_TYPES)}"
            )
        return value


@dataclass(slots=True, frozen=True)
class Signal:
    """A validated signal: plain fields only, cheap to pass through the hot loop."""

    event_id: str
    type: str
    subject_key: str
    source: str
    event_time: int
    attributes: dict[str, Any]


class SignalInvalid(ValueError):
    """Raised with a human-readable reason when a decoded signal cannot be used."""


_ENVELOPE = TypeAdapter(SignalEnvelope)


def _errors_text(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    parts = []
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


def validate_signal(raw: dict[str, Any]) -> Signal:
    """Validate a decoded signal dict; raise ``SignalInvalid`` with every problem found.

    Well-formed signals of the common shapes take a hand-written fast path (a third of
    pydantic's cost on the hot path); anything it is not sure about goes through the pydantic
    models, which also produce the error messages. Both give the same ``Signal``.
    """
    fast = _fast_signal(raw)
    if fast is not None:
        return fast
    return _validate_with_models(raw)


def _validate_with_models(raw: dict[str, Any]) -> Signal:
    try:
        env = _ENVELOPE.validate_python(raw)
    except Exception as exc:  # pydantic.ValidationError, or a non-dict payload
        raise SignalInvalid(_errors_text(exc)) from None
    try:
        attrs = ATTRIBUTE_MODELS[env.type].model_validate(env.attributes)
    except Exception as exc:
        raise SignalInvalid("attributes." + _errors_text(exc)) from None
    try:  # on the input: the JSON dump would quietly turn NaN into null
        check_free_form(env.attributes, "attributes")  # extra attributes are free-form
    except ValueError as exc:
        raise SignalInvalid(str(exc)) from None
    attributes = attrs.model_dump(mode="json", exclude_none=True)
    return Signal(
        event_id=env.event_id,
        type=env.type,
        subject_key=f"{env.subject.type}:{env.subject.id}",
        source=env.source,
        event_time=env.event_time,
        attributes=attributes,
    )


# -- fast path ------------------------------------------------------------------------------

_SUBJECT_TYPE = re.compile(_NAME)
_LEVELS = frozenset({"LOW", "MEDIUM", "HIGH"})
_STATUSES = frozenset({"compliant", "not-compliant"})
# Field names per signal type, computed once (pydantic's ``model_fields`` is not free).
_FIELDS = {kind: frozenset(model.model_fields) for kind, model in ATTRIBUTE_MODELS.items()}
# Types too rare for the fast path (mostly from Shared Signals): always through the models.
_MODEL_ONLY = frozenset(
    {
        "session-established",
        "session-presented",
        "token-claims-change",
        "identifier-changed",
        "identifier-recycled",
    }
)


def _text(value: object, min_len: int = 0, max_len: int = MAX_ID_CHARS) -> TypeGuard[str]:
    return type(value) is str and min_len <= len(value) <= max_len


def _member(value: object, allowed: frozenset[str]) -> bool:
    return type(value) is str and value in allowed


def _opt_text(attrs: dict[str, Any], key: str) -> bool:
    value = attrs.get(key)
    return value is None or _text(value)


def _fast_attributes(kind: str, attrs: dict[str, Any]) -> dict[str, Any] | None:
    """Validated attributes exactly as ``model_dump(mode="json", exclude_none=True)`` gives them,
    or None when the input needs the models (extra keys, coercions, errors)."""
    fields = _FIELDS[kind]
    if not fields >= attrs.keys():
        return None
    if kind == "device-compliance-change":
        prev = attrs.get("previous_status")
        if not (
            _text(attrs.get("device_id"), 1)
            and _member(attrs.get("current_status"), _STATUSES)
            and (prev is None or _member(prev, _STATUSES))
        ):
            return None
    elif kind == "risk-level-change":
        cur, prev, score = (
            attrs.get("current_level"),
            attrs.get("previous_level"),
            attrs.get("score"),
        )
        if not _text(cur) or cur.upper() not in _LEVELS:
            return None
        if prev is not None and (not _text(prev) or prev.upper() not in _LEVELS):
            return None
        if score is not None and (type(score) not in (int, float) or not 0 <= score <= 100):
            return None
        out: dict[str, Any] = {"current_level": cur.upper()}
        if prev is not None:
            out["previous_level"] = prev.upper()
        if score is not None:
            out["score"] = float(score)
        return out
    elif kind == "network-context":
        country, asn, anomalies = attrs.get("country"), attrs.get("asn"), attrs.get("anomalies")
        ip = attrs.get("ip")
        if not (
            _text(ip, 0, 64)
            and _text(attrs.get("zone"), 1)
            and (country is None or _text(country, 0, 2))
            and (asn is None or (type(asn) is int and 0 <= asn <= MAX_ASN))
            and (
                anomalies is None
                or (
                    type(anomalies) is list
                    and len(anomalies) <= MAX_LIST_ITEMS
                    and all(_text(a) for a in anomalies)
                )
            )
        ):
            return None
        try:
            NetworkContext._ip(ip)
        except ValueError:
            return None
        out = {k: v for k, v in attrs.items() if v is not None}
        out.setdefault("anomalies", [])
        if anomalies is None and "anomalies" in attrs:
            return None  # explicit null list: let the model report it
        return out
    elif kind == "session-revoked":
        if not (_text(attrs.get("session_id"), 1) and len(attrs) == 1):
            return None  # token, device and subject-wide revocations take the models
    elif kind in _MODEL_ONLY:
        return None
    elif kind == "assurance-level-change":
        if not (_text(attrs.get("current_level"), 1) and _opt_text(attrs, "previous_level")):
            return None
    elif not all(_opt_text(attrs, key) for key in fields):
        return None  # credential-change, account-*, credential-compromise: optional text only
    return {k: v for k, v in attrs.items() if v is not None}


def _fast_signal(raw: Any) -> Signal | None:
    if type(raw) is not dict:
        return None
    subject = raw.get("subject")
    kind = raw.get("type")
    event_id = raw.get("event_id")
    source = raw.get("source")
    event_time = raw.get("event_time")
    attrs = raw.get("attributes", {})
    if not (
        type(subject) is dict
        and len(subject) == 2
        and _text(subject.get("type"), 1, MAX_SUBJECT_TYPE_CHARS)
        and _text(subject.get("id"), 1, MAX_SUBJECT_ID_CHARS)
        and type(kind) is str
        and kind in ATTRIBUTE_MODELS
        and _text(event_id, 1)
        and _text(source, 1)
        and type(attrs) is dict
        and _SUBJECT_TYPE.match(subject["type"])
        and (subject["type"] != WORKLOAD_TYPE or spiffe_id_problem(subject["id"]) is None)
    ):
        return None
    if type(event_time) is int and 1_000_000_000_000 <= event_time < LATEST_TIME_MS:
        ms = event_time
    elif type(event_time) is str:
        try:
            ms = to_epoch_ms(event_time)
        except ValueError:
            return None
    else:
        return None
    values = _fast_attributes(kind, attrs)
    if values is None:
        return None
    return Signal(
        str(event_id), kind, f"{subject['type']}:{subject['id']}", str(source), ms, values
    )
