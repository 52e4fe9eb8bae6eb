"""Validation of grant lifecycle events from ``authz.grants`` into a plain ``GrantEvent``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from streams.models.limits import (
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_SUBJECT_ID_CHARS,
    MAX_SUBJECT_TYPE_CHARS,
    check_free_form,
)
from streams.models.signal import SignalInvalid, _errors_text
from streams.models.spiffe import WORKLOAD_TYPE, check_subject_id, spiffe_id_problem
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


@dataclass(slots=True)
class _Fields:
    """The validated fields of a grant event, whichever way they were validated: ``principal``
    as ``{id, type, roles, attr}``, ``resource`` as ``model_dump(exclude_none=True)`` gives it."""

    op: str
    grant_id: str
    principal: dict[str, Any] | None
    resource: dict[str, Any] | None
    actions: list[str]
    session_id: str | None
    device_id: str | None
    issued_at: int | None
    expires_at: int | None
    on_behalf_of: list[str]
    parent_grant_id: str | None


_GRANT = TypeAdapter(GrantEventIn)


def validate_grant_event(raw: dict[str, Any]) -> GrantEvent:
    """Validate a decoded grant event; ``issued`` needs principal, resource, actions, issued_at.

    Well-formed events take a hand-written fast path (``_fast_fields``, a fraction of pydantic's
    cost); anything it is not sure about goes through the pydantic models, which also produce
    the error messages. Both give the same fields (tests/models/test_models_grant_fast_path.py).
    """
    fields = _fast_fields(raw)
    if fields is None:
        fields = _model_fields(raw)
    return _grant_event(fields)


def _model_fields(raw: Any) -> _Fields:
    try:
        ev = _GRANT.validate_python(raw)
    except Exception as exc:
        raise SignalInvalid(_errors_text(exc)) from None
    p = ev.principal
    principal = None
    if p is not None:
        principal = {"id": p.id, "type": p.type, "roles": p.roles, "attr": p.attr}
    resource = ev.resource.model_dump(exclude_none=True) if ev.resource is not None else None
    return _Fields(
        ev.op,
        ev.grant_id,
        principal,
        resource,
        ev.actions,
        ev.session_id,
        ev.device_id,
        ev.issued_at,
        ev.expires_at,
        ev.on_behalf_of,
        ev.parent_grant_id,
    )


def _grant_event(ev: _Fields) -> GrantEvent:
    """The checks across fields and the stored form, on validated fields."""
    principal = ev.principal
    if ev.op == "released":
        key = f"{principal['type']}:{principal['id']}" if principal else None
        return GrantEvent(op="released", grant_id=ev.grant_id, subject_key=key, grant=None)
    missing = [
        name
        for name, value in (
            ("principal", principal),
            ("resource", ev.resource),
            ("actions", ev.actions),
            ("issued_at", ev.issued_at is not None),  # 0 is a time, not a missing one
        )
        if not value
    ]
    if missing:
        raise SignalInvalid(f"an issued grant needs {', '.join(missing)}")
    assert principal is not None and ev.resource is not None and ev.issued_at is not None
    if ev.expires_at is not None and ev.expires_at <= ev.issued_at:
        raise SignalInvalid("expires_at: must be later than issued_at")
    if ev.parent_grant_id is not None and not ev.on_behalf_of:
        raise SignalInvalid(
            "parent_grant_id: a grant made under a delegation needs on_behalf_of (the parent "
            "grant is held by its last member)"
        )
    principal_attr = {
        k: v for k, v in principal["attr"].items() if k not in RESERVED_PRINCIPAL_ATTRS
    }
    grant = {
        "grant_id": ev.grant_id,
        "principal": {
            "id": principal["id"],
            "type": principal["type"],
            "roles": principal["roles"],
            "attr": principal_attr,
        },
        "resource": ev.resource,
        "actions": ev.actions,
        "session_id": ev.session_id,
        "device_id": ev.device_id,
        "issued_at": ev.issued_at,
        "expires_at": ev.expires_at,
        "on_behalf_of": ev.on_behalf_of,
        "parent_grant_id": ev.parent_grant_id,
    }
    key = f"{principal['type']}:{principal['id']}"
    return GrantEvent(op="issued", grant_id=ev.grant_id, subject_key=key, grant=grant)


# -- fast path ------------------------------------------------------------------------------

_OPS = frozenset({"issued", "released"})
_SUBJECT_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# ``fullmatch``: pydantic's (Rust) ``$`` is the end of the text, Python's also matches before a
# final newline
_SUBJECT_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*:.+")


def _text(value: object, min_len: int = 0, max_len: int = MAX_ID_CHARS) -> TypeGuard[str]:
    return type(value) is str and min_len <= len(value) <= max_len


def _opt_text(value: object) -> bool:
    return value is None or _text(value)


def text_list(value: object, min_items: int = 0) -> TypeGuard[list[str]]:
    """A list of names within the limits (``Names``)."""
    return (
        type(value) is list
        and min_items <= len(value) <= MAX_LIST_ITEMS
        and all(type(v) is str and len(v) <= MAX_ID_CHARS for v in value)
    )


def is_subject_key(value: object) -> TypeGuard[str]:
    """A subject key within the limits (``SubjectKey``)."""
    return (
        type(value) is str
        and len(value) <= MAX_ID_CHARS
        and _SUBJECT_KEY_RE.fullmatch(value) is not None
    )


def subject_keys(value: object) -> TypeGuard[list[str]]:
    """A list of subject keys within the limits."""
    return (
        type(value) is list
        and len(value) <= MAX_LIST_ITEMS
        and all(is_subject_key(v) for v in value)
    )


def _free_form_ok(value: object) -> bool:
    if type(value) is not dict:
        return False
    try:
        check_free_form(value)
    except ValueError:
        return False
    return True


_UNSURE: Final = -1  # no valid time is negative: ``_fast_time`` leaves the case to the models


def _fast_time(value: object) -> int | None:
    """Epoch ms, None for no time, or ``_UNSURE``."""
    if value is None or value == "":
        return None
    try:
        return to_epoch_ms(value)
    except Exception:
        return _UNSURE


def _fast_principal(p: object) -> dict[str, Any] | None:
    if type(p) is not dict:
        return None
    pid, ptype, roles = p.get("id"), p.get("type", "user"), p.get("roles")
    attr = p.get("attr", {})
    if not (
        _text(pid, 1, MAX_SUBJECT_ID_CHARS)
        and _text(ptype, 1, MAX_SUBJECT_TYPE_CHARS)
        and _SUBJECT_TYPE_RE.fullmatch(ptype) is not None
        and text_list(roles, 1)
        and _free_form_ok(attr)
        and (ptype != WORKLOAD_TYPE or spiffe_id_problem(pid) is None)
    ):
        return None
    return {"id": pid, "type": ptype, "roles": list(roles), "attr": dict(attr)}


def _fast_resource(r: object) -> dict[str, Any] | None:
    if type(r) is not dict:
        return None
    kind, rid, attr = r.get("kind"), r.get("id"), r.get("attr", {})
    version, scope = r.get("policyVersion"), r.get("scope")
    if not (
        _text(kind, 1)
        and _text(rid, 1, MAX_SUBJECT_ID_CHARS)
        and _free_form_ok(attr)
        and _opt_text(version)
        and _opt_text(scope)
    ):
        return None
    out = {"kind": kind, "id": rid, "attr": dict(attr)}
    if version is not None:
        out["policyVersion"] = version
    if scope is not None:
        out["scope"] = scope
    return out


def _fast_fields(raw: Any) -> _Fields | None:
    """The fields of a well-formed event exactly as ``_model_fields`` gives them, or None when
    the input needs the models (coercions, errors, anything unusual)."""
    if type(raw) is not dict:
        return None
    op, grant_id = raw.get("op"), raw.get("grant_id")
    p, r = raw.get("principal"), raw.get("resource")
    actions = raw.get("actions", [])
    session_id, device_id = raw.get("session_id"), raw.get("device_id")
    chain, parent = raw.get("on_behalf_of", []), raw.get("parent_grant_id")
    if not (
        type(op) is str
        and op in _OPS
        and _text(grant_id, 1)
        and text_list(actions)
        and _opt_text(session_id)
        and _opt_text(device_id)
        and _opt_text(parent)
        and subject_keys(chain)
    ):
        return None
    principal = resource = None
    if p is not None:
        principal = _fast_principal(p)
        if principal is None:
            return None
    if r is not None:
        resource = _fast_resource(r)
        if resource is None:
            return None
    issued_at = _fast_time(raw.get("issued_at"))
    expires_at = _fast_time(raw.get("expires_at"))
    if issued_at == _UNSURE or expires_at == _UNSURE:
        return None
    return _Fields(
        op,
        grant_id,
        principal,
        resource,
        list(actions),
        session_id,
        device_id,
        issued_at,
        expires_at,
        list(chain),
        parent,
    )
