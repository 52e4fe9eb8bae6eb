"""Real JOSE for the Shared Signals tests: keys generated here, SETs signed with joserfc."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import orjson
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from streams.ssf.events import CAEP, RISC

ISSUER = "https://idp.example.com/"
AUDIENCE = "https://vigil.example.com/"
_counter = itertools.count(1)


class Signer:
    """A transmitter's signing keys (EC P-256 and RSA), and its public JWKS."""

    def __init__(self, prefix: str = "k") -> None:
        self.ec = ECKey.generate_key("P-256", parameters={"kid": f"{prefix}-ec"})
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": f"{prefix}-rsa"})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.ec.as_dict(private=False), self.rsa.as_dict(private=False)]}

    def write_jwks(self, path: Path) -> Path:
        path.write_bytes(orjson.dumps(self.jwks()))
        return path

    def sign(
        self, claims: dict[str, Any], *, alg: str = "ES256", header: dict[str, Any] | None = None
    ) -> bytes:
        key = self.ec if alg.startswith("ES") else self.rsa
        protected = {"alg": alg, "kid": key.kid, "typ": "secevent+jwt", **(header or {})}
        protected = {k: v for k, v in protected.items() if v is not None}
        return jws.serialize_compact(
            protected, orjson.dumps(claims), key, algorithms=[alg]
        ).encode()


def set_claims(
    event: str,
    payload: dict[str, Any] | None = None,
    sub_id: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Claims of a SET about ``sub_id`` (default: user alice) with one event; ``event`` is the
    short name (``session-revoked``) or a full URI."""
    uri = event if "://" in event else (RISC if event in RISC_NAMES else CAEP) + event
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "jti": f"jti-{next(_counter)}-{time.monotonic_ns()}",
        "iat": int(time.time()),
        "aud": AUDIENCE,
        "sub_id": sub_id or iss_sub("alice"),
        "events": {uri: payload if payload is not None else {}},
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


RISC_NAMES = frozenset(
    {
        "account-disabled",
        "account-enabled",
        "account-purged",
        "credential-compromise",
        "account-credential-change-required",
        "identifier-changed",
        "identifier-recycled",
        "sessions-revoked",
    }
)


def iss_sub(sub: str) -> dict[str, Any]:
    return {"format": "iss_sub", "iss": ISSUER, "sub": sub}


def opaque(value: str) -> dict[str, Any]:
    return {"format": "opaque", "id": value}


def jwt_id(jti: str) -> dict[str, Any]:
    return {"format": "jwt_id", "iss": ISSUER, "jti": jti}


def complex_(**members: dict[str, Any]) -> dict[str, Any]:
    return {"format": "complex", **members}


def config_yaml(jwks_uri: str, **transmitter: Any) -> str:
    """An --ssf-config file with one transmitter ``idp``."""
    import yaml

    entry = {
        "name": "idp",
        "issuer": ISSUER,
        "jwks_uri": jwks_uri,
        "algorithms": ["RS256", "ES256"],
        "delivery": "push",
        **transmitter,
    }
    return yaml.safe_dump({"audience": AUDIENCE, "transmitters": [entry], "receivers": []})
