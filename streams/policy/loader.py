"""Find and parse the policy files of a bundle directory, and hash them into a digest.

Follows the stock Cerbos disk store's file rules (hidden files/dirs, `testdata/`, `_schemas/` and
`*_test.{yaml,yml,json}` are not policies) and additionally skips YAML documents that are not
Cerbos policies (no `apiVersion: api.cerbos.dev/v1`), because other components keep their own
config next to the policies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .model import CompileIssue

API_VERSION = "api.cerbos.dev/v1"
POLICY_SUFFIXES = (".yaml", ".yml", ".json")
SKIPPED_DIRS = ("testdata", "_schemas")


@dataclass(frozen=True, slots=True)
class LoadedFile:
    """A parsed Cerbos policy document and where it came from (relative path, for errors)."""

    rel_path: str
    document: dict[str, Any]
    raw: bytes


@dataclass(slots=True)
class LoadedBundle:
    """All policy documents of a directory, the files skipped, parse issues, and the digest."""

    files: list[LoadedFile]
    skipped: list[str]
    issues: list[CompileIssue]
    digest: str


def is_policy_path(rel_path: str) -> bool:
    """True when a relative `/`-separated path names a candidate policy file."""
    parts = rel_path.split("/")
    if any(p.startswith(".") for p in parts):
        return False
    if any(p in SKIPPED_DIRS for p in parts[:-1]):
        return False
    name = parts[-1].lower()
    if not name.endswith(POLICY_SUFFIXES):
        return False
    stem = name.rsplit(".", 1)[0]
    return not stem.endswith("_test")


def bundle_digest(entries: list[tuple[str, bytes]]) -> str:
    """`sha256:<hex>` over sorted (relative path, content) pairs, length-prefixed (unambiguous)."""
    h = hashlib.sha256()
    for rel, raw in sorted(entries):
        name = rel.encode()
        h.update(len(name).to_bytes(8, "big"))
        h.update(name)
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    return "sha256:" + h.hexdigest()


def _parse(rel: str, raw: bytes) -> tuple[Any, CompileIssue | None]:
    try:
        if rel.lower().endswith(".json"):
            return json.loads(raw), None
        docs = [d for d in yaml.safe_load_all(raw) if d is not None]
    except (yaml.YAMLError, ValueError) as exc:
        return None, CompileIssue(rel, "", f"cannot parse file: {exc}")
    if len(docs) > 1:
        return None, CompileIssue(rel, "", "more than one YAML document in a policy file")
    return (docs[0] if docs else None), None


def load_directory(directory: str | Path) -> LoadedBundle:
    """Read every candidate file under `directory`; unreadable files become issues, not raises."""
    root = Path(directory)
    files: list[LoadedFile] = []
    skipped: list[str] = []
    issues: list[CompileIssue] = []
    hashed: list[tuple[str, bytes]] = []
    if not root.is_dir():
        issues.append(CompileIssue(str(root), "", "policy directory does not exist"))
        return LoadedBundle(files, skipped, issues, bundle_digest([]))
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if not is_policy_path(rel):
            skipped.append(rel)
            continue
        raw = path.read_bytes()
        doc, issue = _parse(rel, raw)
        if issue is not None:
            issues.append(issue)
            hashed.append((rel, raw))
            continue
        if not isinstance(doc, dict) or doc.get("apiVersion") != API_VERSION:
            skipped.append(rel)  # not a Cerbos policy document (e.g. another component's config)
            continue
        hashed.append((rel, raw))
        files.append(LoadedFile(rel, doc, raw))
    return LoadedBundle(files, skipped, issues, bundle_digest(hashed))
