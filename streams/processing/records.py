"""Plain record types that cross the pipeline/Kafka boundary (no Kafka client types inside)."""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class InRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp: int  # Kafka record timestamp, ms


@dataclass(slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    # False: to the input partition it came from (outputs keyed by that partition's subject);
    # True: to the partition Kafka's default partitioner gives ``key`` (a record for another
    # subject's partition: the subscriptions topic, docs/delegation.md)
    by_key: bool = False


@dataclass(slots=True)
class BatchResult:
    """What one batch produced. Outputs go to Kafka before the changelog and state writes."""

    outputs: list[OutRecord] = field(default_factory=list)
    # store key -> value; None deletes the key (and is a tombstone in the changelog)
    changed_states: dict[bytes, bytes | None] = field(default_factory=dict)
    next_offsets: dict[str, int] = field(default_factory=dict)  # input topic -> next offset
    signal_timestamps: list[int] = field(default_factory=list)  # for the latency histogram
    # (event_time, Kafka timestamp) in ms of the signal behind each revocation (latency metric)
    revocation_causes: list[tuple[int, int]] = field(default_factory=list)
    new_subjects: int = 0  # subjects whose first signal state this batch writes
    active_grants_delta: int = 0  # grants added minus grants removed (issued, revoked, expired)
