"""The pipeline's CPU cost without Kafka: ``Pipeline.process`` on batches of 2,000 records with a
real RocksDB store, real policies and codecs. Separates Vigil's own cost from broker and client
cost; run with ``.venv/bin/python -m bench.pipeline_inprocess [--subjects N]``."""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from streams.policy import PolicyEngine
from streams.processing.pipeline import Pipeline, Topics
from streams.processing.records import InRecord
from streams.state.risk import RiskModel
from streams.state.store import RocksStore

ROOT = Path(__file__).resolve().parents[1]
T0 = 1795946400000
NOW = T0 + 3_600_000
BATCH = 2000
TOPICS = Topics(
    signals=frozenset({"signals.device", "signals.risk", "signals.network"}),
    grants="authz.grants",
    decisions="authz.decisions",
    revocations="authz.revocations",
    deadletter="signals.deadletter",
)


class Feed:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, topic: str, user: int, value: dict[str, Any]) -> InRecord:
        self.offset += 1
        return InRecord(
            topic, 0, self.offset, f"user:u{user}".encode(), orjson.dumps(value), [], NOW
        )


def signal(user: int, eid: str, kind: str, at: int, attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": kind,
        "subject": {"type": "user", "id": f"u{user}"},
        "source": "bench",
        "event_time": at,
        "attributes": attrs,
    }


def run(pipeline: Pipeline, store: RocksStore, records: list[InRecord]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process and outputs of processing ``records``. The CPU
    time is the steadier figure on a shared machine: other processes do not inflate it."""
    started = time.perf_counter()
    cpu = time.process_time()
    outputs = 0
    for i in range(0, len(records), BATCH):
        result = pipeline.process(records[i : i + BATCH], store, NOW)
        store.write(result.changed_states)
        pipeline.flush_metrics()
        outputs += len(result.outputs)
    return time.perf_counter() - started, time.process_time() - cpu, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--signals", type=int, default=20000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-inprocess-"))
    try:
        store = RocksStore(tmp / "db")
        pipeline = Pipeline(
            TOPICS,
            PolicyEngine.from_directory(ROOT / "policies"),
            RiskModel.from_file(ROOT / "risk" / "model.yaml"),
        )
        feed = Feed()
        setup: list[InRecord] = []
        for u in range(args.subjects):
            for kind, attrs in (
                ("device-compliance-change", {"device_id": "D1", "current_status": "compliant"}),
                ("network-context", {"ip": "10.0.0.1", "zone": "corp", "country": "DE"}),
            ):
                setup.append(feed("signals.device", u, signal(u, f"s{u}{kind}", kind, T0, attrs)))
            for g in range(10):
                grant = {
                    "op": "issued",
                    "grant_id": f"u{u}-g{g}",
                    "principal": {"id": f"u{u}", "type": "user", "roles": ["employee"]},
                    "resource": {"kind": "document", "id": f"d{g}", "attr": {"owner": "x"}},
                    "actions": ["read", "write"] if g % 2 else ["read"],
                    "session_id": "s1",
                    "device_id": "D1",
                    "issued_at": T0,
                }
                setup.append(feed("authz.grants", u, grant))
        took, _, outs = run(pipeline, store, setup)
        print(f"setup: {len(setup):,} records in {took:.1f}s ({len(setup) / took:,.0f}/s)")
        rng = random.Random(1)
        for share in (0.0, 0.2, 1.0):
            records = []
            for i in range(args.signals):
                u = rng.randrange(args.subjects)
                at = T0 + 1000 + i
                if rng.random() < share:
                    attrs = {
                        "current_level": rng.choice(["LOW", "MEDIUM"]),
                        "score": rng.randrange(60),
                    }
                    records.append(
                        feed(
                            "signals.risk",
                            u,
                            signal(u, f"r{share}{i}", "risk-level-change", at, attrs),
                        )
                    )
                else:
                    attrs = {"ip": "10.0.0.1", "zone": "corp", "country": "DE"}
                    records.append(
                        feed(
                            "signals.network",
                            u,
                            signal(u, f"n{share}{i}", "network-context", at, attrs),
                        )
                    )
            took, cpu, outs = run(pipeline, store, records)
            print(
                f"{share:.0%} state-changing: {len(records) / took:,.0f} signals/s, "
                f"{outs / took:,.0f} outputs/s ({outs:,} outputs); CPU {cpu / len(records) * 1e6:.1f} "
                f"µs/signal, {cpu / max(outs, 1) * 1e6:.1f} µs/output"
            )
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
