"""The Cerbos CheckResources API (`/api/check/resources`) on top of `PolicyEngine`.

Pure functions: request JSON (already parsed) in, response JSON out, in exactly the shapes the
stock Cerbos PDP uses (protobuf JSON: empty fields omitted, map keys sorted, integral doubles
printed as integers). `vigil policy eval` uses them for one request per line; an HTTP check API
can reuse them unchanged. Invalid requests raise `RequestError`, whose `body()` is the Cerbos
error body (`{"code": 3, "message": ...}`, gRPC INVALID_ARGUMENT).

Engine features that are being added while this module is written (outputs, validation errors,
engine options) are used through feature detection, so the module works with either engine.
"""

from __future__ import annotations

import base64
import datetime as dt
import inspect
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .auxdata import NO_KEY_SETS, AuxDataRejected, AuxDataVerifier
from .engine import PolicyEngine
from .globs import sanitized_name

#: gRPC status code INVALID_ARGUMENT, what Cerbos answers for a malformed request.
INVALID_ARGUMENT = 3

_REQUEST_FIELDS = frozenset(
    {"requestId", "principal", "resources", "auxData", "includeMeta", "requestContext"}
)
_PRINCIPAL_FIELDS = frozenset({"id", "policyVersion", "roles", "attr", "scope"})
_RESOURCE_FIELDS = frozenset({"kind", "policyVersion", "id", "attr", "scope"})
_ENTRY_FIELDS = frozenset({"actions", "resource"})
_JWT_FIELDS = frozenset({"token", "keySetId"})

#: Engine options of `PolicyEngine.from_directory` (Cerbos `engine.*` configuration) and the
#: value meaning "not set"; an option the installed engine does not accept is an error only
#: when it is set, so callers need not know which engine version they run.
ENGINE_OPTIONS: dict[str, Any] = {
    "globals_": None,
    "default_policy_version": None,
    "lenient_scope_search": False,
    "strict_evaluation": False,
    "default_scope": None,
    "schema_enforcement": None,
}


