"""``VIGIL_FETCH_TRACE``: a worker writes a timing trace of its fetch requests, hand-overs and
batches (the diagnostics behind docs/performance.md's latency reading)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from tests.pipeline.test_pipeline_e2e import grant
from tests.pipeline.worker_harness import Worker


async def test_the_trace_times_fetches_handovers_and_batches(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    trace = tmp_path / "trace" / "fetch.jsonl"
    worker = start_worker()
    worker.extra_env["VIGIL_FETCH_TRACE"] = str(trace)
    await worker.start()
    user = f"u-{uuid.uuid4().hex[:8]}"
    await worker.produce("grants", [grant(f"{user}-g{i}", user, ["read"], "D1") for i in range(3)])
    await worker.wait_processed()
    worker.stop()  # the trace is flushed at stop
    events = [orjson.loads(line) for line in trace.read_bytes().splitlines()]
    kinds = {e["e"] for e in events}
    assert kinds == {"fetch", "handover", "batch"}, kinds
    fetches = [e for e in events if e["e"] == "fetch"]
    assert all(f["sent"] <= f["received"] for f in fetches)
    assert any(f["data"] for f in fetches)
    handovers = [e for e in events if e["e"] == "handover"]
    batches = [e for e in events if e["e"] == "batch"]
    # 3 grants, then per grant a subscribe to its device subject and the state record back
    # (vigil.subscriptions, docs/delegation.md): 9 input records, each handed over and applied
    assert sum(h["n"] for h in handovers) == sum(b["n"] for b in batches) == 9
    assert all(h["ts_min"] <= h["ts_max"] for h in handovers)
    assert handovers[0]["t"] <= batches[0]["start"]
    assert all(b["start"] <= b["sent"] <= b["end"] for b in batches)
    assert batches[-1]["held"] == 0
    # every applied record's time split: produced -> handed over -> its batch's start
    assert sum(len(b["age"]) for b in batches) == sum(len(b["wait"]) for b in batches) == 9
    assert all(w >= 0 for b in batches for w in b["wait"])


async def test_no_trace_without_the_setting(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker()
    await worker.start()
    user = f"u-{uuid.uuid4().hex[:8]}"
    await worker.produce("grants", [grant(f"{user}-g", user, ["read"], "D1")])
    await worker.wait_processed()
    worker.stop()
    assert not list(tmp_path.rglob("*.jsonl"))
