"""The policy-visible snapshot of a subject is built only when a signal changes a value: telemetry
that repeats what is known (most of the traffic) builds none, and a change after such repeats
in the same batch is judged against the state as it was read."""

from __future__ import annotations

from typing import Any

import pytest

from streams.processing import pipeline as pipeline_module
from streams.processing.pipeline import Pipeline
from streams.state.store import MemoryStore
from tests.processing.support import NOW, Feed, grant, outputs, persist, risk


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pipeline's calls of ``subject_snapshot``."""
    calls: list[int] = []
    real = pipeline_module.subject_snapshot

    def counting(state: Any, model: Any) -> dict[str, Any]:
        calls.append(1)
        return real(state, model)

    monkeypatch.setattr(pipeline_module, "subject_snapshot", counting)
    return calls


def _setup(pipeline: Pipeline) -> tuple[MemoryStore, Feed]:
    store, feed = MemoryStore(), Feed()
    batch = [feed("signals.risk", risk("r0", "LOW", "2026-11-29T10:01:00Z"))]
    batch.append(feed("authz.grants", grant("g1", ["read"])))
    persist(store, pipeline.process(batch, store, NOW))
    return store, feed


def test_repeated_values_build_no_snapshot(pipeline: Pipeline, snapshots: list[int]) -> None:
    store, feed = _setup(pipeline)
    snapshots.clear()
    batch = [
        feed("signals.risk", risk("r1", "LOW", "2026-11-29T10:10:00Z")),
        feed("signals.risk", risk("r2", "LOW", "2026-11-29T10:20:00Z")),
    ]
    result = pipeline.process(batch, store, NOW)
    assert outputs(result, "authz.decisions") == []
    assert result.changed_states  # the event times moved: the state is written
    assert snapshots == []


def test_a_change_after_repeats_is_judged_against_the_state_read(
    pipeline: Pipeline, snapshots: list[int]
) -> None:
    store, feed = _setup(pipeline)
    snapshots.clear()
    batch = [
        feed("signals.risk", risk("r1", "LOW", "2026-11-29T10:10:00Z")),
        feed("signals.risk", risk("r2", "HIGH", "2026-11-29T10:20:00Z")),
        feed("signals.risk", risk("r3", "HIGH", "2026-11-29T10:30:00Z")),
    ]
    result = pipeline.process(batch, store, NOW)
    [decision] = outputs(result, "authz.decisions")
    assert decision["cause"]["event_id"] == "r2" and decision["effect"] == "EFFECT_DENY"
    assert decision["request"]["principal"]["attr"]["signals"]["risk"]["level"] == "HIGH"
    assert len(snapshots) == 2  # before and after r2; r1 and r3 repeat values
