"""What the broker-free pipeline tests share: the clock, the topics, a pipeline on the project's
policies, a record feed and the grant/signal bodies most tests start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from streams.codecs import decode_any
from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline, Topics
from streams.processing.records import BatchResult, InRecord
from streams.state.risk import RiskModel
from streams.state.store import PartitionStore

ROOT = Path(__file__).resolve().parents[2]
T0 = 1795946400000  # 2026-11-29T10:00:00Z
NOW = T0 + 3_600_000
TOPICS = Topics(
    signals=frozenset({"signals.device", "signals.risk", "signals.identity"}),
    grants="authz.grants",
    decisions="authz.decisions",
    revocations="authz.revocations",
    deadletter="signals.deadletter",
)


def project_pipeline(topics: Topics = TOPICS, **options: Any) -> Pipeline:
    """A pipeline on ``policies/`` and ``risk/model.yaml``, as a worker started in the checkout."""
    return Pipeline(
        topics,
        PolicyEngine.from_directory(ROOT / "policies"),
        RiskModel.from_file(ROOT / "risk" / "model.yaml"),
        **options,
    )


class Feed:
    """JSON-shaped dicts (or raw bytes) -> InRecords with increasing offsets."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(
        self,
        topic: str,
        value: dict[str, Any] | bytes,
        key: str = "user:alice",
        timestamp: int = NOW,
    ) -> InRecord:
        self.offset += 1
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        return InRecord(topic, 0, self.offset, key.encode(), raw, [], timestamp)


def grant(gid: str, actions: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": "alice", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": "d1", "attr": {}},
        "actions": actions or ["read"],
        "device_id": "D1",
        "session_id": "s1",
        "issued_at": "2026-11-29T10:00:00Z",
        **extra,
    }


def risk(eid: str, level: str, at: Any = "2026-11-29T10:30:00Z") -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "risk-level-change",
        "subject": {"type": "user", "id": "alice"},
        "source": "ueba",
        "event_time": at,
        "attributes": {"current_level": level},
    }


def persist(store: PartitionStore, result: BatchResult) -> None:
    store.write(result.changed_states)


def outputs(result: BatchResult, topic: str) -> list[dict[str, Any]]:
    return [decode_any(o.value, o.headers)[1] for o in result.outputs if o.topic == topic]
