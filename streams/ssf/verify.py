"""Checks one Security Event Token (RFC 8417 as profiled by SSF 1.0) end to end.

Every failure is a ``SetRejected`` carrying the RFC 8935 error code, so push answers and poll
``setErrs`` say the same thing for the same SET. Order: parse, transmitter by ``iss``,
algorithm allow-list, key by ``kid``, signature, then the claims.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import JoseError
from pydantic import BaseModel

from streams.ssf.config import SsfConfig, Transmitter
from streams.ssf.events import STREAM_EVENTS, EventInvalid, parse_event
from streams.ssf.jwks import KeyNotFound, KeySource

# RFC 8935 section 2.4 (registered in RFC 8935 section 7.1)
INVALID_REQUEST = "invalid_request"
INVALID_KEY = "invalid_key"
INVALID_ISSUER = "invalid_issuer"
INVALID_AUDIENCE = "invalid_audience"
AUTHENTICATION_FAILED = "authentication_failed"
ACCESS_DENIED = "access_denied"
ERROR_CODES = (
    INVALID_REQUEST,
    INVALID_KEY,
    INVALID_ISSUER,
    INVALID_AUDIENCE,
    AUTHENTICATION_FAILED,
    ACCESS_DENIED,
)
SET_TYPES = frozenset({"secevent+jwt", "application/secevent+jwt"})
MAX_SET_BYTES = 64 * 1024


class SetRejected(Exception):
    def __init__(self, err: str, description: str) -> None:
        super().__init__(f"{err}: {description}")
        self.err = err
        self.description = description

    def body(self) -> dict[str, str]:
        return {"err": self.err, "description": self.description}


@dataclass(frozen=True, slots=True)
class VerifiedSet:
    transmitter: Transmitter
    claims: dict[str, Any]
    event_uri: str
    event_name: str
    event: BaseModel
    digest: str  # of the claims, canonical: a redelivery re-signed still has the same digest

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def iss(self) -> str:
        return str(self.claims["iss"])

    @property
    def is_stream_event(self) -> bool:
        return self.event_uri in STREAM_EVENTS


def _extract(token: bytes) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    if len(token) > MAX_SET_BYTES:
        raise SetRejected(INVALID_REQUEST, f"SET larger than {MAX_SET_BYTES} bytes")
    try:
        compact = jws.extract_compact(token.strip())
        header = dict(compact.headers())
        claims = orjson.loads(compact.payload)
    except (JoseError, ValueError, TypeError) as exc:
        raise SetRejected(INVALID_REQUEST, f"not a compact JWS SET: {exc}") from None
    if not isinstance(claims, dict):
        raise SetRejected(INVALID_REQUEST, "the SET's claims are not a JSON object")
    return compact, header, claims


def peek_claims(token: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified (to find the transmitter)."""
    _, header, claims = _extract(token)
    return header, claims


def claims_digest(claims: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS)).hexdigest()


class SetVerifier:
    def __init__(self, config: SsfConfig, keys: dict[str, KeySource] | None = None) -> None:
        self.config = config
        self.keys = keys or {t.name: KeySource(t.jwks_uri) for t in config.transmitters}

    def transmitter(self, claims: dict[str, Any]) -> Transmitter:
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise SetRejected(INVALID_REQUEST, "the SET has no 'iss' claim")
        transmitter = self.config.transmitter_for(iss)
        if transmitter is None:
            raise SetRejected(INVALID_ISSUER, f"issuer {iss!r} is not a configured transmitter")
        return transmitter

    async def verify(self, token: bytes, transmitter: Transmitter | None = None) -> VerifiedSet:
        compact, header, claims = _extract(token)  # parsed once, verified below
        found = self.transmitter(claims)
        if transmitter is not None and found.name != transmitter.name:
            raise SetRejected(
                INVALID_ISSUER, f"issuer {found.issuer!r} is not transmitter {transmitter.name!r}"
            )
        alg = header.get("alg")
        if alg not in found.algorithms:
            raise SetRejected(
                INVALID_KEY,
                f"algorithm {alg!r} is not allowed for transmitter {found.name!r} "
                f"(allowed: {', '.join(found.algorithms)}; never 'none')",
            )
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in SET_TYPES:
            raise SetRejected(INVALID_REQUEST, f"JWS header typ {typ!r} is not 'secevent+jwt'")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise SetRejected(INVALID_REQUEST, "JWS header kid must be a string")
        try:
            key = await self.keys[found.name].key(kid)
        except KeyNotFound as exc:
            raise SetRejected(INVALID_KEY, str(exc)) from None
        try:
            valid = jws.validate_compact(compact, key, algorithms=[alg])
        except JoseError as exc:
            raise SetRejected(INVALID_KEY, f"signature does not verify: {exc}") from None
        if not valid:
            raise SetRejected(INVALID_KEY, "signature does not verify")
        return self._check_claims(found, claims)

    def _check_claims(self, transmitter: Transmitter, claims: dict[str, Any]) -> VerifiedSet:
        for banned in ("sub", "exp"):
            if banned in claims:
                raise SetRejected(INVALID_REQUEST, f"a SET must not carry the '{banned}' claim")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 1 <= len(jti) <= 256:
            raise SetRejected(INVALID_REQUEST, "'jti' must be a string of 1..256 characters")
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool) or not 0 <= iat < 2**34:
            raise SetRejected(INVALID_REQUEST, "'iat' must be a NumericDate")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if self.config.audience not in auds:
            raise SetRejected(
                INVALID_AUDIENCE, f"'aud' {aud!r} does not contain {self.config.audience!r}"
            )
        events = claims.get("events")
        if not isinstance(events, dict) or len(events) != 1:
            count = len(events) if isinstance(events, dict) else "no"
            raise SetRejected(
                INVALID_REQUEST, f"a SET must carry exactly one event ('events' has {count})"
            )
        ((uri, payload),) = events.items()
        try:
            name, event = parse_event(uri, payload)
        except EventInvalid as exc:
            raise SetRejected(INVALID_REQUEST, str(exc)) from None
        if uri not in STREAM_EVENTS and "sub_id" not in claims:
            raise SetRejected(INVALID_REQUEST, "the SET has no 'sub_id' claim")
        return VerifiedSet(transmitter, claims, uri, name, event, claims_digest(claims))
