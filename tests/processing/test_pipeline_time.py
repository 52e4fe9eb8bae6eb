"""Time in the pipeline, with an injected clock: expiry publishes a Decision and a Revocation
(cause ``expiry``), and grants whose policies read ``now()`` are evaluated again by the sweep
(cause ``time``) with ``now()`` fixed at the slot boundary."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.app import build_pipeline
from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline
from streams.settings import Settings
from streams.state.risk import RiskModel
from streams.state.store import MemoryStore
from tests.processing.support import (
    NOW,
    ROOT,
    TOPICS,
    Feed,
    grant,
    outputs,
    persist,
    project_pipeline,
    risk,
)

SLOT = 1000  # time_reevaluation_ms of the time pipeline
ALICE = b"g:user:alice"

TIMED_POLICY = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: timed
  version: default
  rules:
    - name: first-five-seconds
      actions: ["read"]
      roles: ["employee"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: now() < timestamp(P.attr.grant.issued_at) + duration("5s")
"""


@pytest.fixture(scope="module")
def default_pipeline() -> Pipeline:
    return project_pipeline(time_reevaluation_ms=SLOT)


@pytest.fixture(scope="module")
def timed_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    directory = tmp_path_factory.mktemp("timed-policies")
    (directory / "timed.yaml").write_text(TIMED_POLICY)
    return Pipeline(
        TOPICS,
        PolicyEngine.from_directory(directory),
        RiskModel(),
        time_reevaluation_ms=SLOT,
    )


def timed_grant(gid: str = "t1", issued_at: int = NOW, **extra: Any) -> dict[str, Any]:
    return grant(gid, ["read"], issued_at=issued_at, **extra) | {
        "resource": {"kind": "timed", "id": "x", "attr": {}}
    }


def causes(result: Any, topic: str) -> list[tuple[str, str]]:
    return [(r["cause"]["kind"], r["cause"]["event_id"]) for r in outputs(result, topic)]


# -- expiry ---------------------------------------------------------------------------------


