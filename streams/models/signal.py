"""Validation of decoded signals (pydantic at the edge) into a plain ``Signal`` for the hot path.

Signal types follow the OpenID CAEP 1.0 / RISC 1.0 event names where one exists, plus
``network-context``. Each type has its own attribute model so a malformed attribute is reported
with its path instead of surfacing later as a wrong decision.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from streams.models.timeparse import to_epoch_ms

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _Attrs(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class DeviceComplianceChange(_Attrs):
    device_id: str = Field(min_length=1)
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
    credential_type: str | None = None
    change_type: str | None = None


class AssuranceLevelChange(_Attrs):
    current_level: str = Field(min_length=1)
    previous_level: str | None = None


class AccountStatus(_Attrs):
    reason: str | None = None


class SessionRevoked(_Attrs):
    session_id: str = Field(min_length=1)


class NetworkContext(_Attrs):
    ip: str
    country: str | None = Field(default=None, max_length=2)
    asn: int | None = Field(default=None, ge=0)
    zone: str = Field(min_length=1)
    anomalies: list[str] = Field(default_factory=list)

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
}
SIGNAL_TYPES = frozenset(ATTRIBUTE_MODELS)


class SubjectRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(pattern=_NAME, max_length=64)
    id: str = Field(min_length=1, max_length=512)


class SignalEnvelope(BaseModel):
    """The common envelope; ``attributes`` is checked per type by ``ATTRIBUTE_MODELS``."""

    model_config = ConfigDict(extra="ignore")
    event_id: str = Field(min_length=1, max_length=256)
    type: str
    subject: SubjectRef
    source: str = Field(min_length=1, max_length=256)
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
    """Validate a decoded signal dict; raise ``SignalInvalid`` with every problem found."""
    try:
        env = _ENVELOPE.validate_python(raw)
    except Exception as exc:  # pydantic.ValidationError, or a non-dict payload
        raise SignalInvalid(_errors_text(exc)) from None
    try:
        attrs = ATTRIBUTE_MODELS[env.type].model_validate(env.attributes)
    except Exception as exc:
        raise SignalInvalid("attributes." + _errors_text(exc)) from None
    return Signal(
        event_id=env.event_id,
        type=env.type,
        subject_key=f"{env.subject.type}:{env.subject.id}",
        source=env.source,
        event_time=env.event_time,
        attributes=attrs.model_dump(mode="json", exclude_none=True),
    )
