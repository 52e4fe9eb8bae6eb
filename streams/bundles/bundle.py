"""A policy bundle as it travels through Kafka: every file the policy engine reads, by path.

The bundle is self-contained (policies plus ``_schemas/``), so a worker can rebuild exactly the
engine the publisher compiled and tested. Its digest is the policy engine's digest, which every
decision records.

A record comes from whoever can write the bundle topic, so nothing in it is trusted before it is
checked: the digest must be ``sha256:`` and 64 lower-case hex digits, every file path must be a
plain relative path, and the files are compiled in a fresh directory made by ``mkdtemp`` (never
a name taken from the record) that is removed afterwards.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.policy import PolicyEngine
from streams.policy.api import build_engine
from streams.policy.loader import is_policy_path

SCHEMAS_DIR = "_schemas"
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
MAX_FILES = 10_000
MAX_PATH_CHARS = 512
MAX_TOTAL_CHARS = 16 * 1024 * 1024  # the producer's max request size
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._ +@=(),-]*")


class BundleError(ValueError):
    """A bundle that cannot be used; the running bundle stays. ``reason`` is a metric label."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def check_digest(value: object) -> str:
    """The digest as a string, if it is exactly ``sha256:<64 lower-case hex>``."""
    if not isinstance(value, str) or not DIGEST_PATTERN.fullmatch(value):
        raise BundleError(f"bundle digest {value!r} is not sha256:<64 hex digits>", "digest")
    return value


def check_relative_path(rel: str) -> None:
    """A bundle file path: ``/``-separated parts of letters, digits and ``._ +@=(),-``, none empty,
    none starting with a dot (no ``..``, no absolute paths, no backslashes, no drive letters)."""
    if not rel or len(rel) > MAX_PATH_CHARS:
        raise BundleError(f"unsafe path in bundle: {rel[:80]!r}", "path")
    for part in rel.split("/"):
        if not _PATH_PART.fullmatch(part):
            raise BundleError(f"unsafe path in bundle: {rel!r}", "path")


