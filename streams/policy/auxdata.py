"""Cerbos ``auxData.jwt``: verify a request's JWT and give its claims to policies.

The stock Cerbos PDP reads ``auxData.jwt.token`` (and ``keySetId``) from a check or plan
request, verifies the token against the key sets of its ``auxData.jwt`` configuration, and
exposes the claims as ``request.auxData.jwt`` (named tokens, ``auxData.jwts``, as
``request.auxData.jwts.<name>.claims``; `streams.policy.api.verified_aux_data`). This module
verifies one token as the PDP does, measured against the stock PDP 0.55
(tests/policy_tools/test_auxdata_vs_cerbos.py):

* key set: ``keySetId`` names one; without it the only configured key set is used, and with
  none or several the token is refused;
* key: the token's ``kid`` selects the first key with that ``kid`` (required unless the key
  set has ``insecure.optionalKid``, then every key is tried); the key's ``alg`` must equal the
  token's (a key without ``alg`` is usable only with ``insecure.optionalAlg``: any algorithm
  of its key type); ``alg: none`` never verifies;
* claims: ``exp``, ``nbf`` and ``iat`` are checked against the evaluation time with
  ``acceptableTimeSkew`` (also when ``disableVerification`` skips the signature); ``iss``,
  ``sub``, ``jti`` must be strings and ``aud`` a string or a list of strings;
* exposure: ``exp``/``nbf``/``iat`` become RFC 3339 UTC strings (whole seconds), ``aud``
  always a list, top-level ``null`` claims are dropped, everything else as JSON.

A refused token is an `AuxDataRejected` with a message and a short, bounded ``reason`` label
(`streams.policy.api` turns it into Cerbos' ``invalid auxData`` error: HTTP 400, gRPC code 3). The
configuration file is validated whole at startup: a local key set that cannot be read stops
the worker instead of failing every request later (the stock PDP only logs it). Remote key
sets (``remote.url``) are fetched by whoever runs the verifier (`RemoteKeySet`); their tokens
are refused until then.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: JWS algorithms the stock PDP's JOSE library knows; a token with another ``alg`` is not
#: parsed at all (not even with ``disableVerification``).
_KNOWN_ALGORITHMS = frozenset(
    {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    | {"ES256", "ES384", "ES512", "ES256K", "EdDSA", "Ed25519", "none"}
)
_STRING_CLAIMS = ("iss", "sub", "jti")
_TIME_CLAIMS = ("exp", "nbf", "iat")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.S)


#: Refresh interval of a remote key set without ``refreshInterval`` (Vigil's choice), and the
#: shortest one allowed.
DEFAULT_REFRESH_SECONDS = 15 * 60.0
MIN_REFRESH_SECONDS = 1.0
MAX_JWKS_BYTES = 512 * 1024


class AuxDataConfigError(ValueError):
    """The auxData configuration file is not exactly valid (with the file and the problem)."""


class AuxDataRejected(ValueError):
    """A token the stock PDP would refuse; ``reason`` is a bounded label (metrics)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_go_duration(value: str) -> float:
    """A Go duration (``2s``, ``1m30s``, ``500ms``; ``0``) in seconds, as Cerbos writes them."""
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"not a duration: {value!r} (e.g. 2s, 1m30s, 500ms)")
    return total


# -- configuration: Cerbos' auxData block -----------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Local(_Strict):
    file: str = ""
    data: str = ""
    pem: bool = False


class _Remote(_Strict):
    url: str = Field(min_length=1)
    refreshInterval: str = ""  # noqa: N815 (Cerbos' field name)


class _Insecure(_Strict):
    optionalAlg: bool = False  # noqa: N815
    optionalKid: bool = False  # noqa: N815


class _KeySet(_Strict):
    id: str = Field(min_length=1)
    local: _Local | None = None
    remote: _Remote | None = None
    insecure: _Insecure = _Insecure()

    @model_validator(mode="after")
    def _one_source(self) -> _KeySet:
        if (self.local is None) == (self.remote is None):
            raise ValueError(f"keyset {self.id!r}: exactly one of `local` or `remote` is needed")
        if self.remote is not None:
            if not self.remote.url.startswith(("http://", "https://")):
                raise ValueError(f"keyset {self.id!r}: remote URL must be http(s)")
            if self.remote.refreshInterval:
                refresh = parse_go_duration(self.remote.refreshInterval)
                if refresh < MIN_REFRESH_SECONDS:
                    raise ValueError(
                        f"keyset {self.id!r}: refreshInterval below {MIN_REFRESH_SECONDS:g}s"
                    )
        elif self.local is not None and bool(self.local.file) == bool(self.local.data):
            raise ValueError(
                f"keyset {self.id!r}: exactly one of 'local.data' or 'local.file' must be defined"
            )
        return self


