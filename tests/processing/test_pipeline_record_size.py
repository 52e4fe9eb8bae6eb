"""Decision records are bounded: the largest grant the input limits admit gives a decision of
less than ``MAX_DECISION_BYTES`` (docs/topics-and-schemas.md, "Decision"), and one byte more of
attributes is dead-lettered instead of being copied into every decision."""

from __future__ import annotations

from typing import Any

import orjson

from streams.models.limits import MAX_FREE_FORM_BYTES, MAX_ID_CHARS, MAX_LIST_ITEMS
from streams.processing.records import InRecord
from streams.state.store import MemoryStore
from tests.processing.support import NOW, project_pipeline

MAX_DECISION_BYTES = 256 * 1024  # the documented bound


def attr_of(size: int) -> dict[str, Any]:
    """A free-form object whose JSON encoding is exactly ``size`` bytes."""
    overhead = len(orjson.dumps({"x": ""}))
    return {"x": "a" * (size - overhead)}


def largest_grant(attr_bytes: int) -> dict[str, Any]:
    long = "r" * (MAX_ID_CHARS - 3)
    return {
        "op": "issued",
        "grant_id": "g" * MAX_ID_CHARS,
        "principal": {
            "id": "alice",
            "roles": [f"{i:03d}{long}" for i in range(MAX_LIST_ITEMS)],
            "attr": attr_of(attr_bytes),
        },
        "resource": {"kind": "document", "id": "d" * 512, "attr": attr_of(attr_bytes)},
        "actions": [f"{i:03d}{long}" for i in range(MAX_LIST_ITEMS)],
        "session_id": "s" * MAX_ID_CHARS,
        "device_id": "D" * MAX_ID_CHARS,
        "issued_at": "2026-11-29T10:00:00Z",
    }


def process(grant: dict[str, Any]) -> dict[str, list[bytes]]:
    pipeline = project_pipeline(output_format="json")
    rec = InRecord("authz.grants", 0, 1, b"user:alice", orjson.dumps(grant), [], NOW)
    result = pipeline.process([rec], MemoryStore(), NOW)
    by_topic: dict[str, list[bytes]] = {}
    for out in result.outputs:
        by_topic.setdefault(out.topic, []).append(out.value)
    return by_topic


def test_the_largest_admitted_grant_gives_a_bounded_decision() -> None:
    out = process(largest_grant(MAX_FREE_FORM_BYTES))
    assert "signals.deadletter" not in out, out.get("signals.deadletter")
    [decision] = out["authz.decisions"]
    assert MAX_FREE_FORM_BYTES * 2 < len(decision) < MAX_DECISION_BYTES


def test_attributes_beyond_the_limit_are_dead_lettered() -> None:
    out = process(largest_grant(MAX_FREE_FORM_BYTES + 1))
    assert "authz.decisions" not in out
    [dead] = out["signals.deadletter"]
    assert b"64 KiB" in dead or b"65536" in dead, dead[:300]
