"""`streams.policy.api`: CheckResources request validation and response shapes (pure)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from streams.policy import PolicyEngine
from streams.policy.api import (
    RequestError,
    UnsupportedOption,
    build_engine,
    cerbos_policy_key,
    check_resources,
    engine_option_support,
    new_call_id,
    to_json_value,
)
from streams.policy.auxdata import UNVERIFIED

from .helpers import DATA

NOW = dt.datetime(2022, 8, 2, 15, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def album() -> PolicyEngine:
    return PolicyEngine.from_directory(DATA / "album")


def _req(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "principal": {"id": "aliciaID", "roles": ["user"]},
        "resources": [
            {
                "resource": {"kind": "album:object", "id": "A1", "attr": {"owner": "aliciaID"}},
                "actions": ["view", "delete"],
            },
            {"resource": {"kind": "photo", "id": "P1", "scope": "x"}, "actions": ["view"]},
        ],
    }
    body.update(overrides)
    return body


def test_response_shape_without_meta(album: PolicyEngine) -> None:
    resp = check_resources(album, _req(), now=NOW, call_id="CALL")
    assert resp == {
        "results": [
            {
                "resource": {"id": "A1", "kind": "album:object"},
                "actions": {"delete": "EFFECT_ALLOW", "view": "EFFECT_ALLOW"},
            },
            {
                "resource": {"id": "P1", "kind": "photo", "scope": "x"},
                "actions": {"view": "EFFECT_DENY"},
            },
        ],
        "cerbosCallId": "CALL",
    }


def test_response_shape_with_meta_and_request_id(album: PolicyEngine) -> None:
    resp = check_resources(album, _req(requestId="r-1", includeMeta=True), now=NOW)
    assert resp["requestId"] == "r-1"
    first, second = resp["results"]
    assert first["meta"] == {
        "actions": {
            "delete": {"matchedPolicy": "resource.album_object.vdefault"},
            "view": {"matchedPolicy": "resource.album_object.vdefault"},
        },
        "effectiveDerivedRoles": ["owner"],
    }
    assert second["meta"] == {"actions": {"view": {"matchedPolicy": "NO_MATCH"}}}
    assert len(resp["cerbosCallId"]) == 26


def test_json_text_is_accepted(album: PolicyEngine) -> None:
    resp = check_resources(
        album,
        '{"principal": {"id": "x", "roles": ["user"]}, "resources": '
        '[{"resource": {"kind": "k", "id": "1"}, "actions": ["a"]}]}',
    )
    assert resp["results"][0]["actions"] == {"a": "EFFECT_DENY"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"principal": {"id": "", "roles": ["a"]}}, "principal.id: value is required"),
        (
            _req(principal={"id": "u", "roles": ["a", "a"]}),
            "principal.roles: repeated value must contain unique items",
        ),
        (_req(resources=[]), "validation error: resources: value is required"),
        (
            _req(resources=[{"resource": {"kind": "k", "id": "1"}, "actions": []}]),
            "resources[0].actions: value is required",
        ),
        (
            _req(resources=[{"resource": {"kind": "", "id": "1"}, "actions": ["a"]}]),
            "resources[0].resource.kind: value is required",
        ),
        (_req(bogus=1), "unknown field 'bogus'"),
        (_req(requestId=5), "invalid value for string field requestId"),
        (_req(includeMeta="yes"), "invalid value for bool field includeMeta"),
        (_req(auxData={"jwt": {"token": "a.b.c"}}), "invalid auxData: cannot determine keyset"),
        (_req(auxData={"jwt": {"keySetId": "ks"}}), "aux_data.jwt.token: value is required"),
        ([1], "request must be a JSON object"),
        ("{", "invalid JSON"),
    ],
)
def test_invalid_requests(album: PolicyEngine, body: Any, message: str) -> None:
    with pytest.raises(RequestError) as info:
        check_resources(album, body)
    assert message in info.value.message
    assert info.value.body()["code"] == 3


def test_unverified_jwt_claims_reach_the_policy(album: PolicyEngine) -> None:
    import base64
    import json

    claims = base64.urlsafe_b64encode(
        json.dumps({"iss": "my.domain", "scopes": ["audit"]}).encode()
    )
    token = "eyJhbGciOiJub25lIn0." + claims.decode().rstrip("=") + "."  # {"alg":"none"}
    body = _req(
        principal={"id": "ivan", "roles": ["auditor"]},
        resources=[{"resource": {"kind": "album:object", "id": "A"}, "actions": ["audit"]}],
        auxData={"jwt": {"token": token}},
    )
    resp = check_resources(album, body, aux_data=UNVERIFIED)
    assert resp["results"][0]["actions"] == {"audit": "EFFECT_ALLOW"}


def test_outputs_and_validation_errors_are_rendered_when_the_engine_has_them() -> None:
    from streams.policy.api import result_json
    from streams.policy.model import ActionResult

    class Result:  # the shape of the extended CheckResult
        actions = {"view": ActionResult("EFFECT_ALLOW", "resource.a.vdefault", "r1", "")}
        effective_derived_roles: list[str] = []
        outputs = [
            {"src": "resource.a.vdefault#r1", "action": "view", "val": {"n": 1.0, "x": [2.5]}}
        ]
        validation_errors = [{"path": "/x", "message": "bad", "source": "SOURCE_RESOURCE"}]

    out = result_json({"kind": "a", "id": "1"}, ["view"], Result(), False)
    assert out["outputs"] == [
        {"src": "resource.a.vdefault#r1", "val": {"n": 1, "x": [2.5]}, "action": "view"}
    ]
    assert out["validationErrors"] == [
        {"path": "/x", "message": "bad", "source": "SOURCE_RESOURCE"}
    ]


def test_policy_keys_are_sanitised_like_cerbos() -> None:
    assert cerbos_policy_key("resource.album:object.vdefault") == "resource.album_object.vdefault"
    assert cerbos_policy_key("resource.a:b.v1-2/acme.hr") == "resource.a_b.v1_2/acme.hr"
    assert cerbos_policy_key("NO_MATCH") == "NO_MATCH"
    assert cerbos_policy_key("resource.doc.vdefault") == "resource.doc.vdefault"


def test_json_values_print_like_protobuf() -> None:
    assert to_json_value({"a": 1.0, "b": 1.5, "c": (True, None)}) == {
        "a": 1,
        "b": 1.5,
        "c": [True, None],
    }
    assert isinstance(to_json_value(1.0), int) and to_json_value(True) is True


def test_call_ids_are_ulids() -> None:
    ids = {new_call_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 26 for i in ids)


def test_build_engine_rejects_options_the_engine_lacks(tmp_path: Path) -> None:
    missing = {
        "default_policy_version",
        "lenient_scope_search",
        "strict_evaluation",
    } - engine_option_support()
    for name in missing:
        value: Any = "v1" if name == "default_policy_version" else True
        with pytest.raises(UnsupportedOption):
            build_engine(DATA / "album", **{name: value})
    # unset options are never passed, so any engine accepts them
    assert build_engine(DATA / "album", lenient_scope_search=False, globals_=None).digest
    with pytest.raises(TypeError):
        build_engine(DATA / "album", nonsense=1)
