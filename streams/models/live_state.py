"""What the running pipeline has seen, in the shape `vigil inventory --grants` compares with
the policies: read from Kafka by `streams.processing.live_state`, judged by `streams.policy.inventory`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class GrantSeen:
    """An active grant as the live state holds it (only what the inventory needs)."""

    subject: str
    grant_id: str
    kind: str
    actions: list[str]
    on_behalf_of: list[str]


@dataclass(slots=True)
class LiveState:
    """Active grants, checked (kind, action) pairs with their number of check decisions, and
    the reserved `signals.*` attributes some producer has set for at least one subject."""

    grants: list[GrantSeen] = field(default_factory=list)
    checks: dict[tuple[str, str], int] = field(default_factory=dict)
    sent_signals: frozenset[str] = frozenset()
    subjects: int = 0
