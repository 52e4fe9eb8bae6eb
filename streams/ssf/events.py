"""The SET event types Vigil understands, with their payloads checked field by field.

Field names and enums are the specs' own (CAEP 1.0 sections 2-3, RISC 1.0). Unknown extra
members are allowed (specs let transmitters add them) but every member the spec defines must
have its type and, where the spec lists values, one of them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
VERIFICATION = SSF + "verification"
STREAM_UPDATED = SSF + "stream-updated"

Text = str
CredentialType = str  # CAEP lists ten values "or any other ... supported mutually": any string


class _Event(BaseModel):
    """CAEP 1.0 section 2, optional on every event (RISC events use the same names)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    event_timestamp: float | None = Field(default=None, ge=0, lt=2**34)
    initiating_entity: Literal["admin", "user", "policy", "system"] | None = None
    reason_admin: dict[str, str] | None = Field(default=None, min_length=1)
    reason_user: dict[str, str] | None = Field(default=None, min_length=1)

    @field_validator("event_timestamp", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        """A JSON number: not a string, not a boolean (pydantic would convert both)."""
        if value is not None and type(value) not in (int, float):
            raise ValueError("event_timestamp must be a JSON number (seconds since the epoch)")
        return value


class SessionRevoked(_Event):
    pass


class TokenClaimsChange(_Event):
    claims: dict[str, Any] = Field(min_length=1)


class CredentialChange(_Event):
    credential_type: CredentialType = Field(min_length=1)
    change_type: Literal["create", "revoke", "update", "delete"]
    friendly_name: Text | None = None
    x509_issuer: Text | None = None
    x509_serial: Text | None = None
    fido2_aaguid: Text | None = None


class AssuranceLevelChange(_Event):
    namespace: str = Field(min_length=1)
    current_level: str = Field(min_length=1)
    previous_level: str | None = None
    change_direction: Literal["increase", "decrease"] | None = None


class DeviceComplianceChange(_Event):
    previous_status: Literal["compliant", "not-compliant"]
    current_status: Literal["compliant", "not-compliant"]


class SessionEstablished(_Event):
    fp_ua: Text | None = None
    acr: Text | None = None
    amr: list[Text] | None = None
    ext_id: Text | None = None


class SessionPresented(_Event):
    fp_ua: Text | None = None
    ext_id: Text | None = None


class RiskLevelChange(_Event):
    risk_reason: Text | None = None
    principal: str = Field(min_length=1)
    current_level: Literal["LOW", "MEDIUM", "HIGH"]
    previous_level: Literal["LOW", "MEDIUM", "HIGH"] | None = None


class AccountDisabled(_Event):
    reason: Literal["hijacking", "bulk-account"] | None = None


class NoClaims(_Event):
    pass


class CredentialCompromise(_Event):
    credential_type: CredentialType = Field(min_length=1)


class IdentifierChanged(_Event):
    new_value: Text | None = Field(default=None, alias="new-value")


class Verification(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    state: str | None = None


class StreamUpdated(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    status: Literal["enabled", "paused", "disabled"]
    reason: str | None = None


#: event type URI -> (short name, payload model). The short name is Vigil's signal type except
#: RISC sessions-revoked (deprecated), which becomes a subject-wide session-revoked.
EVENT_TYPES: dict[str, tuple[str, type[BaseModel]]] = {
    CAEP + "session-revoked": ("session-revoked", SessionRevoked),
    CAEP + "token-claims-change": ("token-claims-change", TokenClaimsChange),
    CAEP + "credential-change": ("credential-change", CredentialChange),
    CAEP + "assurance-level-change": ("assurance-level-change", AssuranceLevelChange),
    CAEP + "device-compliance-change": ("device-compliance-change", DeviceComplianceChange),
    CAEP + "session-established": ("session-established", SessionEstablished),
    CAEP + "session-presented": ("session-presented", SessionPresented),
    CAEP + "risk-level-change": ("risk-level-change", RiskLevelChange),
    RISC + "account-disabled": ("account-disabled", AccountDisabled),
    RISC + "account-enabled": ("account-enabled", NoClaims),
    RISC + "account-purged": ("account-purged", NoClaims),
    RISC + "credential-compromise": ("credential-compromise", CredentialCompromise),
    RISC + "account-credential-change-required": ("account-credential-change-required", NoClaims),
    RISC + "identifier-changed": ("identifier-changed", IdentifierChanged),
    RISC + "identifier-recycled": ("identifier-recycled", NoClaims),
    RISC + "sessions-revoked": ("sessions-revoked", NoClaims),
    VERIFICATION: ("verification", Verification),
    STREAM_UPDATED: ("stream-updated", StreamUpdated),
}
#: Event types about the stream itself, not about a subject (no signal, no ``sub_id`` needed).
STREAM_EVENTS = frozenset({VERIFICATION, STREAM_UPDATED})
#: Events whose opaque subject names a session (``opaque: auto``).
SESSION_EVENTS = frozenset(
    {"session-revoked", "session-established", "session-presented", "token-claims-change"}
)


class EventInvalid(ValueError):
    pass


def parse_event(uri: str, payload: Any) -> tuple[str, BaseModel]:
    """The event's short name and checked payload; ``EventInvalid`` with every problem."""
    known = EVENT_TYPES.get(uri)
    if known is None:
        raise EventInvalid(f"unsupported event type {uri!r}")
    name, model = known
    if not isinstance(payload, dict):
        raise EventInvalid(f"event {name}: payload must be a JSON object")
    try:
        return name, model.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise EventInvalid(f"event {name}: {problems}") from None
