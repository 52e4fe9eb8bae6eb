"""A policy bundle as it travels through Kafka: every file the policy engine reads, by path.

The bundle is self-contained (policies plus ``_schemas/``), so a worker can rebuild exactly the
engine the publisher compiled and tested. Its digest is the policy engine's digest, which every
decision records.
"""

from __future__ import annotations

import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.policy import PolicyEngine
from streams.policy.api import build_engine
from streams.policy.loader import is_policy_path

SCHEMAS_DIR = "_schemas"


class BundleError(ValueError):
    """A bundle that cannot be used; the running bundle stays."""


@dataclass(frozen=True, slots=True)
class Bundle:
    digest: str
    files: dict[str, str]  # relative path -> text
    pushed_at: int = 0
    source: str = ""
    engine: PolicyEngine | None = field(default=None, compare=False)

    @classmethod
    def from_directory(cls, directory: Path, source: str = "") -> Bundle:
        """Compile the directory (raises PolicyCompileError) and collect its files."""
        engine = PolicyEngine.from_directory(directory)
        files: dict[str, str] = {}
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            rel = path.relative_to(directory).as_posix()
            if is_policy_path(rel) or rel.startswith(f"{SCHEMAS_DIR}/"):
                files[rel] = path.read_text()
        return cls(
            digest=engine.digest,
            files=files,
            pushed_at=int(time.time() * 1000),
            source=source or f"{socket.gethostname()}:{directory}",
            engine=engine,
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "digest": self.digest,
                "files": self.files,
                "pushed_at": self.pushed_at,
                "source": self.source,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Bundle:
        try:
            doc = orjson.loads(raw)
            files = doc["files"]
            if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()
            ):
                raise TypeError("files must map paths to text")
            return cls(
                digest=str(doc["digest"]),
                files=files,
                pushed_at=int(doc.get("pushed_at", 0)),
                source=str(doc.get("source", "")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"not a policy bundle record: {exc}") from None

    def compile(self, workdir: Path, **engine_options: Any) -> PolicyEngine:
        """Write the files under ``workdir/<digest>`` and compile them (with the worker's
        engine options, ``streams.policy.api.build_engine``); check the digest."""
        for rel in self.files:
            if rel.startswith("/") or ".." in rel.split("/"):
                raise BundleError(f"unsafe path in bundle: {rel!r}")
        target = workdir / self.digest.replace(":", "-")
        if target.exists():
            shutil.rmtree(target)
        for rel, text in self.files.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        engine = build_engine(target, **engine_options)
        if engine.digest != self.digest:
            raise BundleError(
                f"bundle digest {self.digest} does not match its files ({engine.digest})"
            )
        return engine