@dataclass(frozen=True, slots=True)
class Bundle:
    digest: str
    files: dict[str, str]  # relative path -> text
    pushed_at: int = 0
    source: str = ""
    engine: PolicyEngine | None = field(default=None, compare=False)
    key_id: str | None = None  # the signing key, when signed (streams.bundles.signing)
    signature: str | None = None  # base64 Ed25519 signature of ``signed_bytes()``

    @classmethod
    def from_directory(cls, directory: Path, source: str = "", **engine_options: Any) -> Bundle:
        """Compile the directory (raises PolicyCompileError) and collect its files (raises
        BundleError for a file name workers would refuse)."""
        engine = build_engine(directory, **engine_options)
        files: dict[str, str] = {}
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            rel = path.relative_to(directory).as_posix()
            if is_policy_path(rel) or rel.startswith(f"{SCHEMAS_DIR}/"):
                check_relative_path(rel)
                files[rel] = path.read_text()
        return cls(
            digest=engine.digest,
            files=files,
            pushed_at=int(time.time() * 1000),
            source=source or f"{socket.gethostname()}:{directory}",
            engine=engine,
        )

    def content(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "files": self.files,
            "pushed_at": self.pushed_at,
            "source": self.source,
        }

    def signed_bytes(self) -> bytes:
        """The canonical serialization a signature covers: the content with sorted keys."""
        return orjson.dumps(self.content(), option=orjson.OPT_SORT_KEYS)

    def to_bytes(self) -> bytes:
        doc = self.content()
        if self.signature is not None:
            doc["key_id"] = self.key_id
            doc["signature"] = self.signature
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Bundle:
        """Parse and check a record: digest format, file paths and sizes (nothing touches the
        disk here)."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BundleError(f"not a policy bundle record: {exc}", "corrupt") from None
        doc = _check_fields(doc, _BUNDLE_FIELDS, "bundle")
        files = doc.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise BundleError("bundle record: files must map paths to text", "corrupt")
        digest = check_digest(doc.get("digest"))
        pushed_at, source = doc.get("pushed_at") or 0, doc.get("source") or ""
        key_id, signature = doc.get("key_id"), doc.get("signature")
        if len(files) > MAX_FILES:
            raise BundleError(f"bundle has {len(files)} files (at most {MAX_FILES})", "size")
        total = 0
        for rel, text in files.items():
            check_relative_path(rel)
            total += len(text)
        if total > MAX_TOTAL_CHARS:
            raise BundleError(f"bundle has {total} characters (at most {MAX_TOTAL_CHARS})", "size")
        return cls(digest, files, pushed_at, source, None, key_id, signature)

    def compile(self, workdir: Path, **engine_options: Any) -> PolicyEngine:
        """Write the files into a fresh temporary directory under ``workdir``, compile them,
        check the digest, remove the directory. ``engine_options`` are the worker's
        (``streams.policy.api.build_engine``)."""
        check_digest(self.digest)
        for rel in self.files:
            check_relative_path(rel)
        workdir.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix="bundle-", dir=workdir))
        try:
            for rel, text in self.files.items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            engine = build_engine(target, **engine_options)
        finally:
            shutil.rmtree(target, ignore_errors=True)
        if engine.digest != self.digest:
            raise BundleError(
                f"bundle digest {self.digest} does not match its files ({engine.digest})",
                "digest",
            )
        return engine


@dataclass(frozen=True, slots=True)
class Confirmation:
    """An operator's go-ahead for a held bundle (``vigil policy confirm DIGEST``): workers that
    hold that digest switch to it although it revokes more than the guard allows."""

    digest: str
    confirmed_at: int = 0
    source: str = ""
    key_id: str | None = None
    signature: str | None = None

    def signed_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "confirm",
                "digest": self.digest,
                "confirmed_at": self.confirmed_at,
                "source": self.source,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = orjson.loads(self.signed_bytes())
        if self.signature is not None:
            doc["key_id"] = self.key_id
            doc["signature"] = self.signature
        return orjson.dumps(doc)


def parse_record(raw: bytes | None) -> Bundle | Confirmation:
    """A bundle-topic record: a bundle, or (``"kind": "confirm"``) a confirmation."""
    if raw is None:
        raise BundleError("empty bundle record", "corrupt")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"not a policy bundle record: {exc}", "corrupt") from None
    if not isinstance(doc, dict) or doc.get("kind") != "confirm":
        return Bundle.from_bytes(raw)
    doc = _check_fields(doc, _CONFIRM_FIELDS, "confirmation")
    return Confirmation(
        check_digest(doc.get("digest")),
        doc.get("confirmed_at") or 0,
        doc.get("source") or "",
        doc.get("key_id"),
        doc.get("signature"),
    )


_BUNDLE_FIELDS: dict[str, type] = {
    "digest": object,  # checked by check_digest (reason "digest")
    "files": dict,
    "pushed_at": int,
    "source": str,
    "key_id": str,
    "signature": str,
}
_CONFIRM_FIELDS: dict[str, type] = {
    "kind": str,
    "digest": object,
    "confirmed_at": int,
    "source": str,
    "key_id": str,
    "signature": str,
}


def _check_fields(doc: object, fields: dict[str, type], what: str) -> dict[str, Any]:
    """A JSON object with only the known fields, each of its type or null (invariant 8: an
    unknown field or a wrong type refuses the record whole)."""
    if not isinstance(doc, dict):
        raise BundleError(f"a {what} record is a JSON object", "corrupt")
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise BundleError(f"unknown field(s) in a {what} record: {unknown}", "corrupt")
    for name, kind in fields.items():
        value = doc.get(name)
        if value is not None and (
            not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        ):
            raise BundleError(f"{what} record: {name} must be {kind.__name__}", "corrupt")
    return doc
