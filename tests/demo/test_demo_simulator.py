"""The simulator is pure and seeded: same seed + same clock = same records, and every record it
means to be valid passes the pipeline's own validation (``streams.models``).

The last tests push the simulator's output through the real ``Pipeline`` (in memory, JSON
outputs) to check that the grants are shaped as the policies expect: nothing is revoked while
everyone is healthy, the risky signals do revoke, and the malformed inputs are dead-lettered.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.app import build_pipeline
from streams.demo.simulator import Outgoing, SimTopics, Simulator
from streams.models.grant import validate_grant_event
from streams.models.signal import SignalInvalid, validate_signal
from streams.processing.pipeline import Pipeline
from streams.processing.records import InRecord
from streams.settings import Settings
from streams.state.store import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
T0 = 1_795_000_000_000
TOPICS = SimTopics()
SIGNAL_TOPIC_OF_TYPE = {
    "device-compliance-change": TOPICS.device,
    "network-context": TOPICS.network,
    "risk-level-change": TOPICS.risk,
}


def run_sim(sim: Simulator, start_ms: int, steps: int, per_step: int = 10) -> list[Outgoing]:
    """Initial phase plus ``steps`` steps 100 ms apart, as the demo drives it."""
    out = sim.initial_signals(start_ms)
    out += sim.initial_grants(start_ms + 500) + sim.malformed(start_ms + 500)
    for i in range(steps):
        out += sim.step(start_ms + 600 + i * 100, per_step)
    return out


def test_same_seed_same_records() -> None:
    a = run_sim(Simulator(42, run_id="t"), T0, 300)
    b = run_sim(Simulator(42, run_id="t"), T0, 300)
    assert [(o.topic, o.key, o.value) for o in a] == [(o.topic, o.key, o.value) for o in b]


def test_other_seed_other_records() -> None:
    a = run_sim(Simulator(1, run_id="t"), T0, 100)
    b = run_sim(Simulator(2, run_id="t"), T0, 100)
    assert [o.value for o in a] != [o.value for o in b]


def test_population() -> None:
    sim = Simulator(3, users=20, agents=5)
    users = [s for s in sim.subjects.values() if s.type == "user"]
    agents = [s for s in sim.subjects.values() if s.type == "agent"]
    assert len(users) == 20 and len(agents) == 5
    assert all(s.roles == ("employee",) and 1 <= len(s.devices) <= 2 for s in users)
    assert all(s.roles == ("agent",) and s.on_behalf_of in sim.subjects for s in agents)


def test_initial_signals_make_everyone_healthy() -> None:
    sim = Simulator(5, run_id="t")
    records = sim.initial_signals(T0)
    by_subject: dict[str, dict[str, Any]] = {}
    for o in records:
        assert o.kind == "signal" and not o.risky
        assert o.record is not None
        signal = validate_signal(json.loads(o.value))
        assert signal.subject_key == o.key
        assert o.topic == SIGNAL_TOPIC_OF_TYPE[signal.type]
        by_subject.setdefault(o.key, {})[signal.type] = signal.attributes
    for key in sim.subjects:
        seen = by_subject[key]
        assert seen["risk-level-change"]["current_level"] == "LOW"
        assert seen["network-context"]["zone"] in ("corp", "vpn")
    devices = [
        o.record["attributes"]
        for o in records
        if o.record is not None and o.record["type"] == "device-compliance-change"
    ]
    assert {d["device_id"] for d in devices} == {
        d for s in sim.subjects.values() for d in s.devices
    }
    assert all(d["current_status"] == "compliant" for d in devices)


def test_grants_have_the_shape_the_policies_expect() -> None:
    sim = Simulator(9, run_id="t")
    sim.initial_signals(T0)
    grants = sim.initial_grants(T0)
    assert len(grants) == 20 * 3 + 5 * 2
    for o in grants:
        assert o.topic == TOPICS.grants and o.kind == "grant"
        raw = json.loads(o.value)
        ev = validate_grant_event(raw)
        assert ev.op == "issued" and ev.subject_key == o.key and ev.grant is not None
        assert o.track_id == f"{ev.grant_id}@{T0}"
        g = ev.grant
        assert g["session_id"] and g["expires_at"] > g["issued_at"]
        if g["principal"]["type"] == "user":
            assert g["principal"]["roles"] == ["employee"]
            assert g["resource"]["kind"] == "document"
            assert g["actions"] in (["read"], ["read", "write"])
            assert g["device_id"] in sim.subjects[o.key].devices
            assert g["on_behalf_of"] == []
        else:
            assert g["principal"]["roles"] == ["agent"]
            assert g["resource"]["kind"] == "tool"
            assert g["actions"] == ["invoke"]
            assert g["device_id"] is None
            assert g["on_behalf_of"][0].startswith("user:")


def test_steady_stream_validates_and_has_risky_signals_and_new_grants() -> None:
    sim = Simulator(11, run_id="t")
    sim.initial_signals(T0)
    sim.initial_grants(T0)
    kinds: Counter[str] = Counter()
    risky_types: Counter[str] = Counter()
    signals = grants = 0
    for i in range(600):
        step = sim.step(T0 + 3_000 + i * 100, 5)
        assert sum(o.kind == "signal" for o in step) == 5
        for o in step:
            raw = json.loads(o.value)
            if o.kind == "grant":
                grants += 1
                assert validate_grant_event(raw).subject_key == o.key
                continue
            signals += 1
            signal = validate_signal(raw)
            assert signal.subject_key == o.key and signal.event_id == o.track_id
            kinds[signal.type] += 1
            if o.risky:
                risky_types[signal.type] += 1
    assert signals == 3000
    assert grants > 20, "revoked grants must be replaced by new ones"
    assert 0.01 < sum(risky_types.values()) / signals < 0.08
    assert set(risky_types) >= {
        "device-compliance-change",
        "risk-level-change",
        "network-context",
        "session-revoked",
        "account-disabled",
        "credential-compromise",
    }
    # ... and what they broke is repaired later
    assert kinds["account-enabled"] and kinds["credential-change"]


def test_malformed_records_fail_where_intended() -> None:
    sim = Simulator(13, run_id="t")
    bad_json, unknown, bad_level = sim.malformed(T0)
    assert all(o.kind == "malformed" for o in (bad_json, unknown, bad_level))
    with pytest.raises(ValueError):
        json.loads(bad_json.value)
    for o in (unknown, bad_level):
        with pytest.raises(SignalInvalid):
            validate_signal(json.loads(o.value))


def test_rejects_impossible_population() -> None:
    with pytest.raises(ValueError):
        Simulator(users=0)
    with pytest.raises(ValueError):
        Simulator(agents=99)


# -- through the real pipeline --------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The worker's own pipeline (same policies and risk model), with JSON outputs."""
    settings = Settings(
        policies=POLICIES, risk_model=ROOT / "risk" / "model.yaml", output_format="json"
    )
    return build_pipeline(settings)


