"""Each check a SET must pass, with real keys: every kind of bad SET gets its RFC 8935 code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from streams.ssf.config import SsfConfig
from streams.ssf.jwks import KeyNotFound, KeySource
from streams.ssf.verify import SetRejected, SetVerifier
from tests.ssf.helpers import AUDIENCE, ISSUER, Signer, iss_sub, set_claims

SIGNER = Signer()
OTHER = Signer("other")


def _config(jwks_uri: str, algorithms: list[str] | None = None) -> SsfConfig:
    return SsfConfig.model_validate(
        {
            "audience": AUDIENCE,
            "transmitters": [
                {
                    "name": "idp",
                    "issuer": ISSUER,
                    "jwks_uri": jwks_uri,
                    "algorithms": algorithms or ["RS256", "ES256"],
                }
            ],
        }
    )


@pytest.fixture
def verifier(tmp_path: Path) -> SetVerifier:
    return SetVerifier(_config(str(SIGNER.write_jwks(tmp_path / "jwks.json"))))


def _unsigned(claims: dict[str, Any]) -> bytes:
    import base64

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(orjson.dumps({"alg": "none", "typ": "secevent+jwt"}))
    return header + b"." + b64(orjson.dumps(claims)) + b"."


async def test_valid_sets_verify_with_either_key(verifier: SetVerifier) -> None:
    for alg in ("ES256", "RS256"):
        claims = set_claims("session-revoked", {"event_timestamp": 1_700_000_000})
        verified = await verifier.verify(SIGNER.sign(claims, alg=alg))
        assert verified.event_name == "session-revoked" and verified.jti == claims["jti"]


def _bad_cases() -> list[tuple[str, bytes, str]]:
    good = set_claims("credential-change", {"credential_type": "password", "change_type": "update"})

    def with_(**changes: Any) -> dict[str, Any]:
        claims = dict(good, jti=f"{good['jti']}-{len(changes)}")
        for k, v in changes.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return claims

    cred = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
    revoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
    return [
        ("garbage", b"not.a.jws", "invalid_request"),
        ("alg none", _unsigned(good), "invalid_key"),
        ("alg not allowed", SIGNER.sign(good, alg="PS256"), "invalid_key"),
        ("wrong key", OTHER.sign(good), "invalid_key"),
        ("unknown kid", SIGNER.sign(good, header={"kid": "nope"}), "invalid_key"),
        ("typ", SIGNER.sign(good, header={"typ": "JWT"}), "invalid_request"),
        ("no typ", SIGNER.sign(good, header={"typ": None}), "invalid_request"),
        ("sub claim", SIGNER.sign(with_(sub="alice")), "invalid_request"),
        ("exp claim", SIGNER.sign(with_(exp=2_000_000_000)), "invalid_request"),
        ("issuer", SIGNER.sign(with_(iss="https://evil.example.com/")), "invalid_issuer"),
        ("audience", SIGNER.sign(with_(aud="https://other.example.com/")), "invalid_audience"),
        ("no jti", SIGNER.sign(with_(jti=None)), "invalid_request"),
        ("two events", SIGNER.sign(with_(events={cred: {}, revoked: {}})), "invalid_request"),
        ("no event", SIGNER.sign(with_(events={})), "invalid_request"),
        (
            "unknown event",
            SIGNER.sign(with_(events={"https://example.com/event": {}})),
            "invalid_request",
        ),
        (
            "payload enum",
            SIGNER.sign(with_(events={cred: {"credential_type": "password", "change_type": "x"}})),
            "invalid_request",
        ),
        (
            "payload missing",
            SIGNER.sign(with_(events={cred: {"change_type": "update"}})),
            "invalid_request",
        ),
        (
            "timestamp type",
            SIGNER.sign(with_(events={revoked: {"event_timestamp": "yesterday"}})),
            "invalid_request",
        ),
        ("no sub_id", SIGNER.sign(with_(sub_id=None)), "invalid_request"),
    ]


@pytest.mark.parametrize(("name", "token", "err"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
async def test_bad_sets_get_their_code(
    verifier: SetVerifier, name: str, token: bytes, err: str
) -> None:
    with pytest.raises(SetRejected) as info:
        await verifier.verify(token)
    assert info.value.err == err, info.value.description


async def test_enum_values_are_exact(verifier: SetVerifier) -> None:
    """Risk levels are uppercase and compliance is compliant/not-compliant, as the specs say."""
    for event, payload in [
        ("risk-level-change", {"principal": "USER", "current_level": "high"}),
        (
            "device-compliance-change",
            {"current_status": "noncompliant", "previous_status": "compliant"},
        ),
        ("account-disabled", {"reason": "vacation"}),
        (
            "assurance-level-change",
            {"namespace": "NIST-AAL", "current_level": "nist-aal2", "change_direction": "up"},
        ),
    ]:
        with pytest.raises(SetRejected) as info:
            await verifier.verify(SIGNER.sign(set_claims(event, payload, iss_sub("a"))))
        assert info.value.err == "invalid_request"


async def test_unknown_kid_refetches_at_most_once_per_interval() -> None:
    """A rotated key is found by refetching the JWKS; made-up kids cannot force refetches."""
    rotated = Signer("rotated")
    served: dict[str, Any] = {"jwks": SIGNER.jwks(), "hits": 0}

    async def jwks(request: web.Request) -> web.Response:
        served["hits"] += 1
        return web.json_response(served["jwks"])

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        config = _config(f"http://127.0.0.1:{port}/jwks")
        source = KeySource(config.transmitters[0].jwks_uri, min_refetch_seconds=3600)
        verifier = SetVerifier(config, {"idp": source})
        await verifier.verify(SIGNER.sign(set_claims("session-revoked")))
        assert served["hits"] == 1
        served["jwks"] = {"keys": SIGNER.jwks()["keys"] + rotated.jwks()["keys"]}
        for _ in range(3):  # within the interval: no refetch, the new kid stays unknown
            with pytest.raises(SetRejected):
                await verifier.verify(rotated.sign(set_claims("session-revoked")))
        assert served["hits"] == 1
        source.min_refetch_seconds = 0  # the interval has passed
        await verifier.verify(rotated.sign(set_claims("session-revoked")))
        assert served["hits"] == 2
    finally:
        await runner.cleanup()


async def test_jwks_shared_secret_keys_are_ignored(tmp_path: Path) -> None:
    """A JWKS listing an oct (shared secret) key next to a real one: only the real one is used,
    so the secret can never verify anything (HS* is refused by the config as well)."""
    from joserfc.jwk import OctKey

    secret = OctKey.generate_key(256, parameters={"kid": "shared"})
    path = tmp_path / "jwks.json"
    keys = [secret.as_dict(private=True), *SIGNER.jwks()["keys"]]
    path.write_bytes(orjson.dumps({"keys": keys}))
    source = KeySource(str(path))
    with pytest.raises(KeyNotFound):
        await source.key("shared")
    assert (await source.key(SIGNER.ec.kid)).kid == SIGNER.ec.kid
