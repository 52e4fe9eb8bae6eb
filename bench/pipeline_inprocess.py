"""The pipeline's CPU cost without Kafka: ``Pipeline.process`` on batches of 2,000 records with a
real RocksDB store, real policies and codecs. Separates Vigil's own cost from broker and client
cost; run with ``.venv/bin/python -m bench.pipeline_inprocess [--subjects N]``.

The default mode (``signals``) runs the records of part (b) (``bench.events.World``: 10 grants
per subject, each with its own session, one device per subject; no-op telemetry repeating
network context or risk level; risk/zone toggles; 5 % of the changing signals turn the device
not-compliant), per phase (``--phases noop,mix,changing``: no-op telemetry only, the realistic
mix, 100 % state-changing), ``--repeat`` runs of each from the same seed (so two versions of the
code process the same records; A/B: run both, alternating), and prints CPU µs per signal, per
output and per decision of the run with the least CPU per decision, and every run's µs/signal.

``--mode grants`` measures the grant-event path as ``make bench`` part (b) preloads it: per chunk
of subjects their three state signals, then their 10 grants each (the bench's grant shape), and
the ``vigil.subscriptions`` records those produce fed back in (all subjects on one partition)
until none is left; it prints CPU µs per grant event, split into the grant batches and the
subscription round trips (docs/performance.md)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.events import Out, World, grant_event, subject_id
from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline, Topics
from streams.processing.records import InRecord
from streams.state.risk import RiskModel
from streams.state.store import RocksStore

ROOT = Path(__file__).resolve().parents[1]
T0 = 1795946400000
NOW = T0 + 3_600_000
BATCH = 2000
SUBSCRIPTIONS = "vigil.subscriptions"
_TOPICS: dict[str, Any] = {
    "signals": frozenset({"signals.device", "signals.risk", "signals.network"}),
    "grants": "authz.grants",
    "decisions": "authz.decisions",
    "revocations": "authz.revocations",
    "deadletter": "signals.deadletter",
}
if "subscriptions" in Topics.__dataclass_fields__:  # so that older commits run it too
    _TOPICS["subscriptions"] = SUBSCRIPTIONS
TOPICS = Topics(**_TOPICS)
_last_outputs: list[Any] = []  # the outputs of the last ``run``


class Feed:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, topic: str, user: int, value: dict[str, Any]) -> InRecord:
        self.offset += 1
        return InRecord(
            topic, 0, self.offset, f"user:{subject_id(user)}".encode(), orjson.dumps(value), [], NOW
        )


def signal(user: int, eid: str, kind: str, at: int, attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": kind,
        "subject": {"type": "user", "id": subject_id(user)},
        "source": "bench",
        "event_time": at,
        "attributes": attrs,
    }


def state_signals(feed: Feed, user: int, at: int) -> list[InRecord]:
    """``bench.events.World.preload_signals``: device compliant, risk LOW, zone corp."""
    sid = subject_id(user)
    network = {"ip": "10.20.30.40", "country": "NL", "asn": 64500, "anomalies": [], "zone": "corp"}
    device = {
        "device_id": f"D-{sid}",
        "previous_status": "compliant",
        "current_status": "compliant",
    }
    return [
        feed(
            "signals.device", user, signal(user, f"d{user}", "device-compliance-change", at, device)
        ),
        feed(
            "signals.risk",
            user,
            signal(user, f"r{user}", "risk-level-change", at, {"current_level": "LOW"}),
        ),
        feed("signals.network", user, signal(user, f"n{user}", "network-context", at, network)),
    ]


def grant_load(pipeline: Pipeline, store: RocksStore, subjects: int, rounds: int) -> None:
    """Part (b)'s preload in process: CPU µs per grant event, min over ``rounds`` (each on new
    subjects), for the grant batches, the subscription round trips and both."""
    feed = Feed()
    per_chunk = BATCH // 10  # one batch of grants per chunk, as the worker sees them
    best: dict[str, float] = {}
    for r in range(rounds):
        cpu = {"grants": 0.0, "subscriptions": 0.0}
        records = 0
        first = r * subjects
        for start in range(first, first + subjects, per_chunk):
            users = range(start, min(start + per_chunk, first + subjects))
            signals = [rec for u in users for rec in state_signals(feed, u, T0 + u)]
            run(pipeline, store, signals)
            grants = [
                feed("authz.grants", u, grant_event(u, j, NOW - 60_000))
                for u in users
                for j in range(10)
            ]
            cpu["grants"] += run(pipeline, store, grants)[1]
            while True:
                pending = [
                    InRecord(SUBSCRIPTIONS, 0, 0, out.key, out.value, out.headers, NOW)
                    for out in _last_outputs
                    if getattr(out, "by_key", False)
                ]
                if not pending:
                    break
                for rec in pending:
                    feed.offset += 1
                    rec.offset = feed.offset
                records += len(pending)
                cpu["subscriptions"] += run(pipeline, store, pending)[1]
        events = subjects * 10
        line = {k: v / events * 1e6 for k, v in cpu.items()}
        line["total"] = sum(line.values())
        for k, v in line.items():
            best[k] = min(best.get(k, v), v)
        print(
            f"round {r + 1}: {events:,} grant events, {records:,} subscription records; CPU µs "
            f"per grant event: {line['total']:.1f} (grant batches {line['grants']:.1f}, "
            f"subscription round trips {line['subscriptions']:.1f})"
        )
    print(
        f"min over {rounds} rounds: CPU {best['total']:.1f} µs per grant event (grant batches "
        f"{best['grants']:.1f}, subscription round trips {best['subscriptions']:.1f})"
    )


def run(pipeline: Pipeline, store: RocksStore, records: list[InRecord]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process and outputs of processing ``records``. The CPU
    time is the steadier figure on a shared machine: other processes do not inflate it."""
    return run_at(pipeline, store, records, NOW)[:3]


