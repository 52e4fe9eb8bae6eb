"""Subject identifiers (RFC 9493, SSF 1.0 complex subjects) to what Vigil keys state by.

A ``Target`` names a principal, and/or the session, device or token (grant) the event is
about; a field left None is a wildcard (every value matches). docs/shared-signals.md has the
table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.ssf.config import Transmitter

COMPLEX_MEMBERS = ("user", "device", "session", "application", "tenant", "org_unit", "group")
SUPPORTED_MEMBERS = frozenset({"user", "device", "session", "tenant"})
#: simple format -> the member holding its identifier
_SIMPLE_VALUE = {
    "iss_sub": "sub",
    "email": "email",
    "opaque": "id",
    "phone_number": "phone_number",
    "account": "uri",
    "uri": "uri",
    "did": "url",
}
MAX_ALIASES = 16


class SubjectInvalid(ValueError):
    """The ``sub_id`` is malformed or uses a format Vigil does not map (invalid_request)."""


class SubjectRefused(ValueError):
    """The subject is well formed but not this transmitter's to speak about (access_denied),
    or names a critical member Vigil cannot honour (the event is discarded)."""


@dataclass(frozen=True, slots=True)
class Target:
    principal: str | None = None
    session_id: str | None = None
    device_id: str | None = None
    grant_id: str | None = None


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise SubjectInvalid(f"{where} must be a non-empty string of at most 1024 characters")
    return value


def _simple(subject: Any, where: str) -> tuple[str, str]:
    """(format, identifier) of a simple subject; jwt_id's identifier is its ``jti``."""
    if not isinstance(subject, dict):
        raise SubjectInvalid(f"{where} must be a JSON object")
    fmt = subject.get("format")
    if not isinstance(fmt, str):
        raise SubjectInvalid(f"{where}.format must be a string")
    if fmt == "jwt_id":
        _text(subject.get("iss"), f"{where}.iss")
        return fmt, _text(subject.get("jti"), f"{where}.jti")
    member = _SIMPLE_VALUE.get(fmt)
    if member is None:
        raise SubjectInvalid(f"{where}.format {fmt!r} is not a simple subject format Vigil maps")
    if fmt == "iss_sub":
        _text(subject.get("iss"), f"{where}.iss")
    return fmt, _text(subject.get(member), f"{where}.{member}")


def _from_simple(subject: Any, where: str, transmitter: Transmitter, session_event: bool) -> Target:
    fmt, value = _simple(subject, where)
    if fmt == "jwt_id":
        return Target(grant_id=value)
    if fmt == "opaque":
        mode = transmitter.subjects.opaque
        if mode == "session" or (mode == "auto" and session_event):
            return Target(session_id=value)
        return Target(principal=value)
    if fmt in ("iss_sub", "email"):
        return Target(principal=value)
    raise SubjectInvalid(f"{where}.format {fmt!r} can only be a member of a complex subject")


def _from_complex(subject: dict[str, Any], transmitter: Transmitter) -> Target:
    members = {k: v for k, v in subject.items() if k != "format"}
    if not members:
        raise SubjectInvalid("sub_id: a complex subject needs at least one member")
    for name in members:
        if name not in COMPLEX_MEMBERS:
            raise SubjectInvalid(f"sub_id.{name} is not a complex subject member")
        if name not in SUPPORTED_MEMBERS and name in transmitter.critical_subject_members:
            raise SubjectRefused(
                f"sub_id.{name} is a critical subject member Vigil does not support; "
                "the event is discarded"
            )
    values = {
        name: _simple(members[name], f"sub_id.{name}")
        for name in members
        if name in SUPPORTED_MEMBERS
    }
    tenant = values.get("tenant")
    if tenant is not None and transmitter.tenant is not None and tenant[1] != transmitter.tenant:
        raise SubjectRefused(
            f"sub_id.tenant {tenant[1]!r} is not transmitter {transmitter.name!r}'s tenant"
        )
    user = values.get("user")
    grant_id = None
    if user is not None and user[0] == "jwt_id":
        grant_id, user = user[1], None
    session = values.get("session")
    if session is not None and session[0] == "jwt_id":
        grant_id, session = session[1], None
    device = values.get("device")
    return Target(
        principal=user[1] if user else None,
        session_id=session[1] if session else None,
        device_id=device[1] if device else None,
        grant_id=grant_id,
    )


def targets(sub_id: Any, transmitter: Transmitter, session_event: bool) -> list[Target]:
    """Every target the subject names (``aliases``: one per identifier, in order)."""
    if not isinstance(sub_id, dict):
        raise SubjectInvalid("sub_id must be a JSON object")
    fmt = sub_id.get("format")
    if fmt == "complex":
        return [_from_complex(sub_id, transmitter)]
    if fmt == "aliases":
        identifiers = sub_id.get("identifiers")
        if not isinstance(identifiers, list) or not 1 <= len(identifiers) <= MAX_ALIASES:
            raise SubjectInvalid(f"sub_id.identifiers must be a list of 1..{MAX_ALIASES} subjects")
        return [
            _from_simple(s, f"sub_id.identifiers[{i}]", transmitter, session_event)
            for i, s in enumerate(identifiers)
        ]
    return [_from_simple(sub_id, "sub_id", transmitter, session_event)]
