"""The blast-radius guard: before a worker switches policy bundles, it counts how many of its
active grants the new bundle would revoke, and holds the switch when that is too many.

One bad push (a typo that denies everything, an error that fails closed) would otherwise revoke
the whole fleet, and revocation is terminal. A pending switch is ``evaluating`` (a dry run over
the owned grants, in chunks between batches: ``Pipeline.would_revoke``), then either switched
or ``held``. A held switch revokes nothing and the running bundle stays until an operator
confirms the digest (``vigil policy confirm``) or rolls back by pushing another bundle.

A switch is held when it would revoke more than ``max_revoke_count`` grants AND more than
``max_revoke_share`` of the active grants (so one grant in a tiny fleet blocks nothing; share 0
makes the count the only limit, count 0 makes the share the only limit).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streams.bundles.watcher import Offer
from streams.processing.pipeline import Pipeline, WouldRevoke
from streams.state.store import GRANT_PREFIX, PartitionStore

CHUNK_SUBJECTS = 200  # subjects dry-evaluated per loop turn: batches keep flowing in between


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_revoke_share: float = 0.10
    max_revoke_count: int = 10

    def holds(self, would_revoke: int, active: int) -> bool:
        return (
            would_revoke > self.max_revoke_count and would_revoke > self.max_revoke_share * active
        )


@dataclass(slots=True)
class PendingSwitch:
    offer: Offer
    scans: dict[int, bytes | None]  # partition -> last grant key dry-evaluated (None: start)
    state: str = "evaluating"  # evaluating | held
    active: int = 0
    would_revoke: int = 0
    groups: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def restart(self, partitions: list[int]) -> None:
        """Owned partitions changed: count again over what is owned now."""
        self.scans = dict.fromkeys(partitions)
        self.state = "evaluating"
        self.active = self.would_revoke = 0
        self.groups.clear()

    def step(self, pipeline: Pipeline, stores: dict[int, PartitionStore], now_ms: int) -> bool:
        """Dry-evaluate the next chunk; True when every owned grant has been counted."""
        while self.scans:
            partition = next(iter(self.scans))
            store = stores.get(partition)
            keys = (
                store.keys_after(GRANT_PREFIX, self.scans[partition], CHUNK_SUBJECTS)
                if store is not None
                else []
            )
            if not keys:
                del self.scans[partition]
                continue
            assert store is not None
            self.scans[partition] = keys[-1]
            active, revoked = pipeline.would_revoke(self.offer.engine, keys, store, now_ms)
            self.add(active, revoked)
            return False
        return True

    def add(self, active: int, revoked: list[WouldRevoke]) -> None:
        self.active += active
        self.would_revoke += len(revoked)
        for grant in revoked:
            self.groups.update(grant.denied)

    def report(self) -> dict[str, Any]:
        """For /healthz, the heartbeat and ``vigil policy status``."""
        return {
            "digest": self.offer.digest,
            "source": self.offer.source,
            "state": self.state,
            "active_grants": self.active,
            "would_revoke": self.would_revoke,
            "by_cause": [
                {"policy": p, "action": a, "cause": c, "grants": n}
                for (a, p, c), n in self.groups.most_common(20)
            ],
        }
