"""The Avro schemas in ``schemas/*.avsc``, read and parsed once per process.

Parsing is the expensive part of fastavro; doing it at import time keeps the hot path down to
one ``schemaless_reader``/``schemaless_writer`` call per event.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

import fastavro

RecordKind = Literal["Signal", "GrantEvent", "Decision", "Revocation", "DeadLetter"]
RECORD_KINDS: Final[tuple[RecordKind, ...]] = get_args(RecordKind)
NAMESPACE: Final = "dev.vigil"

#: ``schemas/`` at the repository root; ``VIGIL_SCHEMAS_DIR`` overrides it (packaged installs).
SCHEMAS_DIR: Final = Path(
    os.environ.get("VIGIL_SCHEMAS_DIR") or Path(__file__).resolve().parents[2] / "schemas"
)


@dataclass(frozen=True, slots=True)
class AvroSchema:
    """One schema: its source text (what we register) and its parsed runtime form."""

    name: str
    fullname: str
    text: str
    """Schema JSON as written in the file, logical types included; registered with a registry."""
    parsed: Any
    """fastavro-parsed schema with logical-type annotations removed (see :func:`runtime_schema`)."""


def strip_logical_types(node: Any) -> Any:
    """Return a copy of a schema JSON tree without ``logicalType`` annotations.

    The binary encoding is identical (a timestamp-millis is a plain long), but without the
    annotation fastavro returns ints instead of building ``datetime`` objects: cheaper on the hot
    path, and the JSON record shape carries epoch milliseconds anyway.
    """
    if isinstance(node, dict):
        return {k: strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [strip_logical_types(v) for v in node]
    return node


def runtime_schema(schema_json: Any) -> Any:
    """Parse a schema (JSON tree or text) the way every codec reads and writes it."""
    if isinstance(schema_json, str | bytes):
        schema_json = json.loads(schema_json)
    return fastavro.parse_schema(strip_logical_types(schema_json))


def _load(directory: Path) -> dict[str, AvroSchema]:
    """Read every ``*.avsc`` in ``directory``, keyed by record name."""
    out: dict[str, AvroSchema] = {}
    for path in sorted(directory.glob("*.avsc")):
        text = path.read_text(encoding="utf-8")
        tree = json.loads(text)
        name = tree["name"]
        fullname = f"{tree.get('namespace', NAMESPACE)}.{name}"
        out[name] = AvroSchema(name, fullname, text, runtime_schema(tree))
    missing = set(RECORD_KINDS) - out.keys()
    if missing:
        raise RuntimeError(f"missing Avro schemas in {directory}: {sorted(missing)}")
    return out


SCHEMAS: Final[dict[str, AvroSchema]] = _load(SCHEMAS_DIR)
"""Module-level registry: ``SCHEMAS["Signal"].parsed`` etc."""

BY_FULLNAME: Final[dict[str, str]] = {s.fullname: s.name for s in SCHEMAS.values()}
