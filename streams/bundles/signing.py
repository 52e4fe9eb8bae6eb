"""Ed25519 signatures of policy bundle records (``cryptography``).

Whoever can write the bundle topic sets policy for the whole fleet; with ``--bundle-public-keys``
a worker accepts only records signed by one of the listed keys. A signature covers the record's
canonical content (``Bundle.signed_bytes`` / ``Confirmation.signed_bytes``: orjson with sorted
keys), and the record names its key by ``key_id``: the first 16 hex digits of the SHA-256 of the
raw 32-byte public key, so a key file with several keys (rotation) is searched by id.

Key files: private keys in PEM (PKCS#8, what ``vigil policy keygen`` writes) or OpenSSH format;
public key files hold any number of PEM blocks, ``ssh-ed25519 AAAA...`` lines, or lines of
base64 raw 32-byte keys (blank lines and ``#`` comments are ignored).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streams.bundles.bundle import BundleError

_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class KeyFileError(ValueError):
    """A key file that cannot be used (the command or worker refuses to start)."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = path.read_bytes()
    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path}: not an unencrypted Ed25519 private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """Every public key in the file, by key id; raises KeyFileError if there is none or one
    entry cannot be read (a half-read key file would silently refuse good bundles)."""
    data = path.read_bytes()
    keys: list[object] = []
    try:
        for block in _PEM_BLOCK.findall(data):
            keys.append(serialization.load_pem_public_key(block))
        rest = _PEM_BLOCK.sub(b"", data)
        for line in rest.decode().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("ssh-"):
                keys.append(serialization.load_ssh_public_key(line.encode()))
            else:
                keys.append(
                    Ed25519PublicKey.from_public_bytes(base64.b64decode(line, validate=True))
                )
    except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error) as exc:
        raise KeyFileError(f"{path}: cannot read a public key: {exc}") from None
    out: dict[str, Ed25519PublicKey] = {}
    for key in keys:
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path}: not an Ed25519 key ({type(key).__name__})")
        out[key_id(key)] = key
    if not out:
        raise KeyFileError(f"{path}: no public key found")
    return out


def sign(private: Ed25519PrivateKey, message: bytes) -> tuple[str, str]:
    """``(key_id, base64 signature)`` of the message."""
    return key_id(private.public_key()), base64.b64encode(private.sign(message)).decode()


def verify(
    keys: dict[str, Ed25519PublicKey], message: bytes, kid: str | None, signature: str | None
) -> None:
    """Raise BundleError (reason ``unsigned``, ``unknown-key`` or ``bad-signature``) unless the
    signature is a valid signature of the message by the named key."""
    if not signature or not kid:
        raise BundleError("record is not signed and bundle public keys are configured", "unsigned")
    key = keys.get(kid)
    if key is None:
        raise BundleError(f"record is signed by unknown key {kid[:32]!r}", "unknown-key")
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        raise BundleError(f"bad signature by key {kid}", "bad-signature") from None


def generate_keypair(private_path: Path) -> Path:
    """Write a new private key (PEM, mode 0600) and its public key next to it (``.pub``)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.touch(mode=0o600, exist_ok=False)
    private_path.write_bytes(pem)
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public_path
