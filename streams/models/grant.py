"""Validation of grant lifecycle events from ``authz.grants`` into a plain ``GrantEvent``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from streams.models.limits import (
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_SUBJECT_ID_CHARS,
    MAX_SUBJECT_TYPE_CHARS,
    check_free_form,
)
from streams.models.signal import SignalInvalid, _errors_text
from streams.models.spiffe import check_subject_id
from streams.models.timeparse import to_epoch_ms

Name = Annotated[str, Field(max_length=MAX_ID_CHARS)]
Names = Annotated[list[Name], Field(max_length=MAX_LIST_ITEMS)]


def _free_form(value: dict[str, Any]) -> dict[str, Any]:
    check_free_form(value)
    return value


# Keys under principal.attr that only the pipeline may set (live signal state, grant facts, the
# delegation chain with its members' live state: docs/delegation.md).
RESERVED_PRINCIPAL_ATTRS = frozenset({"signals", "grant", "delegation"})

# A chain member is a subject key: ``type:id`` (``user:alice``, ``workload:spiffe://...``).
_SUBJECT_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*:.+$"
SubjectKey = Annotated[str, Field(max_length=MAX_ID_CHARS, pattern=_SUBJECT_KEY)]


class PrincipalIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=MAX_SUBJECT_ID_CHARS)
    type: str = Field(
        default="user", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=MAX_SUBJECT_TYPE_CHARS
    )
    roles: Names = Field(min_length=1)
    attr: dict[str, Any] = Field(default_factory=dict)

    _attr = field_validator("attr")(_free_form)

    @model_validator(mode="after")
    def _workload_id(self) -> PrincipalIn:
        check_subject_id(self.type, self.id)  # a workload is named by its SPIFFE ID
        return self


class ResourceIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    id: str = Field(min_length=1, max_length=MAX_SUBJECT_ID_CHARS)
    attr: dict[str, Any] = Field(default_factory=dict)
    policyVersion: Name | None = None
    scope: Name | None = None

    _attr = field_validator("attr")(_free_form)


class GrantEventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    op: Literal["issued", "released"]
    grant_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    principal: PrincipalIn | None = None
    resource: ResourceIn | None = None
    actions: Names = Field(default_factory=list)
    session_id: Name | None = None
    device_id: Name | None = None
    issued_at: int | None = None
    expires_at: int | None = None
    on_behalf_of: Annotated[list[SubjectKey], Field(max_length=MAX_LIST_ITEMS)] = Field(
        default_factory=list
    )
    parent_grant_id: Name | None = None

    @field_validator("issued_at", "expires_at", mode="before")
    @classmethod
    def _times(cls, value: object) -> int | None:
        return None if value is None or value == "" else to_epoch_ms(value)


@dataclass(slots=True)
class GrantEvent:
    """A validated grant event. ``grant`` is the stored form (plain JSON-able dict)."""

    op: str
    grant_id: str
    subject_key: str | None
    grant: dict[str, Any] | None


_GRANT = TypeAdapter(GrantEventIn)


def validate_grant_event(raw: dict[str, Any]) -> GrantEvent:
    """Validate a decoded grant event; ``issued`` needs principal, resource, actions, issued_at."""
    try:
        ev = _GRANT.validate_python(raw)
    except Exception as exc:
        raise SignalInvalid(_errors_text(exc)) from None
    if ev.op == "released":
        key = f"{ev.principal.type}:{ev.principal.id}" if ev.principal else None
        return GrantEvent(op="released", grant_id=ev.grant_id, subject_key=key, grant=None)
    missing = [
        name
        for name, value in (
            ("principal", ev.principal),
            ("resource", ev.resource),
            ("actions", ev.actions),
            ("issued_at", ev.issued_at is not None),  # 0 is a time, not a missing one
        )
        if not value
    ]
    if missing:
        raise SignalInvalid(f"an issued grant needs {', '.join(missing)}")
    assert ev.principal is not None and ev.resource is not None and ev.issued_at is not None
    if ev.expires_at is not None and ev.expires_at <= ev.issued_at:
        raise SignalInvalid("expires_at: must be later than issued_at")
    if ev.parent_grant_id is not None and not ev.on_behalf_of:
        raise SignalInvalid(
            "parent_grant_id: a grant made under a delegation needs on_behalf_of (the parent "
            "grant is held by its last member)"
        )
    principal_attr = {
        k: v for k, v in ev.principal.attr.items() if k not in RESERVED_PRINCIPAL_ATTRS
    }
    resource = ev.resource.model_dump(exclude_none=True)
    grant = {
        "grant_id": ev.grant_id,
        "principal": {
            "id": ev.principal.id,
            "type": ev.principal.type,
            "roles": ev.principal.roles,
            "attr": principal_attr,
        },
        "resource": resource,
        "actions": ev.actions,
        "session_id": ev.session_id,
        "device_id": ev.device_id,
        "issued_at": ev.issued_at,
        "expires_at": ev.expires_at,
        "on_behalf_of": ev.on_behalf_of,
        "parent_grant_id": ev.parent_grant_id,
    }
    key = f"{ev.principal.type}:{ev.principal.id}"
    return GrantEvent(op="issued", grant_id=ev.grant_id, subject_key=key, grant=grant)
