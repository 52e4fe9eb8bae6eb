"""Differential: ``auxData.jwt`` tokens verified by Vigil and by the stock Cerbos PDP 0.55, both
given the same Cerbos ``auxData`` block (the PDP in its config file, Vigil as
``--aux-data-config``). Same decisions and the same claims (echoed by a rule output) for good
tokens; for bad ones the same status and code, Vigil's message adding the reason to Cerbos'
``invalid auxData``. Covers ``keySetId`` selection (several key sets, one, none),
``disableVerification``, JWKS/single JWK/base64 data/PEM key sets, ``insecure`` options, and
the time claims with ``acceptableTimeSkew``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.policy import PolicyEngine
from streams.policy.api import RequestError, check_resources
from streams.policy.auxdata import AuxDataVerifier, fetch_remote_key_sets
from streams.policy.planner import plan_resources
from tests.external_tools import cerbos_binary
from tests.policy.test_differential import _server
from tests.policy_tools.helpers import post_check, strip_response, vigil
from tests.policy_tools.jwt_keys import (
    POLICY,
    SKEW_SECONDS,
    JwksServer,
    Keys,
    check_request,
    claims,
    jwks,
    make_keys,
    plan_request,
    sign,
    unsigned,
    write_config,
)

Case = Callable[[Keys], tuple[str, str]]  # keys -> (token, keySetId)

#: name -> token and key set id, made when the case runs (the time claims are relative to now)
CASES: dict[str, Case] = {
    "valid": lambda k: (sign(k.ec, claims()), "ec"),
    "valid, no keySetId": lambda k: (sign(k.ec, claims()), ""),
    "unknown keySetId": lambda k: (sign(k.ec, claims()), "nope"),
    "wrong key": lambda k: (sign(k.other, claims()), "ec"),
    "tampered claims": lambda k: (_tamper(sign(k.ec, claims())), "ec"),
    "expired": lambda k: (sign(k.ec, claims(exp=_ago(3600))), "ec"),
    "expired within skew": lambda k: (sign(k.ec, claims(exp=_ago(SKEW_SECONDS // 3))), "ec"),
    "expired beyond skew": lambda k: (sign(k.ec, claims(exp=_ago(SKEW_SECONDS * 3))), "ec"),
    "exp 0": lambda k: (sign(k.ec, claims(exp=0)), "ec"),
    "exp as a numeric string": lambda k: (sign(k.ec, claims(exp=str(_ago(-3600)))), "ec"),
    "exp with a fraction": lambda k: (sign(k.ec, claims(exp=_ago(-3600) + 0.75)), "ec"),
    "no exp": lambda k: (sign(k.ec, claims(exp="<drop>")), "ec"),
    "nbf in the future": lambda k: (sign(k.ec, claims(nbf=_ago(-3600))), "ec"),
    "nbf within skew": lambda k: (sign(k.ec, claims(nbf=_ago(-SKEW_SECONDS // 3))), "ec"),
    "iat in the future": lambda k: (sign(k.ec, claims(iat=_ago(-3600))), "ec"),
    "aud list": lambda k: (sign(k.ec, claims(aud=["a", "b"])), "ec"),
    "aud a number": lambda k: (sign(k.ec, claims(aud=3)), "ec"),
    "sub a number": lambda k: (sign(k.ec, claims(sub=3)), "ec"),
    "null claim": lambda k: (sign(k.ec, claims(gone=None)), "ec"),
    "other sub": lambda k: (sign(k.ec, claims(sub="bob")), "ec"),
    "no kid": lambda k: (sign(k.ec, claims(), kid=None), "ec"),
    "unknown kid": lambda k: (sign(k.ec, claims(), kid="k9"), "ec"),
    "rsa from base64 data": lambda k: (sign(k.rsa, claims(), "RS256", "r1"), "rsa"),
    "alg other than the key's": lambda k: (sign(k.rsa, claims(), "PS256", "r1"), "rsa"),
    "single JWK file": lambda k: (sign(k.ec, claims()), "single"),
    "PEM without insecure options": lambda k: (sign(k.ec, claims(), kid=None), "pem"),
    "PEM, optionalKid and optionalAlg": lambda k: (sign(k.ec, claims(), kid=None), "pem-insecure"),
    "PEM insecure, token with a kid": lambda k: (sign(k.ec, claims()), "pem-insecure"),
    "PEM insecure, wrong key": lambda k: (sign(k.other, claims(), kid=None), "pem-insecure"),
    "PEM certificate": lambda k: (sign(k.rsa, claims(), "RS256", None), "certificate"),
    "PEM certificate, PS256": lambda k: (sign(k.rsa, claims(), "PS256", None), "certificate"),
    "key without alg": lambda k: (sign(k.ec, claims()), "noalg"),
    "key without alg, optionalAlg": lambda k: (sign(k.ec, claims()), "noalg-insecure"),
    "second key with the kid": lambda k: (sign(k.ec, claims()), "dupkid"),
    "first key with the kid": lambda k: (sign(k.other, claims()), "dupkid"),
    "alg none": lambda k: (unsigned(claims()), "ec"),
    "no alg at all": lambda k: (unsigned(claims(), header={}), "ec"),
    "unknown alg": lambda k: (unsigned(claims(), header={"alg": "XX999"}), "ec"),
    "not a JWT": lambda k: ("a.b.c", "ec"),
    "two parts": lambda k: (sign(k.ec, claims()).rsplit(".", 1)[0], "ec"),
}

#: Fewer cases for the other configurations (what changes there is the key set choice)
SHORT = [
    "valid",
    "valid, no keySetId",
    "unknown keySetId",
    "wrong key",
    "expired",
    "expired within skew",
    "alg none",
    "no alg at all",
    "unknown alg",
    "not a JWT",
]


def _ago(seconds: int) -> int:
    import time

    return int(time.time()) - seconds


def _tamper(token: str) -> str:
    import base64

    head, _, sig = token.split(".")
    body = base64.urlsafe_b64encode(json.dumps(claims(sub="mallory")).encode()).decode()
    return f"{head}.{body.rstrip('=')}.{sig}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Keys, PolicyEngine]]:
    root = tmp_path_factory.mktemp("auxjwt")
    policies = root / "policies"
    policies.mkdir()
    (policies / "doc.yaml").write_text(POLICY)
    yield root, make_keys(root / "keys"), PolicyEngine.from_directory(policies)


def _ours(
    engine: PolicyEngine, verifier: AuxDataVerifier, body: dict[str, Any], plan: bool = False
) -> tuple[int, Any]:
    try:
        if plan:
            return 200, plan_resources(engine, body, call_id="x", aux_data=verifier)
        return 200, check_resources(engine, body, aux_data=verifier)
    except RequestError as exc:
        return 400, exc.body()


def _same(name: str, ours: tuple[int, Any], theirs: tuple[int, Any]) -> None:
    assert ours[0] == theirs[0], (name, ours, theirs)
    if theirs[0] == 200:
        assert strip_response(ours[1]) == strip_response(theirs[1]), name
        return
    assert ours[1]["code"] == theirs[1]["code"] == 3, (name, ours, theirs)
    if theirs[1]["message"] == "invalid auxData":  # Vigil adds the reason
        assert ours[1]["message"].startswith("invalid auxData: "), (name, ours)
    else:
        assert ours[1]["message"] == theirs[1]["message"], (name, ours, theirs)


def _compare(
    root: Path, keys: Keys, engine: PolicyEngine, aux_data: dict[str, Any] | None, names: list[str]
) -> dict[str, int]:
    """Run the cases against a PDP configured with ``aux_data`` and against Vigil; returns the
    stock PDP's status per case (so tests can also assert what Cerbos did)."""
    label = "none" if aux_data is None else str(abs(hash(json.dumps(aux_data))))
    tmp = root / f"pdp-{label}"
    tmp.mkdir()
    if aux_data is None:
        verifier = AuxDataVerifier()
    else:
        verifier = AuxDataVerifier.from_file(write_config(tmp / "aux.yaml", aux_data))
    statuses: dict[str, int] = {}
    with _server(cerbos_binary(), engine_dir(root), tmp, {}, aux_data=aux_data) as url:
        for name in names:
            token, ks = CASES[name](keys)
            body = check_request(token, ks)
            theirs = post_check(url, body)
            _same(name, _ours(engine, verifier, body), theirs)
            statuses[name] = theirs[0]
    return statuses