def test_expiry_found_by_an_event_publishes_decision_revocation_and_a_tombstone(
    default_pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    expires = NOW + 1000
    persist(
        store,
        default_pipeline.process(
            [feed("authz.grants", grant("g1", ["read"], expires_at=expires))],
            store,
            NOW,
        ),
    )
    batch = [feed("signals.risk", risk("r1", "HIGH"))]
    result = default_pipeline.process(batch, store, expires + 5)
    [decision] = outputs(result, "authz.decisions")
    [revocation] = outputs(result, "authz.revocations")
    assert decision["cause"] == {"kind": "expiry", "event_id": f"g1@{expires}"}
    assert decision["effect"] == "EFFECT_DENY"
    assert [(a["action"], a["effect"], a["rule"]) for a in decision["actions"]] == [
        ("read", "EFFECT_DENY", None)
    ]
    assert decision["cause_event_time"] == expires and decision["evaluated_at"] == expires + 5
    assert revocation["cause"] == decision["cause"]
    assert revocation["decision_id"] == decision["decision_id"]
    assert revocation["denied_actions"] == ["read"]
    state = orjson.loads(result.changed_states[ALICE])
    assert state["grants"] == {} and "g1" in state["revoked"]

    # A replay of the batch (state not persisted, later clock) repeats the same ids.
    again = default_pipeline.process(batch, store, expires + 900)
    assert [d["decision_id"] for d in outputs(again, "authz.decisions")] == [
        decision["decision_id"]
    ]
    assert [r["revocation_id"] for r in outputs(again, "authz.revocations")] == [
        revocation["revocation_id"]
    ]

    # The tombstone refuses the same grant id issued again with a new expiry.
    persist(store, result)
    reissue = grant("g1", ["read"], issued_at=expires + 10, expires_at=expires + 60_000)
    later = default_pipeline.process([feed("authz.grants", reissue)], store, expires + 20)
    [dead] = outputs(later, "signals.deadletter")
    assert "revocation is terminal" in dead["reason"]


def test_expiry_found_by_the_sweep_is_published_once(default_pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    persist(
        store,
        default_pipeline.process(
            [feed("authz.grants", grant("g1", ["read"], expires_at=NOW + 1000))], store, NOW
        ),
    )
    swept = default_pipeline.sweep([ALICE], store, NOW + 1000)
    assert causes(swept, "authz.decisions") == [("expiry", f"g1@{NOW + 1000}")]
    assert causes(swept, "authz.revocations") == [("expiry", f"g1@{NOW + 1000}")]
    persist(store, swept)
    assert default_pipeline.sweep([ALICE], store, NOW + 2000).outputs == []


# -- time re-evaluation ---------------------------------------------------------------------


def test_a_now_based_policy_revokes_when_its_time_comes(timed_pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    issued = timed_pipeline.process([feed("authz.grants", timed_grant())], store, NOW)
    assert [d["effect"] for d in outputs(issued, "authz.decisions")] == ["EFFECT_ALLOW"]
    persist(store, issued)
    assert orjson.loads(store.get(ALICE) or b"")["grants"]["t1"]["time_due"] == NOW + SLOT

    # Before the next slot boundary nothing is due.
    early = timed_pipeline.sweep([ALICE], store, NOW + SLOT - 1)
    assert early.outputs == [] and early.changed_states == {}

    # Within the five seconds: evaluated again, still allowed, next slot scheduled.
    tick = timed_pipeline.sweep([ALICE], store, NOW + 4 * SLOT + 999)
    [decision] = outputs(tick, "authz.decisions")
    assert decision["cause"] == {"kind": "time", "event_id": f"t1@{NOW + 4 * SLOT}"}
    assert decision["effect"] == "EFFECT_ALLOW"
    assert decision["cause_event_time"] == NOW + 4 * SLOT  # now() of the evaluation
    persist(store, tick)
    assert orjson.loads(store.get(ALICE) or b"")["grants"]["t1"]["time_due"] == NOW + 5 * SLOT

    # The slot at which now() reaches issued_at + 5s denies: Decision + Revocation (time).
    due = timed_pipeline.sweep([ALICE], store, NOW + 5 * SLOT + 300)
    [decision] = outputs(due, "authz.decisions")
    [revocation] = outputs(due, "authz.revocations")
    assert decision["effect"] == "EFFECT_DENY"
    assert decision["actions"][0]["rule"] is None  # no rule allows any more: default deny
    assert revocation["cause"] == {"kind": "time", "event_id": f"t1@{NOW + 5 * SLOT}"}

    # A replay within the slot (state not persisted) repeats the same ids.
    again = timed_pipeline.sweep([ALICE], store, NOW + 5 * SLOT + 900)
    assert [o.value for o in again.outputs] != []
    assert outputs(again, "authz.decisions")[0]["decision_id"] == decision["decision_id"]
    persist(store, due)
    assert timed_pipeline.sweep([ALICE], store, NOW + 9 * SLOT).outputs == []


def test_a_signal_evaluation_moves_the_time_slot(timed_pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    persist(store, timed_pipeline.process([feed("authz.grants", timed_grant())], store, NOW))
    moved = timed_pipeline.process([feed("signals.risk", risk("r1", "MEDIUM"))], store, NOW + 2500)
    assert causes(moved, "authz.decisions") == [("signal", "r1")]
    persist(store, moved)
    assert orjson.loads(store.get(ALICE) or b"")["grants"]["t1"]["time_due"] == NOW + 3 * SLOT


def test_policies_that_do_not_read_time_cost_no_time_reevaluation(
    default_pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    persist(
        store, default_pipeline.process([feed("authz.grants", grant("g1", ["read"]))], store, NOW)
    )
    assert "time_due" not in orjson.loads(store.get(ALICE) or b"")["grants"]["g1"]
    later = default_pipeline.sweep([ALICE], store, NOW + 600 * SLOT)
    assert later.outputs == [] and later.changed_states == {}


def test_the_slot_setting_reaches_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TIME_REEVALUATION_SECONDS", "1.5")
    monkeypatch.setenv("VIGIL_POLICIES", str(ROOT / "policies"))
    monkeypatch.setenv("VIGIL_RISK_MODEL", str(ROOT / "risk" / "model.yaml"))
    assert build_pipeline(Settings()).time_reevaluation_ms == 1500
