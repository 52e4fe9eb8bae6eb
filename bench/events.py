"""Pre-encoded benchmark events: grants, preload signals and signal mixes.

Everything is encoded before a clock starts, so producer-side JSON cost never counts against the
system under test. A ``World`` tracks each subject's current risk level, network zone and device
status, which is what lets a mix say *exactly* which signals change policy-visible state.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

GRANTS_PER_SUBJECT = 10
PARTITIONS = 4
NETWORK = {"ip": "10.20.30.40", "country": "NL", "asn": 64500, "anomalies": []}


@dataclass(frozen=True, slots=True)
class Out:
    """One record to produce: topic *kind* (device|network|risk|grants), partition, key, value."""

    kind: str
    partition: int
    key: bytes
    value: bytes
    event_id: str = ""


def subject_id(i: int) -> str:
    return f"u{i:07d}"


def subject_key(i: int) -> bytes:
    return f"user:{subject_id(i)}".encode()


def partition_of_key(key: bytes, partitions: int = PARTITIONS) -> int:
    all_parts = list(range(partitions))
    return int(DefaultPartitioner()(key, all_parts, all_parts))


def agent_key(i: int) -> bytes:
    """The agent acting for user ``i`` in the cross-subject latency run."""
    return f"agent:a{i:07d}".encode()


def delegated_grant(i: int, issued_at: int) -> bytes:
    """Agent ``a<i>`` reads a document on behalf of user ``u<i>`` (docs/delegation.md): the
    grant lives on the agent's partition and depends on the user's, joined through Kafka."""
    return orjson.dumps(
        {
            "op": "issued",
            "grant_id": f"g-a{i:07d}",
            "principal": {"id": f"a{i:07d}", "type": "agent", "roles": ["employee"], "attr": {}},
            "resource": {"kind": "document", "id": f"doc-a{i:07d}", "attr": {}},
            "actions": ["read"],
            "issued_at": issued_at,
            "expires_at": issued_at + 24 * 3600 * 1000,
            "on_behalf_of": [f"user:{subject_id(i)}"],
        }
    )


def partition_table(subjects: int, partitions: int = PARTITIONS) -> list[int]:
    """Partition of every subject key, computed once with the Java-compatible murmur2."""
    part = DefaultPartitioner()
    all_parts = list(range(partitions))
    return [part(subject_key(i), all_parts, all_parts) for i in range(subjects)]


def _signal(
    event_id: str, kind: str, subject: str, source: str, t: int, attrs: dict[str, Any]
) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": kind,
            "subject": {"type": "user", "id": subject},
            "source": source,
            "event_time": t,
            "attributes": attrs,
        }
    )


def grant_event(i: int, j: int, issued_at: int) -> dict[str, Any]:
    """One ``authz.grants`` issue event: odd grants are read+write (need a compliant device)."""
    sid = subject_id(i)
    return {
        "op": "issued",
        "grant_id": f"g-{sid}-{j}",
        "principal": {
            "id": sid,
            "type": "user",
            "roles": ["employee"],
            "attr": {"department": "eng"},
        },
        "resource": {"kind": "document", "id": f"doc-{sid}-{j}", "attr": {"owner": "someone-else"}},
        "actions": ["read"] if j % 2 == 0 else ["read", "write"],
        "session_id": f"s-{sid}-{j}",
        "device_id": f"D-{sid}",
        "issued_at": issued_at,
        "expires_at": issued_at + 24 * 3600 * 1000,
        "on_behalf_of": [],
    }


def grant(i: int, j: int, issued_at: int) -> bytes:
    """``grant_event`` as the JSON bytes the bench produces."""
    return orjson.dumps(grant_event(i, j, issued_at))


@dataclass(slots=True)
class World:
    """What the bench believes each subject's state is (risk level, zone, device status)."""

    subjects: int
    partitions: list[int]
    risk: list[str] = field(default_factory=list)
    zone: list[str] = field(default_factory=list)
    device_ok: list[bool] = field(default_factory=list)
    clock: int = 0
    seq: int = 0

    @classmethod
    def create(cls, subjects: int) -> World:
        w = cls(subjects, partition_table(subjects))
        w.risk = ["LOW"] * subjects
        w.zone = ["corp"] * subjects
        w.device_ok = [True] * subjects
        w.clock = int(time.time() * 1000) - 3_600_000
        return w

    def _next(self) -> tuple[str, int]:
        self.seq += 1
        self.clock += 1
        return f"e-{self.seq}", self.clock

    # -- the individual signals -------------------------------------------------------------

    def network(self, i: int, zone: str) -> Out:
        eid, t = self._next()
        self.zone[i] = zone
        body = _signal(eid, "network-context", subject_id(i), "ztna", t, {**NETWORK, "zone": zone})
        return Out("network", self.partitions[i], subject_key(i), body, eid)

    def risk_level(self, i: int, level: str) -> Out:
        eid, t = self._next()
        prev, self.risk[i] = self.risk[i], level
        attrs = {"current_level": level, "previous_level": prev}
        body = _signal(eid, "risk-level-change", subject_id(i), "ueba", t, attrs)
        return Out("risk", self.partitions[i], subject_key(i), body, eid)

    def device(self, i: int, compliant: bool) -> Out:
        eid, t = self._next()
        prev = "compliant" if self.device_ok[i] else "not-compliant"
        self.device_ok[i] = compliant
        attrs = {
            "device_id": f"D-{subject_id(i)}",
            "previous_status": prev,
            "current_status": "compliant" if compliant else "not-compliant",
        }
        body = _signal(eid, "device-compliance-change", subject_id(i), "mdm", t, attrs)
        return Out("device", self.partitions[i], subject_key(i), body, eid)

    # -- kinds of signal used by the mixes ----------------------------------------------------

    def noop(self, i: int, rng: random.Random) -> Out:
        """Telemetry that repeats what is known: same network context, or same risk level."""
        if rng.random() < 0.5:
            return self.network(i, self.zone[i])
        return self.risk_level(i, self.risk[i])

    def toggle(self, i: int, rng: random.Random) -> Out:
        """A policy-visible change that keeps grants: risk LOW<->MEDIUM or zone corp<->vpn."""
        if rng.random() < 0.5:
            return self.risk_level(i, "MEDIUM" if self.risk[i] == "LOW" else "LOW")
        return self.network(i, "vpn" if self.zone[i] == "corp" else "corp")

    # -- batches -------------------------------------------------------------------------

    def preload_signals(self, subjects: range) -> Iterator[Out]:
        """Device compliant, risk LOW and zone corp for every subject, before any grant.

        Without the device signal every read+write grant is revoked at issue (unknown devices are
        never compliant), and without risk/network the first telemetry would be a visible change.
        """
        for i in subjects:
            yield self.device(i, True)
            yield self.risk_level(i, "LOW")
            yield self.network(i, "corp")

    def grants(self, subjects: range) -> Iterator[Out]:
        issued = int(time.time() * 1000) - 60_000
        for i in subjects:
            for j in range(GRANTS_PER_SUBJECT):
                yield Out("grants", self.partitions[i], subject_key(i), grant(i, j, issued))

    def mix(
        self, n: int, subjects: range, changing: float, revoking: float, seed: int = 1
    ) -> list[Out]:
        """``n`` signals over random ``subjects``: fraction ``changing`` change visible state.

        Of the changing ones, fraction ``revoking`` turn the subject's device not-compliant (its
        read+write grants are revoked); the rest toggle risk level or network zone.
        """
        rng = random.Random(seed)
        out: list[Out] = []
        lo, hi = subjects.start, subjects.stop - 1
        for _ in range(n):
            i = rng.randint(lo, hi)
            if rng.random() >= changing:
                out.append(self.noop(i, rng))
            elif self.device_ok[i] and rng.random() < revoking:
                out.append(self.device(i, False))
            else:
                out.append(self.toggle(i, rng))
        return out

    # -- delegation: users beyond ``subjects`` with no grants of their own, each with an agent --

    def delegations(self, users: range) -> Iterator[Out]:
        """One agent grant on behalf of each of these users (indices at or beyond
        ``subjects``: users with no state and no grants, so that a signal about them revokes
        only the agent's grant, on another partition as a rule)."""
        issued = int(time.time() * 1000) - 60_000
        for i in users:
            key = agent_key(i)
            yield Out("grants", partition_of_key(key), key, delegated_grant(i, issued))

    def delegator_disabled(self, i: int) -> Out:
        """The user's account is disabled: the agent's grant made for that user is revoked
        (a chain member disabled, docs/delegation.md), on the agent's partition."""
        eid, t = self._next()
        body = _signal(eid, "account-disabled", subject_id(i), "idp", t, {})
        key = subject_key(i)
        return Out("identity", partition_of_key(key), key, body, eid)

    def live(self, subject: int, kind: str, rng: random.Random) -> Out:
        """One signal for the latency run, stamped with the wall clock as event time."""
        self.clock = max(self.clock, int(time.time() * 1000))
        if kind == "cross":
            return self.delegator_disabled(subject)
        if kind == "revoke":
            return self.device(subject, False)
        if kind == "toggle":
            return self.toggle(subject, rng)
        return self.noop(subject, rng)