class RequestError(ValueError):
    """A request Cerbos would reject with INVALID_ARGUMENT; `message` is Cerbos-like."""

    def __init__(self, message: str, code: int = INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def body(self) -> dict[str, Any]:
        """The error body Cerbos' HTTP gateway returns (without protobuf `details`)."""
        return {"code": self.code, "message": self.message}


class UnsupportedOption(ValueError):
    """An engine option was set that the installed `PolicyEngine` does not accept yet."""


def engine_option_support() -> set[str]:
    """Names of the `ENGINE_OPTIONS` that `PolicyEngine.from_directory` accepts."""
    params = inspect.signature(PolicyEngine.from_directory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return set(ENGINE_OPTIONS)
    return {name for name in ENGINE_OPTIONS if name in params}


def build_engine(directory: str | Path, **options: Any) -> PolicyEngine:
    """`PolicyEngine.from_directory` with the options this engine supports.

    Options left at their "not set" value are not passed (so older engines work); a set option
    the engine does not accept raises `UnsupportedOption` rather than being silently ignored,
    because ignoring it would change decisions. Raises `PolicyCompileError` like
    `from_directory`."""
    unknown = set(options) - set(ENGINE_OPTIONS)
    if unknown:
        raise TypeError(f"unknown engine option(s): {', '.join(sorted(unknown))}")
    supported = engine_option_support()
    kwargs: dict[str, Any] = {}
    for name, value in options.items():
        if value == ENGINE_OPTIONS[name] or (name == "globals_" and not value):
            continue
        if name not in supported:
            raise UnsupportedOption(
                f"engine option {name.rstrip('_')!r} is not supported by this policy engine yet"
            )
        kwargs[name] = value
    return PolicyEngine.from_directory(directory, **kwargs)


# -- request validation ------------------------------------------------------------------------


def _fail(problems: list[str]) -> RequestError:
    if len(problems) == 1:
        return RequestError(f"validation error: {problems[0]}")
    return RequestError("validation errors:\n" + "\n".join(f" - {p}" for p in problems))


def _unknown(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise RequestError(f"unknown field {key!r} in {where}")


def _string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestError(f"invalid value for string field {where}{key}: {json.dumps(value)}")
    return value


def _strings(obj: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"invalid value for repeated string field {where}{key}")
    return value


def _object(obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"invalid value for map field {where}{key}: expected an object")
    return value


def _principal(raw: Any, problems: list[str]) -> dict[str, Any]:
    if raw is None:
        problems.append("principal: value is required")
        return {}
    if not isinstance(raw, dict):
        raise RequestError("invalid value for message field principal: expected an object")
    _unknown(raw, _PRINCIPAL_FIELDS, "principal")
    pid = _string(raw, "id", "principal.")
    roles = _strings(raw, "roles", "principal.")
    if not pid:
        problems.append("principal.id: value is required")
    if not roles:
        problems.append("principal.roles: value is required")
    elif len(set(roles)) != len(roles):
        problems.append("principal.roles: repeated value must contain unique items")
    return {
        "id": pid,
        "roles": roles,
        "attr": _object(raw, "attr", "principal."),
        "policyVersion": _string(raw, "policyVersion", "principal."),
        "scope": _string(raw, "scope", "principal."),
    }


def _entry(i: int, raw: Any, problems: list[str]) -> tuple[dict[str, Any], list[str]]:
    where = f"resources[{i}]"
    if not isinstance(raw, dict):
        raise RequestError(f"invalid value for message field {where}: expected an object")
    _unknown(raw, _ENTRY_FIELDS, where)
    actions = _strings(raw, "actions", f"{where}.")
    if not actions:
        problems.append(f"{where}.actions: value is required")
    elif len(set(actions)) != len(actions):
        problems.append(f"{where}.actions: repeated value must contain unique items")
    res = raw.get("resource")
    if res is None:
        problems.append(f"{where}.resource: value is required")
        return {}, actions
    if not isinstance(res, dict):
        raise RequestError(f"invalid value for message field {where}.resource: expected an object")
    _unknown(res, _RESOURCE_FIELDS, f"{where}.resource")
    resource = {
        "kind": _string(res, "kind", f"{where}.resource."),
        "id": _string(res, "id", f"{where}.resource."),
        "attr": _object(res, "attr", f"{where}.resource."),
        "policyVersion": _string(res, "policyVersion", f"{where}.resource."),
        "scope": _string(res, "scope", f"{where}.resource."),
    }
    if not resource["kind"]:
        problems.append(f"{where}.resource.kind: value is required")
    if not resource["id"]:
        problems.append(f"{where}.resource.id: value is required")
    return resource, actions


class AuxJwt(NamedTuple):
    """One JWT of a request's ``auxData``, not verified yet (`verified_aux_data` does that)."""

    token: str
    key_set_id: str


class AuxRequest(NamedTuple):
    """A request's ``auxData``: ``jwt`` (one token) or ``jwts`` (named tokens), not verified."""

    jwt: AuxJwt | None
    jwts: dict[str, AuxJwt]


class InvalidAuxData(RequestError):
    """Cerbos' ``invalid auxData`` (HTTP 400, code 3) with the reason; ``reason`` is a bounded
    label for metrics (`streams.policy.auxdata`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"invalid auxData: {detail}")
        self.reason = reason


def _one_jwt(raw: Any, where: str, problems: list[str]) -> AuxJwt | None:
    """``{"token", "keySetId"}``; ``where`` is Cerbos' field path (``aux_data.jwt``)."""
    if not isinstance(raw, dict):
        raise RequestError(f"invalid value for message field {where}: expected an object")
    _unknown(raw, _JWT_FIELDS, where)
    token = _string(raw, "token", f"{where}.")
    key_set_id = _string(raw, "keySetId", f"{where}.")
    if not token:
        problems.append(f"{where}.token: value is required")  # Cerbos' own wording
        return None
    return AuxJwt(token, key_set_id)


def _aux_data(raw: Any, problems: list[str]) -> AuxRequest | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RequestError("invalid value for message field auxData: expected an object")
    _unknown(raw, frozenset({"jwt", "jwts"}), "auxData")
    jwt, jwts = raw.get("jwt"), raw.get("jwts")
    if jwts is not None and not isinstance(jwts, dict):
        raise RequestError("invalid value for map field auxData.jwts: expected an object")
    if jwt is not None and jwts:
        problems.append("aux_data: Only one of the jwt or jwts fields must be set")
    single = _one_jwt(jwt, "aux_data.jwt", problems) if jwt is not None else None
    named: dict[str, AuxJwt] = {}
    for name, entry in sorted((jwts or {}).items()):
        where = f"aux_data.jwts[{json.dumps(name)}]"
        if not name:
            problems.append(f"{where}: must be at least 1 characters")
            continue
        one = _one_jwt(entry, where, problems)
        if one is not None:
            named[name] = one
    if single is None and not named:
        return None
    return AuxRequest(single, named)


def verified_aux_data(
    aux: AuxRequest | None, verifier: AuxDataVerifier, now: dt.datetime | None = None
) -> dict[str, Any] | None:
    """The engine's ``aux_data`` for a parsed request, as the stock PDP builds it:
    ``{"jwt": claims}``, or ``{"jwts": {name: {"claims": claims}}}`` for named tokens. Every
    token is verified by ``verifier`` (the ``auxData.jwt`` configuration); one refused token
    refuses the request (`InvalidAuxData`). ``now``: the time the time claims are checked at."""
    if aux is None:
        return None
    try:
        if aux.jwt is not None:
            return {"jwt": verifier.claims(aux.jwt.token, aux.jwt.key_set_id, now)}
        return {
            "jwts": {
                name: {"claims": verifier.claims(jwt.token, jwt.key_set_id, now)}
                for name, jwt in aux.jwts.items()
            }
        }
    except AuxDataRejected as exc:
        raise InvalidAuxData(exc.reason, str(exc)) from None


def request_annotations(body: Mapping[str, Any]) -> dict[str, Any]:
    """``requestContext.annotations`` of a request (Cerbos passes them to audit only; Vigil
    reads its own ``vigil.*`` keys from them). Raises `RequestError` for a wrong shape."""
    context = body.get("requestContext")
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise RequestError("invalid value for message field requestContext: expected an object")
    _unknown(context, frozenset({"annotations"}), "requestContext")
    return _object(context, "annotations", "requestContext.")


def parse_request(
    body: Any,
) -> tuple[str, dict[str, Any], list[tuple[dict[str, Any], list[str]]], AuxRequest | None, bool]:
    """Validate a CheckResources request: (requestId, principal, [(resource, actions)],
    auxData not yet verified, includeMeta). Raises `RequestError` like Cerbos would."""
    if isinstance(body, str | bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise RequestError(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("request must be a JSON object")
    _unknown(body, _REQUEST_FIELDS, "request")
    request_id = _string(body, "requestId", "")
    include_meta = body.get("includeMeta", False)
    if include_meta is None:
        include_meta = False
    if not isinstance(include_meta, bool):
        raise RequestError(f"invalid value for bool field includeMeta: {json.dumps(include_meta)}")
    problems: list[str] = []
    principal = _principal(body.get("principal"), problems)
    raw_entries = body.get("resources")
    if raw_entries is not None and not isinstance(raw_entries, list):
        raise RequestError("invalid value for repeated field resources: expected an array")
    entries = [_entry(i, e, problems) for i, e in enumerate(raw_entries or [])]
    if not entries:
        problems.append("resources: value is required")
    aux = _aux_data(body.get("auxData"), problems)
    request_annotations(body)
    if problems:
        raise _fail(problems)
    return request_id, principal, entries, aux, include_meta


_PLAN_FIELDS = frozenset(
    {
        "requestId",
        "action",
        "actions",
        "principal",
        "resource",
        "auxData",
        "includeMeta",
        "requestContext",
    }
)
_PLAN_RESOURCE_FIELDS = frozenset({"kind", "attr", "policyVersion", "scope"})


def parse_plan_request(body: Any) -> dict[str, Any]:
    """Validate a PlanResources request like Cerbos: `{"requestId", "action" | "actions",
    "principal", "resource" (kind, attr, policyVersion, scope; no id), "aux" (`AuxRequest`,
    not verified yet), "includeMeta"}` with the principal in `parse_request`'s shape. Raises
    `RequestError`."""
    if not isinstance(body, dict):
        raise RequestError("request must be a JSON object")
    _unknown(body, _PLAN_FIELDS, "request")
    include_meta = body.get("includeMeta") or False
    if not isinstance(include_meta, bool):
        raise RequestError(f"invalid value for bool field includeMeta: {json.dumps(include_meta)}")
    problems: list[str] = []
    action = _string(body, "action", "")
    actions = _strings(body, "actions", "")
    if bool(action) == bool(actions):
        problems.append("Exactly one of 'action' or 'actions' field must be set")
    elif len(set(actions)) != len(actions):
        problems.append("actions: repeated value must contain unique items")
    principal = _principal(body.get("principal"), problems)
    raw = body.get("resource")
    resource: dict[str, Any] = {}
    if raw is None:
        problems.append("resource: value is required")
    elif not isinstance(raw, dict):
        raise RequestError("invalid value for message field resource: expected an object")
    else:
        _unknown(raw, _PLAN_RESOURCE_FIELDS, "resource")
        resource = {
            "kind": _string(raw, "kind", "resource."),
            "attr": _object(raw, "attr", "resource."),
            "policyVersion": _string(raw, "policyVersion", "resource."),
            "scope": _string(raw, "scope", "resource."),
        }
        if not resource["kind"]:
            problems.append("resource.kind: value is required")
    aux = _aux_data(body.get("auxData"), problems)
    request_annotations(body)
    if problems:
        raise _fail(problems)
    return {
        "request_id": _string(body, "requestId", ""),
        "action": action,
        "actions": actions or [action],
        "principal": principal,
        "resource": resource,
        "aux": aux,
        "include_meta": include_meta,
    }


# -- response ----------------------------------------------------------------------------------


def to_json_value(value: Any) -> Any:
    """A JSON-ready copy of an engine value in protobuf `Value` form: integral doubles become
    ints (protobuf JSON prints `1`, not `1.0`), tuples lists, other objects their string."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():g}s"
    return str(value)


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _output(entry: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"src": _field(entry, "src", "")}
    error = _field(entry, "error")
    if error:
        out["error"] = error  # Cerbos: a failing output has `error` and no `val`
    else:
        out["val"] = to_json_value(_field(entry, "val"))
    action = _field(entry, "action")
    if action:
        out["action"] = action
    return out


def _validation_error(err: Any) -> dict[str, Any]:
    if isinstance(err, str):
        return {"message": err}
    out: dict[str, Any] = {}
    for key in ("path", "message", "source"):
        value = _field(err, key)
        if value not in (None, ""):
            out[key] = getattr(value, "value", value)  # enums: their Cerbos name
    return out


_POLICY_KEY = re.compile(r"^(resource|principal|role)\.(.+)\.v([^/]*)(/.*)?$")


def cerbos_policy_key(key: str) -> str:
    """A policy key as Cerbos prints it in `matchedPolicy`: the name and version parts are
    sanitised (runs of characters other than word characters and `.` become `_`), so kind
    `album:object` is reported as `resource.album_object.vdefault`. Idempotent."""
    m = _POLICY_KEY.match(key)
    if m is None:
        return key
    kind, name, version, scope = m.groups()
    return f"{kind}.{sanitized_name(name)}.v{sanitized_name(version)}{scope or ''}"


def result_json(
    resource: Mapping[str, Any], actions: Sequence[str], result: Any, include_meta: bool
) -> dict[str, Any]:
    """One element of `results`: the resource as requested, effects, and optional meta."""
    echo: dict[str, Any] = {"id": resource.get("id", ""), "kind": resource.get("kind", "")}
    if resource.get("policyVersion"):
        echo["policyVersion"] = resource["policyVersion"]
    if resource.get("scope"):
        echo["scope"] = resource["scope"]
    decided = result.actions
    names = sorted(actions)
    out: dict[str, Any] = {
        "resource": echo,
        "actions": {a: decided[a].effect for a in names},
    }
    errors = [_validation_error(e) for e in getattr(result, "validation_errors", None) or ()]
    if errors:
        out["validationErrors"] = errors
    if include_meta:
        meta_actions: dict[str, Any] = {}
        for a in names:
            ar = decided[a]
            m: dict[str, Any] = {"matchedPolicy": cerbos_policy_key(ar.policy)}
            if ar.scope:
                m["matchedScope"] = ar.scope
            meta_actions[a] = m
        meta: dict[str, Any] = {"actions": meta_actions}
        edr = list(result.effective_derived_roles)  # a set: Cerbos' order varies per call
        if edr:
            meta["effectiveDerivedRoles"] = edr
        out["meta"] = meta
    outputs = [_output(o) for o in getattr(result, "outputs", None) or ()]
    if outputs:
        out["outputs"] = outputs
    return out


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_call_id() -> str:
    """A ULID (48-bit millisecond time + 80 random bits, Crockford base32), like Cerbos'."""
    n = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in range(25, -1, -1))


def check_resources(
    engine: PolicyEngine,
    body: Any,
    *,
    now: dt.datetime | None = None,
    call_id: str | None = None,
    aux_data: AuxDataVerifier = NO_KEY_SETS,
) -> dict[str, Any]:
    """Answer one CheckResources request (parsed JSON, or JSON text) like the Cerbos PDP.

    Results keep the request's resource order. `now` pins `now()` for the whole request (one
    Cerbos request also evaluates with one timestamp), and is the time an ``auxData.jwt`` token
    is checked at; ``aux_data`` verifies the token (default: none accepted, as a PDP without an
    ``auxData`` configuration). Raises `RequestError` for an invalid request (the caller
    renders `err.body()`)."""
    request_id, principal, entries, raw_aux, include_meta = parse_request(body)
    when = now if now is not None else dt.datetime.now(dt.UTC)
    aux = verified_aux_data(raw_aux, aux_data, when)
    results = []
    for resource, actions in entries:
        result = engine.check(principal, resource, actions, aux_data=aux, now=when)
        results.append(result_json(resource, actions, result, include_meta))
    return response_json(request_id, results, call_id)


def response_json(
    request_id: str, results: list[dict[str, Any]], call_id: str | None = None
) -> dict[str, Any]:
    """The CheckResources response around `result_json` elements (in request order)."""
    response: dict[str, Any] = {}
    if request_id:
        response["requestId"] = request_id
    response["results"] = results
    response["cerbosCallId"] = call_id if call_id is not None else new_call_id()
    return response


def error_body(message: str, code: int = INVALID_ARGUMENT) -> dict[str, Any]:
    """A Cerbos-style error body for failures outside request validation."""
    return {"code": code, "message": message}


_RFC3339 = re.compile(r"Z$")


def parse_time(value: str | dt.datetime | dt.date) -> dt.datetime:
    """An RFC 3339 timestamp (YAML may already have parsed it) as an aware datetime."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(_RFC3339.sub("+00:00", value.strip()))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


__all__ = [
    "ENGINE_OPTIONS",
    "AuxJwt",
    "AuxRequest",
    "InvalidAuxData",
    "RequestError",
    "UnsupportedOption",
    "build_engine",
    "cerbos_policy_key",
    "check_resources",
    "engine_option_support",
    "error_body",
    "new_call_id",
    "parse_plan_request",
    "parse_request",
    "parse_time",
    "request_annotations",
    "response_json",
    "result_json",
    "to_json_value",
    "verified_aux_data",
]
