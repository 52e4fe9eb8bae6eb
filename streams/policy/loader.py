"""Find, parse and strictly check the policy files of a bundle directory; hash them.

Follows the stock Cerbos disk store: every `.yaml`/`.yml`/`.json` file (any case) is a policy
except hidden paths, `testdata/` directories, the root `_schemas/` directory and test suites
`*_test.{yaml,yml,json}`. A candidate file that is not a valid Cerbos policy (another
component's config, a wrong `apiVersion`, an unknown or misspelled key, a wrong type) is an
error with file and path, never skipped: `docspec.py` checks every document before it is
compiled. Empty files (or only comments) hold no policy, as in Cerbos.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .docspec import check_policy
from .model import CompileIssue
from .yamlload import DuplicateKeyError, load_json, load_yaml_documents

POLICY_SUFFIXES = (".yaml", ".yml", ".json")
TESTDATA_DIR = "testdata"
SCHEMAS_DIR = "_schemas"


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
    if TESTDATA_DIR in parts[:-1] or SCHEMAS_DIR in parts[:-1]:
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
            return load_json(raw), None
        docs = [d for d in load_yaml_documents(raw) if d is not None]
    except DuplicateKeyError as exc:
        return None, CompileIssue(rel, exc.path, str(exc))
    except (yaml.YAMLError, ValueError) as exc:
        return None, CompileIssue(rel, "", f"cannot parse file: {exc}")
    if len(docs) > 1:
        return None, CompileIssue(rel, "", "more than one YAML document detected")
    return (docs[0] if docs else None), None


def _nested_schemas_dir(rel_path: str) -> str | None:
    """Cerbos only reads `_schemas/` at the root; one deeper down refuses the store."""
    parts = rel_path.split("/")[:-1]
    if SCHEMAS_DIR in parts[1:] and not any(p.startswith(".") for p in parts):
        return "/".join(parts[: parts.index(SCHEMAS_DIR, 1) + 1])
    return None


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
    bad_dirs: set[str] = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        nested = _nested_schemas_dir(rel)
        if nested is not None and nested not in bad_dirs:
            bad_dirs.add(nested)
            issues.append(
                CompileIssue(
                    nested, "", f"{SCHEMAS_DIR} directory must be at the root of the store"
                )
            )
        if not is_policy_path(rel):
            skipped.append(rel)
            continue
        raw = path.read_bytes()
        hashed.append((rel, raw))
        doc, issue = _parse(rel, raw)
        if issue is not None:
            issues.append(issue)
            continue
        if doc is None:
            continue  # an empty file (or only comments) holds no policy
        checked, problems = check_policy(doc)
        issues.extend(CompileIssue(rel, p, m) for p, m in problems)
        if checked is not None:
            files.append(LoadedFile(rel, checked, raw))
    return LoadedBundle(files, skipped, issues, bundle_digest(hashed))
