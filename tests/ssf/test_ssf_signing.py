"""Vigil's signing keys: the first key signs, every key is published, and a rotation (new key
put first in the file) takes effect without a restart while old SETs still verify."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from joserfc import jws
from joserfc.jwk import ECKey, KeySet, OKPKey

from streams.ssf.config import Receiver
from streams.ssf.signing import SigningKeyError, SigningKeys
from streams.ssf.transmit import SESSION_REVOKED, revocation_claims


def _write(path: Path, *keys: object, mtime: int) -> None:
    path.write_bytes(orjson.dumps({"keys": [k.as_dict(private=True) for k in keys]}))  # type: ignore[attr-defined]
    os.utime(path, (mtime, mtime))


def _verify(token: bytes, jwks: dict[str, object]) -> dict[str, object]:
    header = jws.extract_compact(token).headers()
    key = KeySet.import_key_set(jwks).get_by_kid(header["kid"])  # type: ignore[arg-type]
    return dict(
        orjson.loads(jws.deserialize_compact(token, key, algorithms=[header["alg"]]).payload)
    )


def test_rotation_without_restart(tmp_path: Path) -> None:
    old = ECKey.generate_key("P-256", parameters={"kid": "old"}, private=True)
    new = OKPKey.generate_key("Ed25519", parameters={"kid": "new"}, private=True)
    path = tmp_path / "signing.json"
    _write(path, old, mtime=1_000_000)
    keys = SigningKeys(path)
    before = keys.sign({"jti": "1"})
    assert jws.extract_compact(before).headers()["kid"] == "old"
    assert all("d" not in k for k in keys.public_jwks()["keys"])

    _write(path, new, old, mtime=2_000_000)
    keys._checked = 0.0  # the once-a-second check is due
    after = keys.sign({"jti": "2"})
    header = jws.extract_compact(after).headers()
    assert (header["kid"], header["alg"], header["typ"]) == ("new", "Ed25519", "secevent+jwt")
    published = keys.public_jwks()
    assert [k["kid"] for k in published["keys"]] == ["new", "old"]
    assert _verify(before, published) == {"jti": "1"}  # SETs signed before still verify
    assert _verify(after, published) == {"jti": "2"}


def test_public_only_or_broken_files_are_refused(tmp_path: Path) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k"}, private=True)
    path = tmp_path / "signing.json"
    path.write_bytes(orjson.dumps({"keys": [key.as_dict(private=False)]}))
    with pytest.raises(SigningKeyError, match="private part"):
        SigningKeys(path)
    path.write_text("{")
    with pytest.raises(SigningKeyError):
        SigningKeys(path)


def test_revocation_claims_shape() -> None:
    receiver = Receiver(name="pep", endpoint="https://pep.example.com/ssf", audience="pep")
    rev = {
        "revocation_id": "r-1",
        "grant_id": "g-1",
        "subject": "user:alice",
        "session_id": None,
        "cause": {"kind": "signal", "event_id": "e-1"},
        "denied_actions": ["read"],
        "policy": "resource.document.vdefault",
        "rule": "deny-disabled-account",
        "revoked_at": 1_700_000_000_123,
    }
    claims = revocation_claims(rev, receiver, "https://vigil.example.com/")
    assert claims["sub_id"] == {
        "format": "jwt_id",
        "iss": "https://vigil.example.com/",
        "jti": "g-1",
    }
    assert claims["iat"] == 1_700_000_000 and claims["aud"] == "pep"
    event = claims["events"][SESSION_REVOKED]
    assert event["event_timestamp"] == 1_700_000_000 and event["initiating_entity"] == "policy"
    assert "deny-disabled-account" in event["reason_admin"]["en"]
    other = revocation_claims(dict(rev, revocation_id="r-2", grant_id="g-2"), receiver, "x")
    assert other["txn"] == claims["txn"] and other["jti"] != claims["jti"]
    again = revocation_claims(rev, receiver, "https://vigil.example.com/")
    assert again == claims  # handled twice: the same SET
