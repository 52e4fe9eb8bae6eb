"""Key sets, tokens and a policy for the ``auxData.jwt`` tests: the same Cerbos ``auxData``
block is given to the stock PDP (its config file) and to Vigil (``--aux-data-config``)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

#: Rule ``read`` echoes the claims the policy saw as an output (``named``: those of named
#: tokens, ``auxData.jwts``); ``own`` needs ``sub == P.id`` and the ``vip`` group.
POLICY = """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  rules:
    - actions: [read]
      effect: EFFECT_ALLOW
      roles: ["*"]
      output:
        when:
          ruleActivated: request.auxData.jwt
    - actions: [own]
      effect: EFFECT_ALLOW
      roles: ["*"]
      condition:
        match:
          expr: request.auxData.jwt.sub == P.id && "vip" in request.auxData.jwt.groups
    - actions: [named]
      effect: EFFECT_ALLOW
      roles: ["*"]
      output:
        when:
          ruleActivated: request.auxData.jwts
"""

SKEW_SECONDS = 60  # wide margins around it: a slow machine must not flip a case


@dataclass
class Keys:
    """An EC P-384 key (kid ``k1``, ES384), an RSA key (kid ``r1``, RS256), and a stranger."""

    ec: ECKey
    rsa: RSAKey
    other: ECKey
    dir: Path

    def aux_data(self) -> dict[str, Any]:
        """The Cerbos ``auxData`` block with one key set per way of giving keys."""
        ec_public = {**self.ec.as_dict(private=False), "kid": "k1", "alg": "ES384"}
        rsa_public = {**self.rsa.as_dict(private=False), "kid": "r1", "alg": "RS256"}
        no_alg = {**self.ec.as_dict(private=False), "kid": "k1"}
        (self.dir / "ec.jwks").write_text(json.dumps({"keys": [ec_public]}))
        (self.dir / "single.jwk").write_text(json.dumps(ec_public))
        (self.dir / "noalg.jwks").write_text(json.dumps({"keys": [no_alg]}))
        stranger = {**self.other.as_dict(private=False), "kid": "k1", "alg": "ES384"}
        (self.dir / "dupkid.jwks").write_text(json.dumps({"keys": [stranger, ec_public]}))
        (self.dir / "ec.pem").write_bytes(self.ec.as_pem(private=False))
        (self.dir / "rsa-cert.pem").write_bytes(_certificate(self.rsa))
        rsa_data = base64.b64encode(json.dumps({"keys": [rsa_public]}).encode()).decode()
        d = str(self.dir)
        return {
            "jwt": {
                "acceptableTimeSkew": f"{SKEW_SECONDS}s",
                "keySets": [
                    {"id": "ec", "local": {"file": f"{d}/ec.jwks"}},
                    {"id": "rsa", "local": {"data": rsa_data}},
                    {"id": "single", "local": {"file": f"{d}/single.jwk"}},
                    {"id": "pem", "local": {"file": f"{d}/ec.pem", "pem": True}},
                    {
                        "id": "pem-insecure",
                        "local": {"file": f"{d}/ec.pem", "pem": True},
                        "insecure": {"optionalAlg": True, "optionalKid": True},
                    },
                    {
                        "id": "certificate",
                        "local": {"file": f"{d}/rsa-cert.pem", "pem": True},
                        "insecure": {"optionalAlg": True, "optionalKid": True},
                    },
                    {"id": "noalg", "local": {"file": f"{d}/noalg.jwks"}},
                    {"id": "dupkid", "local": {"file": f"{d}/dupkid.jwks"}},
                    {
                        "id": "noalg-insecure",
                        "local": {"file": f"{d}/noalg.jwks"},
                        "insecure": {"optionalAlg": True},
                    },
                ],
            }
        }


def _certificate(key: RSAKey) -> bytes:
    """A self-signed PEM certificate of ``key`` (a PEM key set may hold certificates)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key)
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key.private_key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


def make_keys(directory: Path) -> Keys:
    directory.mkdir(parents=True, exist_ok=True)
    return Keys(
        ec=ECKey.generate_key("P-384"),
        rsa=RSAKey.generate_key(2048),
        other=ECKey.generate_key("P-384"),
        dir=directory,
    )


def write_config(path: Path, aux_data: dict[str, Any]) -> Path:
    """``aux_data`` as Vigil's ``--aux-data-config`` file (the block under ``auxData:``)."""
    path.write_text(yaml.safe_dump({"auxData": aux_data}))
    return path


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "alice",
        "iss": "https://idp.example",
        "aud": "vigil",
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "groups": ["vip", "staff"],
        "level": 3,
        "ratio": 1.5,
        "profile": {"team": "blue", "tags": [1, "x", None]},
        "admin": False,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v != "<drop>"}


def sign(key: Any, body: dict[str, Any], alg: str = "ES384", kid: str | None = "k1") -> str:
    header = {"alg": alg, **({"kid": kid} if kid else {})}
    return jws.serialize_compact(header, json.dumps(body).encode(), key, algorithms=[alg])


def unsigned(body: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """A token nobody signed (``alg: none`` unless ``header`` says otherwise)."""

    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part(header if header is not None else {'alg': 'none'})}.{part(body)}."


def check_request(
    token: str | None, key_set_id: str = "", actions: tuple[str, ...] = ("read", "own")
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestId": "jwt",
        "principal": {"id": "alice", "roles": ["user"]},
        "resources": [{"resource": {"kind": "doc", "id": "d1"}, "actions": list(actions)}],
        "includeMeta": True,
    }
    if token is not None:
        jwt = {"token": token, **({"keySetId": key_set_id} if key_set_id else {})}
        body["auxData"] = {"jwt": jwt}
    return body


def plan_request(token: str, key_set_id: str = "") -> dict[str, Any]:
    jwt = {"token": token, **({"keySetId": key_set_id} if key_set_id else {})}
    return {
        "requestId": "plan",
        "action": "own",
        "principal": {"id": "alice", "roles": ["user"]},
        "resource": {"kind": "doc"},
        "auxData": {"jwt": jwt},
        "includeMeta": True,
    }


class JwksServer:
    """A JWKS served over HTTP by aiohttp on a free port, in a thread of its own (so that
    synchronous tests and the stock PDP can fetch it); ``body`` can be changed (rotation) and
    ``status`` set to make fetches fail."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.status = 200
        self.url = ""
        self._loop: Any = None
        self._runner: Any = None

    async def _serve(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.body, status=self.status)

    def __enter__(self) -> JwksServer:
        import asyncio
        import threading

        from aiohttp import web

        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/keys.jwks", self._serve)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}/keys.jwks"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(30)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


def jwks(key: Any, kid: str = "k1", alg: str = "ES384") -> dict[str, Any]:
    return {"keys": [{**key.as_dict(private=False), "kid": kid, "alg": alg}]}