def _post_plan(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{url}/api/plan/resources",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def engine_dir(root: Path) -> Path:
    return root / "policies"


def test_several_key_sets_match_stock_cerbos(setup: tuple[Path, Keys, PolicyEngine]) -> None:
    root, keys, engine = setup
    statuses = _compare(root, keys, engine, keys.aux_data(), list(CASES))
    # the cases exercise both outcomes as intended (a case that always passes tests nothing)
    accepted = {n for n, s in statuses.items() if s == 200}
    assert accepted == {
        "valid",
        "expired within skew",
        "exp as a numeric string",
        "exp with a fraction",
        "no exp",
        "nbf within skew",
        "aud list",
        "null claim",
        "other sub",
        "rsa from base64 data",
        "single JWK file",
        "PEM, optionalKid and optionalAlg",
        "PEM insecure, token with a kid",
        "key without alg, optionalAlg",
        "first key with the kid",  # only the first key with the token's kid is tried
        "PEM certificate",
        "PEM certificate, PS256",  # optionalAlg: any algorithm of the key's type
    }


def test_one_key_set_is_the_default(setup: tuple[Path, Keys, PolicyEngine]) -> None:
    root, keys, engine = setup
    only = {"jwt": {"keySets": keys.aux_data()["jwt"]["keySets"][:1]}}
    statuses = _compare(root, keys, engine, only, SHORT)
    assert statuses["valid, no keySetId"] == 200 and statuses["unknown keySetId"] == 400
    assert statuses["expired within skew"] == 400  # no acceptableTimeSkew here


def test_disable_verification(setup: tuple[Path, Keys, PolicyEngine]) -> None:
    root, keys, engine = setup
    statuses = _compare(root, keys, engine, {"jwt": {"disableVerification": True}}, SHORT)
    assert statuses["wrong key"] == statuses["alg none"] == 200  # signature not checked
    assert statuses["expired"] == statuses["not a JWT"] == 400  # claims still are


def test_without_configuration_every_token_is_refused(
    setup: tuple[Path, Keys, PolicyEngine],
) -> None:
    root, keys, engine = setup
    statuses = _compare(root, keys, engine, None, SHORT)
    assert set(statuses.values()) == {400}


def test_requests_without_a_token(setup: tuple[Path, Keys, PolicyEngine]) -> None:
    root, keys, engine = setup
    verifier = AuxDataVerifier.from_file(write_config(root / "plain.yaml", keys.aux_data()))
    bodies = {
        "no auxData": check_request(None),
        "empty auxData": {**check_request(None), "auxData": {}},
        "jwt without token": {**check_request(None), "auxData": {"jwt": {"keySetId": "ec"}}},
        "empty token": {**check_request(None), "auxData": {"jwt": {"token": ""}}},
    }
    with _server(cerbos_binary(), engine_dir(root), root, {}, aux_data=keys.aux_data()) as url:
        for name, body in bodies.items():
            _same(name, _ours(engine, verifier, body), post_check(url, body))


def test_named_tokens_and_sdk_shapes(setup: tuple[Path, Keys, PolicyEngine]) -> None:
    """``auxData.jwts`` (named tokens, each verified) and the Python SDK's request shape
    (``"keySetId": null``, ``"jwts": null``)."""
    root, keys, engine = setup
    aux = keys.aux_data()
    verifier = AuxDataVerifier.from_file(write_config(root / "named.yaml", aux))
    good = {"token": sign(keys.ec, claims()), "keySetId": "ec"}
    rsa = {"token": sign(keys.rsa, claims(sub="bob"), "RS256", "r1"), "keySetId": "rsa"}
    bad = {"token": sign(keys.other, claims()), "keySetId": "ec"}
    shapes: dict[str, Any] = {
        "two named tokens": {"jwts": {"idp": good, "partner": rsa}},
        "one named token refused": {"jwts": {"idp": good, "partner": bad}},
        "named token without keySetId": {"jwts": {"idp": {"token": good["token"]}}},
        "named token without token": {"jwts": {"idp": {"keySetId": "ec"}}},
        "empty name": {"jwts": {"": good}},
        "jwt and jwts": {"jwt": good, "jwts": {"idp": good}},
        "jwt null, jwts": {"jwt": None, "jwts": {"idp": good}},
        "sdk: jwts null": {"jwt": good, "jwts": None},
        "sdk: keySetId null": {"jwt": {"token": good["token"], "keySetId": None}, "jwts": None},
        "jwts empty": {"jwt": good, "jwts": {}},
    }
    tmp = root / "pdp-named"
    tmp.mkdir()
    with _server(cerbos_binary(), engine_dir(root), tmp, {}, aux_data=aux) as url:
        for name, aux_data in shapes.items():
            body = {**check_request(None, actions=("read", "own", "named")), "auxData": aux_data}
            theirs = post_check(url, body)
            _same(name, _ours(engine, verifier, body), theirs)
            if name == "two named tokens":
                assert theirs[0] == 200, theirs


def test_remote_key_set_matches_stock_cerbos(setup: tuple[Path, Keys, PolicyEngine]) -> None:
    """A key set fetched from a JWKS URL (Cerbos ``remote``), served by a local aiohttp
    server to both; Vigil's policy tools fetch it once at start."""
    root, keys, engine = setup
    with JwksServer(jwks(keys.ec)) as server:
        aux = {"jwt": {"keySets": [{"id": "idp", "remote": {"url": server.url}}]}}
        verifier = AuxDataVerifier.from_file(write_config(root / "remote.yaml", aux))
        assert fetch_remote_key_sets(verifier) == []
        tmp = root / "pdp-remote"
        tmp.mkdir()
        with _server(cerbos_binary(), engine_dir(root), tmp, {}, aux_data=aux) as url:
            cases = {
                "valid": check_request(sign(keys.ec, claims())),
                "named key set": check_request(sign(keys.ec, claims()), "idp"),
                "wrong key": check_request(sign(keys.other, claims())),
                "unknown kid": check_request(sign(keys.ec, claims(), kid="k9")),
                "expired": check_request(sign(keys.ec, claims(exp=_ago(3600)))),
            }
            for name, body in cases.items():
                theirs = post_check(url, body)
                _same(name, _ours(engine, verifier, body), theirs)
            assert post_check(url, cases["valid"])[0] == 200
    # a JWKS that cannot be fetched: said once, and its tokens are refused
    unreachable = {"jwt": {"keySets": [{"id": "idp", "remote": {"url": server.url}}]}}
    verifier = AuxDataVerifier.from_file(write_config(root / "gone.yaml", unreachable))
    (problem,) = fetch_remote_key_sets(verifier, timeout=5)
    assert "idp" in problem and server.url in problem
    status, body = _ours(engine, verifier, cases["valid"])
    assert (status, body["code"]) == (400, 3) and "not fetched" in body["message"]


def test_plan_with_a_token_matches_stock_cerbos(setup: tuple[Path, Keys, PolicyEngine]) -> None:
    root, keys, engine = setup
    aux = keys.aux_data()
    verifier = AuxDataVerifier.from_file(write_config(root / "plan.yaml", aux))
    tmp = root / "pdp-plan"
    tmp.mkdir()
    with _server(cerbos_binary(), engine_dir(root), tmp, {}, aux_data=aux) as url:
        for name in ("valid", "other sub", "wrong key", "expired", "unknown keySetId"):
            token, ks = CASES[name](keys)
            body = plan_request(token, ks)
            theirs = _post_plan(url, body)
            _same(name, _ours(engine, verifier, body, plan=True), theirs)


def test_policy_eval_and_plan_commands_verify_tokens(
    setup: tuple[Path, Keys, PolicyEngine],
) -> None:
    root, keys, engine = setup
    aux = keys.aux_data()
    config = write_config(root / "cli.yaml", aux)
    lines = [
        check_request(*CASES["valid"](keys)),
        check_request(*CASES["expired"](keys)),
        check_request(*CASES["wrong key"](keys)),
    ]
    tmp = root / "pdp-cli"
    tmp.mkdir()
    with _server(cerbos_binary(), engine_dir(root), tmp, {}, aux_data=aux) as url:
        theirs = [post_check(url, body) for body in lines]
        done = vigil(
            "policy",
            "eval",
            str(engine_dir(root)),
            "--aux-data-config",
            str(config),
            stdin="\n".join(json.dumps(b) for b in lines) + "\n",
        )
        assert done.returncode == 1, done.stderr  # two lines refused
        replies = [json.loads(line) for line in done.stdout.splitlines()]
        for body, reply, stock in zip(lines, replies, theirs, strict=True):
            status = 400 if "code" in reply else 200
            reply.pop("line", None)
            _same(json.dumps(body)[:60], (status, reply), stock)
        plans = [plan_request(*CASES["valid"](keys)), plan_request(*CASES["expired"](keys))]
        done = vigil(
            "policy",
            "plan",
            str(engine_dir(root)),
            "--aux-data-config",
            str(config),
            stdin="\n".join(json.dumps(b) for b in plans) + "\n",
        )
        replies = [json.loads(line) for line in done.stdout.splitlines()]
        assert replies[0]["filter"] == {"kind": "KIND_ALWAYS_ALLOWED"}, replies
        assert replies[1]["code"] == 3 and replies[1]["message"].startswith("invalid auxData: ")
    # a bad configuration file stops the command before any request is read
    bad = root / "bad.yaml"
    bad.write_text("auxData:\n  jwt:\n    keySets:\n      - id: ks\n        locl: {file: x}\n")
    done = vigil("policy", "eval", str(engine_dir(root)), "--aux-data-config", str(bad), stdin="")
    assert done.returncode == 2 and "locl" in done.stderr, done.stderr
