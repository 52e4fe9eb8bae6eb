"""Vigil's own SET signing keys: a private JWKS file whose first key signs and whose keys are
all published (public parts only), so a rotation is: put the new key first, keep the old one
listed until receivers have stopped seeing SETs signed with it, then drop it.

The file is read again when its modification time changes (checked at most once a second), so
a rotation needs no restart.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
from joserfc import jws
from joserfc.jwk import KeySet

from streams.ssf.config import SUPPORTED_ALGORITHMS

_DEFAULT_ALG = {"RSA": "RS256", "EC": "ES256", "OKP": "Ed25519"}  # RFC 9864: not "EdDSA"


class SigningKeyError(ValueError):
    pass


class SigningKeys:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._checked = 0.0
        self._keys: KeySet
        self._public: dict[str, Any]
        self._load()  # a bad file stops the worker at start

    def _load(self) -> None:
        mtime = os.stat(self.path).st_mtime
        try:
            data = orjson.loads(self.path.read_bytes())
            keys = [k for k in data["keys"] if isinstance(k, dict)]
            if not keys:
                raise ValueError("no keys")
            for key in keys:
                if key.get("kty") not in _DEFAULT_ALG or "d" not in key or not key.get("kid"):
                    raise ValueError("every key needs kty RSA/EC/OKP, a private part and a kid")
                alg = key.get("alg", _DEFAULT_ALG[key["kty"]])
                if alg not in SUPPORTED_ALGORITHMS:
                    raise ValueError(f"key {key['kid']}: unsupported alg {alg!r}")
            keyset = KeySet.import_key_set({"keys": keys})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SigningKeyError(f"{self.path}: not a private JWKS: {exc}") from None
        self._keys = keyset
        self._public = {"keys": [k.as_dict(private=False) for k in keyset.keys]}
        for key, raw in zip(self._public["keys"], keys, strict=True):
            key["alg"] = raw.get("alg", _DEFAULT_ALG[raw["kty"]])
            key["use"] = "sig"
        self._mtime = mtime

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            if os.stat(self.path).st_mtime != self._mtime:
                self._load()
        except (OSError, SigningKeyError):
            pass  # a half-written or missing file: keep signing with the keys we have

    def public_jwks(self) -> dict[str, Any]:
        self._maybe_reload()
        return self._public

    def sign(self, claims: dict[str, Any]) -> bytes:
        """A compact JWS with ``typ: secevent+jwt``, signed by the first key."""
        self._maybe_reload()
        key = self._keys.keys[0]
        alg = self._public["keys"][0]["alg"]
        header = {"alg": alg, "kid": key.kid, "typ": "secevent+jwt"}
        return jws.serialize_compact(header, orjson.dumps(claims), key, algorithms=[alg]).encode()