class _Jwt(_Strict):
    keySets: list[_KeySet] = []  # noqa: N815
    disableVerification: bool = False  # noqa: N815
    cacheSize: int = 0  # noqa: N815 (accepted; Vigil has no token cache)
    acceptableTimeSkew: float = 0.0  # noqa: N815

    @field_validator("acceptableTimeSkew", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = parse_go_duration(value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a duration such as 2s")
        elif value != 0:
            raise ValueError("must be a duration with a unit, such as 2s")
        if value < 0:
            raise ValueError("acceptableTimeSkew must be positive")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> _Jwt:
        ids = [ks.id for ks in self.keySets]
        for ks_id in ids:
            if ids.count(ks_id) > 1:
                raise ValueError(f"duplicate keyset id {ks_id!r}")
        return self


class _AuxData(_Strict):
    jwt: _Jwt | None = None


class _File(_Strict):
    auxData: _AuxData  # noqa: N815


# -- key sets ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Keys:
    """One configured key set with the stock PDP's key-selection options. A remote one
    (``url``) starts empty; `RemoteKeySet.install` swaps its keys in whole."""

    keys: tuple[Any, ...]
    require_kid: bool
    infer_alg: bool
    url: str = ""
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS


@dataclass(frozen=True, slots=True)
class RemoteKeySet:
    """A key set fetched from a JWKS URL (Cerbos ``remote``). Whoever runs the verifier fetches
    it (`streams.web.aux_keys` in a worker, `fetch_remote_key_sets` in the policy tools) and
    calls `install`; until then, and while fetches fail, its tokens are refused."""

    id: str
    url: str
    refresh_seconds: float
    _keys: _Keys

    def install(self, body: bytes) -> int:
        """Replace the keys with those of a fetched JWKS; raises ``ValueError`` (the keys we
        had stay) for a body that is not one. Returns the number of keys."""
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        try:
            keys = tuple(_import_jwk_data(body))
        except (JoseError, TypeError) as exc:
            raise ValueError(str(exc)) from None
        self._keys.keys = keys
        return len(keys)

    @property
    def loaded(self) -> bool:
        return bool(self._keys.keys)


def _import_pem(data: bytes) -> list[Any]:
    """Every key of a PEM file (public or private keys, certificates), public parts only."""
    from cryptography import x509

    keys: list[Any] = []
    for block in _PEM_BLOCK.finditer(data):
        pem = block.group(0)
        if block.group(1) == b"CERTIFICATE":
            from cryptography.hazmat.primitives.serialization import (
                Encoding,
                PublicFormat,
            )

            cert = x509.load_pem_x509_certificate(pem)
            pem = cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        for key_cls in (RSAKey, ECKey, OKPKey):
            try:
                keys.append(key_cls.import_key(pem))
                break
            except Exception:  # noqa: S112 (not this key type: try the next)
                continue
        else:
            raise ValueError(f"PEM block {block.group(1).decode()!r} is not an RSA, EC or OKP key")
    if not keys:
        raise ValueError("no PEM key found")
    return keys


def _import_jwk_data(data: bytes) -> list[Any]:
    """A JWKS (``{"keys": [...]}``) or a single JWK."""
    parsed = orjson.loads(data)
    if not isinstance(parsed, dict):
        raise ValueError("not a JWK or JWKS (a JSON object)")
    keys = parsed.get("keys", [parsed])
    if not isinstance(keys, list):
        raise ValueError("'keys' is not a list")
    return list(KeySet.import_key_set({"keys": keys}).keys)


def _load_key_set(ks: _KeySet, base: Path) -> _Keys:
    if ks.remote is not None:
        refresh = ks.remote.refreshInterval
        return _Keys(
            keys=(),
            require_kid=not ks.insecure.optionalKid,
            infer_alg=ks.insecure.optionalAlg,
            url=ks.remote.url,
            refresh_seconds=parse_go_duration(refresh) if refresh else DEFAULT_REFRESH_SECONDS,
        )
    local = ks.local
    assert local is not None  # checked by _KeySet
    if local.data:
        try:
            raw = base64.b64decode(local.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AuxDataConfigError(
                f"keyset {ks.id!r}: failed to apply base64 decoder to key data: {exc}"
            ) from None
        where = "key data"
    else:
        path = Path(local.file)
        path = path if path.is_absolute() else base / path
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise AuxDataConfigError(f"keyset {ks.id!r}: cannot read {path}: {exc}") from None
        where = str(path)
    try:
        keys = _import_pem(raw) if local.pem else _import_jwk_data(raw)
    except (ValueError, JoseError, TypeError) as exc:
        raise AuxDataConfigError(f"keyset {ks.id!r}: failed to parse {where}: {exc}") from None
    return _Keys(
        keys=tuple(keys),
        require_kid=not ks.insecure.optionalKid,
        infer_alg=ks.insecure.optionalAlg,
    )


# -- verification -----------------------------------------------------------------------------


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, not verified (also what ``disableVerification``
    reads: the stock PDP then accepts any known ``alg``, even ``none``, but not a header
    without one)."""
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError(f"a compact JWS has 3 parts, not {len(parts)}")
        header = orjson.loads(_b64url(parts[0]))
        claims = orjson.loads(_b64url(parts[1]))
        _b64url(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise AuxDataRejected("malformed", f"failed to parse JWT: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuxDataRejected("malformed", "failed to parse JWT: not a JSON object")
    if header.get("alg") not in _KNOWN_ALGORITHMS:  # the stock PDP parses no header without it
        raise AuxDataRejected(
            "malformed", f"failed to parse JWT: unknown alg {header.get('alg')!r}"
        )
    return header, claims


def _numeric_date(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise AuxDataRejected("malformed", f"claim {name!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise AuxDataRejected("malformed", f"claim {name!r} is not a number") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise AuxDataRejected("malformed", f"claim {name!r} is not a number")
    return float(value)


def _rfc3339(seconds: float) -> str:
    try:
        when = dt.datetime.fromtimestamp(math.floor(seconds), tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise AuxDataRejected("malformed", "time claim out of range") from None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class AuxDataVerifier:
    """Cerbos' ``auxData.jwt`` for one configuration; thread-safe, no I/O after construction."""

    def __init__(
        self,
        key_sets: Mapping[str, _Keys] | None = None,
        *,
        disable_verification: bool = False,
        acceptable_time_skew: float = 0.0,
    ) -> None:
        self._key_sets = dict(key_sets or {})
        self.disable_verification = disable_verification
        self.acceptable_time_skew = acceptable_time_skew

    @classmethod
    def from_file(cls, path: Path) -> AuxDataVerifier:
        """The ``auxData`` block of a Cerbos configuration, as a YAML file of its own::

            auxData:
              jwt:
                keySets: [{id: ks1, local: {file: keys.jwks}}]

        Relative ``local.file`` paths are relative to the file's directory. Raises
        `AuxDataConfigError` for anything that is not exactly valid."""
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise AuxDataConfigError(f"{path}: {exc}") from None
        try:
            conf = _File.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
                for err in exc.errors()
            )
            raise AuxDataConfigError(f"{path}: {problems}") from None
        jwt = conf.auxData.jwt or _Jwt()
        try:
            key_sets = (
                {}
                if jwt.disableVerification
                else {ks.id: _load_key_set(ks, path.parent) for ks in jwt.keySets}
            )
        except AuxDataConfigError as exc:
            raise AuxDataConfigError(f"{path}: {exc}") from None
        return cls(
            key_sets,
            disable_verification=jwt.disableVerification,
            acceptable_time_skew=jwt.acceptableTimeSkew,
        )

    @property
    def key_set_ids(self) -> list[str]:
        return sorted(self._key_sets)

    def remote_key_sets(self) -> list[RemoteKeySet]:
        """The key sets fetched from a URL, for the code that fetches them."""
        return [
            RemoteKeySet(ks_id, keys.url, keys.refresh_seconds, keys)
            for ks_id, keys in sorted(self._key_sets.items())
            if keys.url
        ]

    def claims(self, token: str, key_set_id: str, now: dt.datetime | None = None) -> dict[str, Any]:
        """The token's claims as policies see them, or `AuxDataRejected`. ``now``: the
        evaluation time (default: the clock) that ``exp``/``nbf``/``iat`` are checked at."""
        keys = None if self.disable_verification else self._select(key_set_id)
        header, claims = _decode(token)
        if keys is not None:
            try:
                compact = jws.extract_compact(token.encode())
            except (JoseError, ValueError, TypeError) as exc:
                raise AuxDataRejected("malformed", f"failed to parse JWT: {exc}") from None
            self._verify(compact, header, keys)
        return self._claims(claims, now or dt.datetime.now(dt.UTC))

    def _select(self, key_set_id: str) -> _Keys:
        if not key_set_id:
            if len(self._key_sets) != 1:
                raise AuxDataRejected(
                    "key_set", "cannot determine keyset to use for validating the JWT"
                )
            key_set_id, keys = next(iter(self._key_sets.items()))
        else:
            found = self._key_sets.get(key_set_id)
            if found is None:
                raise AuxDataRejected("key_set", f"keyset not found: {key_set_id}")
            keys = found
        if keys.url and not keys.keys:
            raise AuxDataRejected("key_set", f"keyset {key_set_id}: JWKS not fetched yet")
        return keys

    @staticmethod
    def _verify(compact: Any, header: dict[str, Any], keys: _Keys) -> None:
        alg = str(header["alg"])  # a known algorithm: checked by _decode
        candidates: tuple[Any, ...] = keys.keys
        if keys.require_kid:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise AuxDataRejected("signature", "no key ID (kid) in the JWT header")
            candidates = tuple(k for k in keys.keys if k.kid == kid)[:1]
            if not candidates:
                raise AuxDataRejected("signature", f"no key with key ID {kid!r} in the keyset")
        for key in candidates:
            # A key's own alg must equal the token's, a key marked for another use is not used,
            # and alg none verifies nothing: joserfc refuses all three (the "alg none" and
            # "alg other than the key's" cases). A key without alg: only with optionalAlg.
            if not key.get("alg") and not keys.infer_alg:
                continue
            try:
                if jws.validate_compact(compact, key, algorithms=[alg]):
                    return
            except (JoseError, ValueError, TypeError):
                continue
        raise AuxDataRejected("signature", "could not verify the JWT with any key of the keyset")

    def _claims(self, claims: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        out: dict[str, Any] = {}
        times: dict[str, float] = {}
        for name, value in claims.items():
            if value is None:
                continue  # the stock PDP drops a top-level null claim
            if name in _TIME_CLAIMS:
                times[name] = math.floor(_numeric_date(name, value))
                out[name] = _rfc3339(times[name])
            elif name in _STRING_CLAIMS:
                if not isinstance(value, str):
                    raise AuxDataRejected("malformed", f"claim {name!r} is not a string")
                out[name] = value
            elif name == "aud":
                aud = [value] if isinstance(value, str) else value
                if not isinstance(aud, list) or not all(isinstance(a, str) for a in aud):
                    raise AuxDataRejected("malformed", "claim 'aud' is not a string or strings")
                out[name] = aud
            else:
                out[name] = value
        # whole seconds, as the stock PDP compares them
        current = math.floor(now.timestamp())
        skew = self.acceptable_time_skew
        if "exp" in times and not current < times["exp"] + skew:
            raise AuxDataRejected("expired", '"exp" not satisfied: the token has expired')
        if "nbf" in times and current < times["nbf"] - skew:
            raise AuxDataRejected("not_yet_valid", '"nbf" not satisfied: not valid yet')
        if "iat" in times and current < times["iat"] - skew:
            raise AuxDataRejected("not_yet_valid", '"iat" not satisfied: issued in the future')
        return out


def fetch_remote_key_sets(verifier: AuxDataVerifier, timeout: float = 10.0) -> list[str]:
    """Fetch every remote key set once, now (``vigil policy eval|plan``); returns a problem
    per key set that could not be fetched (its tokens are then refused)."""
    import urllib.request

    problems = []
    for remote in verifier.remote_key_sets():
        try:
            with urllib.request.urlopen(remote.url, timeout=timeout) as resp:  # noqa: S310
                remote.install(resp.read(MAX_JWKS_BYTES + 1))
        except (OSError, ValueError) as exc:
            problems.append(f"keyset {remote.id!r}: JWKS {remote.url} not loaded: {exc}")
    return problems


#: The stock PDP without an ``auxData`` configuration: verification on, no key sets, so every
#: token is refused.
NO_KEY_SETS = AuxDataVerifier()
#: ``disableVerification: true``: claims are read without checking the signature (the time
#: claims are still checked). For tests and ``--unverified-jwt`` only.
UNVERIFIED = AuxDataVerifier(disable_verification=True)

__all__ = [
    "DEFAULT_REFRESH_SECONDS",
    "NO_KEY_SETS",
    "RemoteKeySet",
    "fetch_remote_key_sets",
    "UNVERIFIED",
    "AuxDataConfigError",
    "AuxDataRejected",
    "AuxDataVerifier",
    "parse_go_duration",
]