def run_at(
    pipeline: Pipeline, store: RocksStore, records: list[InRecord], now_ms: int
) -> tuple[float, float, int, int]:
    """``run`` at the clock ``now_ms``; also counts the decisions."""
    started = time.perf_counter()
    cpu = time.process_time()
    outputs = decisions = 0
    del _last_outputs[:]
    for i in range(0, len(records), BATCH):
        result = pipeline.process(records[i : i + BATCH], store, now_ms)
        store.write(result.changed_states)
        pipeline.flush_metrics()
        outputs += len(result.outputs)
        decisions += sum(1 for o in result.outputs if o.topic == TOPICS.decisions)
        _last_outputs.extend(result.outputs)
    return time.perf_counter() - started, time.process_time() - cpu, outputs, decisions


PHASES = {
    "noop": ("no-op telemetry", 0.0),
    "mix": ("mix 80/20", 0.2),
    "changing": ("100% changing", 1.0),
}
REVOKING = 0.05  # as part (b): share of the changing signals that turn the device not-compliant
WORLD_TOPIC = {kind: f"signals.{kind}" for kind in ("device", "network", "risk")}
WORLD_TOPIC["grants"] = "authz.grants"


def world_records(outs: list[Out], offsets: dict[str, int], now_ms: int) -> list[InRecord]:
    """``bench.events.Out`` -> ``InRecord`` on one partition, offsets counting up per topic."""
    records = []
    for out in outs:
        topic = WORLD_TOPIC[out.kind]
        offset = offsets.get(topic, 0)
        offsets[topic] = offset + 1
        records.append(InRecord(topic, 0, offset, out.key, out.value, [], now_ms))
    return records


def signal_phases(
    pipeline: Pipeline, store: RocksStore, subjects: int, n: int, phases: str, repeat: int
) -> None:
    """The default mode: part (b)'s records, phase by phase (module docstring)."""
    now_ms = int(time.time() * 1000)
    world = World.create(subjects)
    offsets: dict[str, int] = {}
    everyone = range(subjects)
    setup = list(world.preload_signals(everyone)) + list(world.grants(everyone))
    took, _, _, _ = run_at(pipeline, store, world_records(setup, offsets, now_ms), now_ms)
    print(f"setup: {len(setup):,} records in {took:.1f}s ({len(setup) / took:,.0f}/s)")
    for phase in phases.split(","):
        name, share = PHASES[phase]
        runs = []
        for _ in range(repeat):
            outs = world.mix(n, everyone, share, REVOKING, seed=7)
            runs.append(run_at(pipeline, store, world_records(outs, offsets, now_ms), now_ms))
        took, cpu, outputs, decisions = min(runs, key=lambda r: r[1] / max(r[3], 1))

        def per(count: int, cpu: float = cpu) -> str:
            return f"{cpu / count * 1e6:.1f}" if count else "—"

        print(
            f"{name}: {n / took:,.0f} signals/s wall; CPU {cpu / n * 1e6:.1f} µs/signal, "
            f"{per(outputs)} µs/output, {per(decisions)} µs/decision "
            f"({outputs:,} outputs, {decisions:,} decisions; the run of {repeat} with the "
            "least CPU per decision); every run, µs/signal: "
            + " ".join(f"{r[1] / n * 1e6:.1f}" for r in runs)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--signals", type=int, default=20000)
    parser.add_argument("--mode", choices=["signals", "grants"], default="signals")
    parser.add_argument("--rounds", type=int, default=3, help="grants mode: min over rounds")
    parser.add_argument("--repeat", type=int, default=1, help="signals mode: runs per phase")
    parser.add_argument("--phases", default="noop,mix,changing", help="signals mode: a subset")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-inprocess-"))
    try:
        store = RocksStore(tmp / "db")
        pipeline = Pipeline(
            TOPICS,
            PolicyEngine.from_directory(ROOT / "policies"),
            RiskModel.from_file(ROOT / "risk" / "model.yaml"),
        )
        if args.mode == "grants":
            grant_load(pipeline, store, args.subjects, args.rounds)
            store.close()
            return
        signal_phases(pipeline, store, args.subjects, args.signals, args.phases, args.repeat)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
