"""``vigil policy push --dry-run``: which active grants would a bundle revoke, fleet-wide?

The live grants are in the workers' RocksDB stores; the one copy a command can read is the state
changelog (``vigil.state-changelog``, keyed by store key, newest value wins). It is read to its
true end (``read_to_end``, Tansu's short ListOffsets handled there), loaded into in-memory
stores, and evaluated with the candidate bundle by the same dry run the workers' blast-radius
guard uses (``Pipeline.would_revoke``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline, WouldRevoke
from streams.state.store import GRANT_PREFIX, SIGNAL_PREFIX, MemoryStore

CHUNK = 500


@dataclass(slots=True)
class DryRun:
    digest: str
    active: int = 0
    revoked: list[WouldRevoke] = field(default_factory=list)

    def groups(self) -> list[dict[str, Any]]:
        """Grants that would be revoked, grouped by (policy, action, cause), largest first."""
        members: dict[tuple[str, str, str], list[str]] = {}
        counts: Counter[tuple[str, str, str]] = Counter()
        for grant in self.revoked:
            for action, policy, cause in grant.denied:
                group = (policy, action, cause)
                counts[group] += 1
                members.setdefault(group, []).append(grant.grant_id)
        return [
            {
                "policy": p,
                "action": a,
                "cause": c,
                "grants": n,
                "grant_ids": sorted(members[(p, a, c)]),
            }
            for (p, a, c), n in counts.most_common()
        ]

    def report(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "active_grants": self.active,
            "would_revoke": len(self.revoked),
            "groups": self.groups(),
        }


async def read_changelog(
    bootstrap: str, topic: str, *, security: KafkaSecurity = PLAINTEXT
) -> dict[int, MemoryStore]:
    """The newest value of every key of every changelog partition, as in-memory stores."""
    from streams.kafka.quirks import read_to_end

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **security.client_kwargs(),
    )
    await consumer.start()
    try:
        await consumer.topics()  # fetches the cluster metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        latest: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}

        def apply(record: Any) -> None:
            if record.key is None:
                return
            if record.value is None:  # a tombstone: the state was deleted
                latest[record.partition].pop(record.key, None)
            else:
                latest[record.partition][record.key] = record.value

        await read_to_end(consumer, [TopicPartition(topic, p) for p in sorted(partitions)], apply)
    finally:
        await consumer.stop()
    stores: dict[int, MemoryStore] = {}
    for partition, values in latest.items():
        store = stores[partition] = MemoryStore()
        store.write(
            {k: v for k, v in values.items() if k.startswith((GRANT_PREFIX, SIGNAL_PREFIX))}
        )
    return stores


def dry_run(
    pipeline: Pipeline, engine: PolicyEngine, stores: dict[int, MemoryStore], now_ms: int
) -> DryRun:
    out = DryRun(engine.digest)
    for store in stores.values():
        after: bytes | None = None
        while keys := store.keys_after(GRANT_PREFIX, after, CHUNK):
            after = keys[-1]
            active, revoked = pipeline.would_revoke(engine, keys, store, now_ms)
            out.active += active
            out.revoked.extend(revoked)
    return out