def feed(pipeline: Pipeline, records: list[tuple[int, Outgoing]]) -> Iterator[tuple[str, dict]]:
    """Process records one by one in send order (what one partition sees); yield outputs."""
    store = MemoryStore()
    for offset, (now_ms, o) in enumerate(records):
        rec = InRecord(
            o.topic,
            0,
            offset,
            o.key.encode(),
            o.value,
            [("content-type", b"application/json")],
            now_ms,
        )
        result = pipeline.process([rec], store, now_ms)
        store.write(result.changed_states)
        for out in result.outputs:
            yield out.topic, json.loads(out.value)


def test_pipeline_revokes_only_what_the_risky_signals_break(pipeline: Pipeline) -> None:
    sim = Simulator(21, run_id="p")
    start = int(time.time() * 1000)  # grant expiry is checked against the real clock
    timed = [(start, o) for o in sim.initial_signals(start)]
    timed += [(start + 500, o) for o in sim.initial_grants(start + 500)]
    timed += [(start + 500, o) for o in sim.malformed(start + 500)]
    for i in range(400):
        now = start + 600 + i * 100
        timed += [(now, o) for o in sim.step(now, 5)]
    outputs = list(feed(pipeline, timed))

    dead = [v for t, v in outputs if t == "signals.deadletter"]
    assert len(dead) == 3, [d["reason"] for d in dead]
    revocations = [v for t, v in outputs if t == "authz.revocations"]
    decisions = [v for t, v in outputs if t == "authz.decisions"]
    assert not [r for r in revocations if r["cause"]["kind"] != "signal"], (
        "a grant was revoked on issue: the simulator issued it to an unhealthy subject"
    )
    risky_ids = {o.track_id for _, o in timed if o.risky}
    assert {r["cause"]["event_id"] for r in revocations} <= risky_ids
    assert {r["rule"] for r in revocations} >= {
        "deny-high-risk",
        "write-needs-compliant-device",
        "deny-revoked-session",
    }
    assert all(d["errors"] == [] for d in decisions)

    # The simulator's model of which grants are gone agrees with the pipeline.
    issued = {json.loads(o.value)["grant_id"] for _, o in timed if o.kind == "grant"}
    still_held = {gid for s in sim.subjects.values() for gid in s.grants}
    assert {r["grant_id"] for r in revocations} == issued - still_held


def test_bad_input_throughout_is_dead_lettered_with_every_reason(pipeline: Pipeline) -> None:
    sim = Simulator(23, run_id="m")
    start = int(time.time() * 1000)
    timed = [(start, o) for o in sim.initial_signals(start)]
    bad = [sim.one_malformed(start + 100 + i) for i in range(5)]
    assert all(o.kind == "malformed" for o in bad)
    outputs = list(feed(pipeline, timed + [(start + 200, o) for o in bad]))
    reasons = sorted(v["reason"] for t, v in outputs if t == "signals.deadletter")
    assert len(reasons) == 5
    for expected in (
        "belongs on the device topic",
        "expected a JSON object, got array",
        "invalid JSON",
        "unsupported signal type 'impossible-travel'",
        "attributes.current_level",
    ):
        assert any(expected in r for r in reasons), (expected, reasons)
