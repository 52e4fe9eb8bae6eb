"""The SRE metrics the pipeline counts (docs/operations.md, "Metrics"): labels and values.

Real policies, codecs and an in-memory store; the runner's side (latency histograms from
``revocation_causes``, lag, rebalances, restore) is exercised by tests/deploy against a running
worker and a real Prometheus.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY

from streams.processing.pipeline import Pipeline
from streams.state.store import (
    GRANT_PREFIX,
    SIGNAL_PREFIX,
    MemoryStore,
    count_keys,
    grant_key,
    signal_key,
)
from streams.state.subject import count_active_grants
from tests.processing.support import NOW, Feed, grant, risk


def value(name: str, **labels: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def snapshot() -> dict[str, float]:
    probes: dict[str, tuple[str, dict[str, Any]]] = {
        "applied": (
            "vigil_signals_total",
            {"topic": "signals.risk", "type": "risk-level-change", "outcome": "applied"},
        ),
        "dead": (
            "vigil_signals_total",
            {"topic": "signals.risk", "type": "unknown", "outcome": "dead-lettered"},
        ),
        "revoked_by_risk": (
            "vigil_revocations_total",
            {"cause": "signal", "signal_type": "risk-level-change"},
        ),
        "read_allow": (
            "vigil_decision_actions_total",
            {
                "effect": "EFFECT_ALLOW",
                "cause": "grant-issued",
                "kind": "document",
                "action": "read",
            },
        ),
        "read_deny": (
            "vigil_decision_actions_total",
            {"effect": "EFFECT_DENY", "cause": "signal", "kind": "document", "action": "read"},
        ),
        "other_kind": ("vigil_decision_actions_total", {"kind": "other", "action": "other"}),
    }
    return {k: value(name, **labels) for k, (name, labels) in probes.items()}


def test_signals_revocations_and_actions_carry_bounded_labels(pipeline: Pipeline) -> None:
    before = snapshot()
    feed = Feed()
    odd = grant("g2", ["frobnicate"])
    odd["resource"] = {"kind": "no-such-kind", "id": "x", "attr": {}}
    batch = [
        feed("authz.grants", grant("g1", ["read"])),
        feed("authz.grants", odd),
        feed("signals.risk", risk("r1", "HIGH")),
        feed("signals.risk", {"not": "a signal"}),
    ]
    result = pipeline.process(batch, MemoryStore(), NOW)
    pipeline.flush_metrics()
    assert delta(before, snapshot()) == {
        "applied": 1,
        "dead": 1,
        "revoked_by_risk": 1,
        "read_allow": 1,
        "read_deny": 1,
        "other_kind": 1,  # no policy for it: denied (and revoked) at issuance
    }
    # the revocation's signal: event time and Kafka timestamp, for the latency histogram
    event_time = int(datetime(2026, 11, 29, 10, 30, tzinfo=UTC).timestamp() * 1000)
    assert result.revocation_causes == [(event_time, NOW)]  # g2 was not revoked by a signal
    assert result.new_subjects == 1


def test_count_keys_counts_one_prefix_across_chunks() -> None:
    """``vigil_state_subjects`` at restore: signal-state keys only, however many chunks."""
    store = MemoryStore()
    store.write({signal_key(f"user:u{i}".encode()): b"{}" for i in range(25)})
    store.write({grant_key(f"user:u{i}".encode()): b"{}" for i in range(7)})
    assert count_keys(store, SIGNAL_PREFIX, chunk=10) == 25
    assert count_keys(store, SIGNAL_PREFIX, chunk=25) == 25
    assert count_keys(store, b"s:none-such") == 0


def test_active_grants_delta_follows_issue_revoke_and_rollback(pipeline: Pipeline) -> None:
    """The runner adds ``active_grants_delta`` to the partition's count once it is committed."""
    feed, store = Feed(), MemoryStore()
    issued = pipeline.process(
        [feed("authz.grants", grant("g1")), feed("authz.grants", grant("g2"))], store, NOW
    )
    assert issued.active_grants_delta == 2
    store.write(issued.changed_states)
    assert count_active_grants(raw for _, raw in store.items(GRANT_PREFIX)) == 2
    revoked = pipeline.process([feed("signals.risk", risk("r1", "HIGH"))], store, NOW)
    assert revoked.active_grants_delta == -2
    store.write(revoked.changed_states)
    assert count_active_grants(raw for _, raw in store.items(GRANT_PREFIX)) == 0
    pipeline.discard_metrics()
