"""A broker-free cluster of partitions for delegation tests: one ``Pipeline``, one store per
partition, and the subscriptions topic routed the way Kafka's default partitioner routes it
(``partition_of``), batch after batch until nothing is in flight. The embedded-broker tests
(tests/pipeline/test_pipeline_delegation.py) run the same scenarios through real workers."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from streams.codecs import decode_any
from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline, Topics
from streams.processing.records import InRecord
from streams.state.replica import partition_of
from streams.state.risk import RiskModel
from streams.state.store import MemoryStore, PartitionStore

ROOT = Path(__file__).resolve().parents[2]
POLICIES = Path(__file__).resolve().parent / "policies"
SUBSCRIPTIONS = "vigil.subscriptions"
TOPICS = Topics(
    signals=frozenset({"signals.identity", "signals.risk", "signals.device"}),
    grants="authz.grants",
    decisions="authz.decisions",
    revocations="authz.revocations",
    deadletter="signals.deadletter",
    subscriptions=SUBSCRIPTIONS,
)
T0 = 1795946400000  # 2026-11-29T10:00:00Z
NOW = T0 + 3_600_000


def delegation_pipeline(topics: Topics = TOPICS) -> Pipeline:
    return Pipeline(
        topics,
        PolicyEngine.from_directory(POLICIES),
        RiskModel.from_file(ROOT / "risk" / "model.yaml"),
        output_format="json",
    )


class Cluster:
    """``send`` puts a record on the partition its key hashes to; ``settle`` processes every
    partition until no record is in flight; ``outputs(topic)`` is what was produced."""

    def __init__(self, pipeline: Pipeline, partitions: int = 4) -> None:
        self.pipeline = pipeline
        self.partitions = partitions
        self.stores: dict[int, PartitionStore] = {p: MemoryStore() for p in range(partitions)}
        self.pending: dict[int, list[InRecord]] = defaultdict(list)
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.produced: list[tuple[str, bytes | None, dict[str, Any]]] = []
        self.clock = NOW
        self.batches = 0

    def partition(self, key: str) -> int:
        return partition_of(key.encode(), self.partitions)

    def _put(self, topic: str, key: bytes, value: bytes) -> None:
        partition = partition_of(key, self.partitions)
        offset = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] = offset + 1
        self.clock += 1
        self.pending[partition].append(
            InRecord(topic, partition, offset, key, value, [], self.clock)
        )

    def send(self, topic: str, key: str, value: dict[str, Any] | bytes) -> None:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        self._put(topic, key.encode(), raw)

    def settle(self, max_rounds: int = 50) -> None:
        for _ in range(max_rounds):
            if not any(self.pending.values()):
                return
            pending, self.pending = self.pending, defaultdict(list)
            for partition in sorted(pending):
                records = pending[partition]
                if not records:
                    continue
                self.batches += 1
                result = self.pipeline.process(records, self.stores[partition], self.clock)
                self.stores[partition].write(result.changed_states)
                for out in result.outputs:
                    if out.topic == SUBSCRIPTIONS:
                        assert out.by_key and out.key is not None
                        self._put(out.topic, out.key, out.value)
                    else:
                        self.produced.append(
                            (out.topic, out.key, decode_any(out.value, out.headers)[1])
                        )
        raise AssertionError("records still in flight after max_rounds")

    def outputs(self, topic: str) -> list[dict[str, Any]]:
        return [value for t, _, value in self.produced if t == topic]

    def revoked(self) -> dict[str, dict[str, Any]]:
        return {r["grant_id"]: r for r in self.outputs("authz.revocations")}

    def state(self, key: str) -> dict[str, Any]:
        raw = self.stores[self.partition(key)].get(b"g:" + key.encode())
        return orjson.loads(raw) if raw is not None else {}


def issued(
    gid: str,
    holder: str,
    chain: list[str] | None = None,
    parent: str | None = None,
    roles: list[str] | None = None,
    issued_at: str = "2026-11-29T10:00:00Z",
) -> dict[str, Any]:
    kind, ident = holder.split(":", 1)
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": ident, "type": kind, "roles": roles or [kind], "attr": {}},
        "resource": {"kind": "mailbox", "id": f"mb-{gid}", "attr": {}},
        "actions": ["read", "send"],
        "issued_at": issued_at,
        "expires_at": "2099-01-01T00:00:00Z",
        "on_behalf_of": chain or [],
        "parent_grant_id": parent,
    }


def signal(eid: str, subject: str, kind: str, at: str, **attributes: Any) -> dict[str, Any]:
    stype, ident = subject.split(":", 1)
    return {
        "event_id": eid,
        "type": kind,
        "subject": {"type": stype, "id": ident},
        "source": "idp",
        "event_time": at,
        "attributes": attributes,
    }


def placed(bases: list[str], partitions: int, distinct: bool) -> list[str]:
    """Subject keys ``<base>-<n>``, one per base: on pairwise different partitions
    (``distinct``) or all on one partition, checked with the partitioner Kafka uses."""
    out: list[str] = []
    used: set[int] = set()
    for base in bases:
        n = 0
        while True:
            key = f"{base}-{n}"
            part = partition_of(key.encode(), partitions)
            if (part not in used) if distinct else (not used or part in used):
                break
            n += 1
        used.add(part)
        out.append(key)
    return out
