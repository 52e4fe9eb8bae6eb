"""Conversions between the JSON record shape (docs/architecture.md) and the Avro datum shape.

Written out per kind rather than driven generically by the schema: these run once per event, and
plain dict building is the cheapest thing Python can do here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .errors import DecodeError, EncodeError
from .json_codec import dumps_text, loads_any
from .schemas import NAMESPACE

JsonDict = dict[str, Any]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


# --------------------------------------------------------------------------- time


def to_millis(value: Any, field: str = "time") -> int | None:
    """Epoch milliseconds from epoch ms (int/float/digit string), RFC3339 text or a datetime."""
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is str:
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            try:  # RFC3339 allows lower-case 't' and 'z'; fromisoformat does not
                dt = datetime.fromisoformat(text.upper())
            except ValueError:
                raise EncodeError(f"{field}: not RFC3339 or epoch ms: {value!r}") from None
        return _dt_millis(dt)
    if kind is float:
        return int(value)
    if isinstance(value, datetime):
        return _dt_millis(value)
    raise EncodeError(f"{field}: expected RFC3339 text or epoch ms, got {kind.__name__}")


def _dt_millis(dt: datetime) -> int:
    """Exact integer milliseconds (no float rounding); naive datetimes are taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


# --------------------------------------------------------------------------- Signal attributes


