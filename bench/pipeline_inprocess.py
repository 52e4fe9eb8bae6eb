"""The pipeline's CPU cost without Kafka: ``Pipeline.process`` on batches of 2,000 records with a
real RocksDB store, real policies and codecs, on the records of part (b) of the bench (the same
``bench.events.World``: 10 grants per subject, each with its own session, one device per
subject; no-op telemetry repeating network context or risk level; risk/zone toggles; 5 % of
the changing signals turn the device not-compliant). Separates Vigil's own cost from broker and
client cost.

    .venv/bin/python -m bench.pipeline_inprocess [--subjects N] [--signals N] [--repeat N]

Prints, per phase (no-op telemetry only, the realistic mix, 100 % state-changing), the CPU µs
per signal, per output and per decision (``time.process_time``: on a shared machine the steady
figure, other processes do not inflate it), the minimum over ``--repeat`` runs of fresh signals
of the same shape. Every run of a phase is generated from the same seed, so two versions of the
code process exactly the same records (A/B: run both, alternating)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.events import Out, World
from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline, Topics
from streams.processing.records import InRecord
from streams.state.risk import RiskModel
from streams.state.store import RocksStore

ROOT = Path(__file__).resolve().parents[1]
BATCH = 2000
TOPIC = {kind: f"signals.{kind}" for kind in ("device", "network", "risk")} | {
    "grants": "authz.grants"
}
TOPICS = Topics(
    signals=frozenset({"signals.device", "signals.risk", "signals.network"}),
    grants="authz.grants",
    decisions="authz.decisions",
    revocations="authz.revocations",
    deadletter="signals.deadletter",
)
PHASES = {
    "noop": ("no-op telemetry", 0.0),
    "mix": ("mix 80/20", 0.2),
    "changing": ("100% changing", 1.0),
}
REVOKING = 0.05  # as part (b): share of the changing signals that turn the device not-compliant


class Feed:
    """``bench.events.Out`` -> ``InRecord`` on one partition, offsets counting up per topic."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.offsets: dict[str, int] = {}

    def __call__(self, outs: list[Out]) -> list[InRecord]:
        records = []
        for out in outs:
            topic = TOPIC[out.kind]
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
            records.append(InRecord(topic, 0, offset, out.key, out.value, [], self.now_ms))
        return records


def run(
    pipeline: Pipeline, store: RocksStore, records: list[InRecord], now_ms: int
) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds of this process, outputs and decisions of ``records``."""
    started = time.perf_counter()
    cpu = time.process_time()
    outputs = decisions = 0
    for i in range(0, len(records), BATCH):
        result = pipeline.process(records[i : i + BATCH], store, now_ms)
        store.write(result.changed_states)
        pipeline.flush_metrics()
        outputs += len(result.outputs)
        decisions += sum(1 for o in result.outputs if o.topic == TOPICS.decisions)
    return time.perf_counter() - started, time.process_time() - cpu, outputs, decisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--signals", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per phase; the minimum counts")
    parser.add_argument("--phases", default="noop,mix,changing", help="comma-separated subset")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-inprocess-"))
    now_ms = int(time.time() * 1000)
    try:
        store = RocksStore(tmp / "db")
        pipeline = Pipeline(
            TOPICS,
            PolicyEngine.from_directory(ROOT / "policies"),
            RiskModel.from_file(ROOT / "risk" / "model.yaml"),
        )
        world = World.create(args.subjects)
        feed = Feed(now_ms)
        subjects = range(args.subjects)
        setup = feed(list(world.preload_signals(subjects)) + list(world.grants(subjects)))
        took, _, _, _ = run(pipeline, store, setup, now_ms)
        print(f"setup: {len(setup):,} records in {took:.1f}s ({len(setup) / took:,.0f}/s)")
        n = args.signals
        for phase in args.phases.split(","):
            name, share = PHASES[phase]
            runs = []
            for _ in range(args.repeat):
                records = feed(world.mix(n, subjects, share, REVOKING, seed=7))
                runs.append(run(pipeline, store, records, now_ms))
            took, cpu, outs, decisions = min(runs, key=lambda r: r[1] / max(r[3], 1))
            print(
                f"{name}: {n / took:,.0f} signals/s wall; CPU {cpu / n * 1e6:.1f} µs/signal, "
                f"{cpu / max(outs, 1) * 1e6:.1f} µs/output, "
                f"{cpu / max(decisions, 1) * 1e6:.1f} µs/decision "
                f"({outs:,} outputs, {decisions:,} decisions; the run of {args.repeat} with the "
                "least CPU per decision); every run, µs/signal: "
                + " ".join(f"{r[1] / n * 1e6:.1f}" for r in runs)
            )
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