def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_number(v: Any) -> bool:
    return type(v) is float or type(v) is int


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_str_list(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


# record name -> {field: (required, type check)}; must mirror the branches in Signal.avsc
_ATTR_RECORDS: Final[dict[str, dict[str, tuple[bool, Callable[[Any], bool]]]]] = {
    "DeviceComplianceChange": {
        "current_status": (True, _is_str),
        "previous_status": (False, _is_str),
        "device_id": (False, _is_str),
    },
    "RiskLevelChange": {
        "current_level": (True, _is_str),
        "previous_level": (False, _is_str),
        "score": (False, _is_number),
    },
    "CredentialChange": {"credential_type": (True, _is_str), "change_type": (True, _is_str)},
    "AssuranceLevelChange": {"current_level": (True, _is_str), "previous_level": (False, _is_str)},
    "AccountStatus": {"reason": (False, _is_str)},
    "SessionRevoked": {"session_id": (True, _is_str)},
    "NetworkContext": {
        "ip": (False, _is_str),
        "country": (False, _is_str),
        "asn": (False, _is_int),
        "zone": (False, _is_str),
        "anomalies": (False, _is_str_list),
    },
}

#: Signal ``type`` -> typed attributes record (short name). Other types use the JSON-text branch.
SIGNAL_ATTRIBUTE_RECORDS: Final[dict[str, str]] = {
    "device-compliance-change": "DeviceComplianceChange",
    "risk-level-change": "RiskLevelChange",
    "credential-change": "CredentialChange",
    "assurance-level-change": "AssuranceLevelChange",
    "account-disabled": "AccountStatus",
    "account-enabled": "AccountStatus",
    "credential-compromise": "AccountStatus",
    "session-revoked": "SessionRevoked",
    "network-context": "NetworkContext",
}


def _fits(attrs: JsonDict, spec: dict[str, tuple[bool, Callable[[Any], bool]]]) -> bool:
    """Whether ``attrs`` maps losslessly onto the typed record (no unknown keys, right types)."""
    for name, value in attrs.items():
        entry = spec.get(name)
        if entry is None:
            return False
        if value is not None and not entry[1](value):
            return False
    return all(attrs.get(name) is not None for name, (req, _) in spec.items() if req)


def attributes_to_avro(signal_type: str, attrs: Any) -> Any:
    """Pick the union branch: the typed record when it fits exactly, else JSON text.

    The branch is named explicitly (fastavro tuple notation) so fastavro does not have to try
    every union member; attributes that do not fit (extra keys, wrong types) keep every byte by
    going into the JSON-text branch, and validation downstream decides what they mean.
    """
    if attrs is None:
        return None
    record = SIGNAL_ATTRIBUTE_RECORDS.get(signal_type)
    if record is not None and type(attrs) is dict and _fits(attrs, _ATTR_RECORDS[record]):
        return (f"{NAMESPACE}.{record}", attrs)
    return dumps_text(attrs)


def attributes_from_avro(value: Any) -> Any:
    """Typed record -> dict without null optionals; JSON text -> parsed value; null -> {}."""
    if value is None:
        return {}
    if type(value) is dict:
        return {k: v for k, v in value.items() if v is not None}
    return loads_any(value)


# --------------------------------------------------------------------------- per kind


def _req(record: JsonDict, name: str) -> Any:
    try:
        return record[name]
    except KeyError:
        raise EncodeError(f"missing required field {name!r}") from None
    except TypeError:
        raise EncodeError(f"record must be a dict, got {type(record).__name__}") from None


def signal_to_avro(rec: JsonDict) -> JsonDict:
    """Signal JSON shape -> Avro datum."""
    signal_type = _req(rec, "type")
    return {
        "event_id": _req(rec, "event_id"),
        "type": signal_type,
        "subject": _req(rec, "subject"),
        "source": _req(rec, "source"),
        "event_time": to_millis(_req(rec, "event_time"), "event_time"),
        "attributes": attributes_to_avro(signal_type, rec.get("attributes")),
    }


def signal_from_avro(d: JsonDict) -> JsonDict:
    """Avro datum -> Signal JSON shape (``event_time`` as epoch ms)."""
    d["attributes"] = attributes_from_avro(d["attributes"])
    return d


def _attr_text(obj: JsonDict) -> str:
    attr = obj.get("attr")
    return "{}" if not attr else dumps_text(attr)


def _attr_obj(text: str) -> Any:
    return {} if text == "{}" else loads_any(text)


def grant_to_avro(rec: JsonDict) -> JsonDict:
    """GrantEvent JSON shape -> Avro datum (``attr`` objects become JSON text)."""
    p = _req(rec, "principal")
    r = _req(rec, "resource")
    return {
        "op": _req(rec, "op"),
        "grant_id": _req(rec, "grant_id"),
        "principal": {
            "id": _req(p, "id"),
            "type": _req(p, "type"),
            "roles": p.get("roles") or [],
            "attr": _attr_text(p),
        },
        "resource": {
            "kind": _req(r, "kind"),
            "id": _req(r, "id"),
            "attr": _attr_text(r),
        },
        "actions": rec.get("actions") or [],
        "session_id": rec.get("session_id"),
        "device_id": rec.get("device_id"),
        "issued_at": to_millis(rec.get("issued_at"), "issued_at"),
        "expires_at": to_millis(rec.get("expires_at"), "expires_at"),
        "on_behalf_of": rec.get("on_behalf_of") or [],
        "parent_grant_id": rec.get("parent_grant_id"),
    }


def grant_from_avro(d: JsonDict) -> JsonDict:
    """Avro datum -> GrantEvent JSON shape."""
    d["principal"]["attr"] = _attr_obj(d["principal"]["attr"])
    d["resource"]["attr"] = _attr_obj(d["resource"]["attr"])
    return d


def decision_to_avro(rec: JsonDict) -> JsonDict:
    """Decision JSON shape -> Avro datum (``request`` becomes JSON text)."""
    errors = rec.get("errors") or []
    if errors and not all(type(e) is str for e in errors):
        errors = [e if type(e) is str else dumps_text(e) for e in errors]
    out = dict(rec)
    out["request"] = dumps_text(rec.get("request") or {})
    out["evaluated_at"] = to_millis(_req(rec, "evaluated_at"), "evaluated_at")
    out["cause_event_time"] = to_millis(rec.get("cause_event_time"), "cause_event_time")
    out["errors"] = errors
    return out


def _cause_from_avro(d: JsonDict) -> None:
    """``cause`` without its null optionals (``signal_type``, ``credential_type``,
    ``change_type``), the shape Vigil writes as JSON, so both formats decode alike."""
    cause = d.get("cause")
    if type(cause) is dict:
        d["cause"] = {k: v for k, v in cause.items() if v is not None}


def decision_from_avro(d: JsonDict) -> JsonDict:
    """Avro datum -> Decision JSON shape."""
    d["request"] = _attr_obj(d["request"])
    _cause_from_avro(d)
    return d


def revocation_from_avro(d: JsonDict) -> JsonDict:
    """Avro datum -> Revocation JSON shape."""
    _cause_from_avro(d)
    return d


def revocation_to_avro(rec: JsonDict) -> JsonDict:
    """Revocation JSON shape -> Avro datum."""
    out = dict(rec)
    out["revoked_at"] = to_millis(_req(rec, "revoked_at"), "revoked_at")
    out["cause_event_time"] = to_millis(rec.get("cause_event_time"), "cause_event_time")
    return out


def _as_bytes(v: Any, field: str) -> bytes | None:
    if v is None or type(v) is bytes:
        return v
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    if isinstance(v, str):
        return v.encode()
    raise EncodeError(f"{field}: expected bytes, got {type(v).__name__}")


def deadletter_to_avro(rec: JsonDict) -> JsonDict:
    """DeadLetter JSON shape -> Avro datum (key/value as bytes)."""
    out = dict(rec)
    out["key"] = _as_bytes(rec.get("key"), "key")
    out["value"] = _as_bytes(_req(rec, "value"), "value")
    out["received_at"] = to_millis(_req(rec, "received_at"), "received_at")
    return out


def _identity(d: JsonDict) -> JsonDict:
    return d


TO_AVRO: Final[dict[str, Callable[[JsonDict], JsonDict]]] = {
    "Signal": signal_to_avro,
    "GrantEvent": grant_to_avro,
    "Decision": decision_to_avro,
    "Revocation": revocation_to_avro,
    "DeadLetter": deadletter_to_avro,
}

FROM_AVRO: Final[dict[str, Callable[[JsonDict], JsonDict]]] = {
    "Signal": signal_from_avro,
    "GrantEvent": grant_from_avro,
    "Decision": decision_from_avro,
    "Revocation": revocation_from_avro,
    "DeadLetter": _identity,
}


# --------------------------------------------------------------------------- JSON bytes fields


def deadletter_to_json(rec: JsonDict) -> JsonDict:
    """JSON has no bytes: DeadLetter key/value travel as base64 text in JSON form."""
    out = dict(rec)
    for name in ("key", "value"):
        v = rec.get(name)
        if isinstance(v, bytes | bytearray | memoryview):
            out[name] = base64.b64encode(v).decode()
    return out


def deadletter_from_json(rec: JsonDict) -> JsonDict:
    """Undo :func:`deadletter_to_json` so callers see bytes either way."""
    for name in ("key", "value"):
        v = rec.get(name)
        if isinstance(v, str):
            try:
                rec[name] = base64.b64decode(v, validate=True)
            except ValueError:
                raise DecodeError(f"DeadLetter {name}: not base64 text") from None
    return rec
