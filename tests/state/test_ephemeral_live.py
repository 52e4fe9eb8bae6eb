"""Ephemeral workloads on the real broker and real RocksDB: a burst of short-lived grants of
``workload`` subjects (SPIFFE IDs) expires through the background sweep, each with its expiry
Decision and Revocation, and leaves the store and the changelog's live keys exactly as they were
before the burst (no tombstone inside the state, no emptied subject key; a restore from the
changelog alone brings nothing back). Workload ids that are no SPIFFE ID are dead-lettered."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from streams.processing.dryrun import read_changelog
from streams.processing.runner import PipelineRunner
from streams.state.store import GRANT_PREFIX, SIGNAL_PREFIX
from tests.pipeline.test_pipeline_e2e import grant
from tests.pipeline.worker_harness import Worker
from tests.state.test_pruning_live import runner_for

BURST = 120
WORKLOADS = 12
LIFETIME_MS = 1500


def workload_grant(gid: str, spiffe_id: str, now_ms: int) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": spiffe_id, "type": "workload", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": f"doc-{gid}", "attr": {"owner": "someone"}},
        "actions": ["read"],
        "issued_at": now_ms,
        "expires_at": now_ms + LIFETIME_MS,
    }


def state_keys(runner: PipelineRunner) -> set[bytes]:
    """The subject keys (signal and grant states) of every owned partition."""
    return {
        key
        for store in runner.stores.values()
        for prefix in (SIGNAL_PREFIX, GRANT_PREFIX)
        for key, _ in store.items(prefix)
    }


async def changelog_keys(harness: Worker) -> set[bytes]:
    stores = await read_changelog(harness.bootstrap, harness.topics["changelog"])
    return {
        key
        for store in stores.values()
        for prefix in (SIGNAL_PREFIX, GRANT_PREFIX)
        for key, _ in store.items(prefix)
    }


def expired_total() -> float:
    return REGISTRY.get_sample_value("vigil_grants_expired_total") or 0


def validation_letters() -> float:
    return REGISTRY.get_sample_value("vigil_deadletters_total", {"error": "validation"}) or 0


async def test_a_burst_of_workload_grants_expires_back_to_the_baseline(
    broker: str, tmp_path: Path
) -> None:
    harness = Worker(broker, tmp_path / "harness")
    await harness.create_topics()
    tag = uuid.uuid4().hex[:6]
    await harness.produce("grants", [grant(f"{tag}-long", f"u-{tag}", ["read"], "D1")])
    runner = runner_for(harness, tmp_path / "state", retention_seconds=0)
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        await harness.wait_processed(timeout=60)
        baseline = state_keys(runner)
        # the user's grant, and its device D1's subscription to it (docs/delegation.md)
        assert baseline == {f"g:user:u-{tag}".encode(), b"g:device:D1"}
        assert await changelog_keys(harness) == baseline

        before = expired_total()
        now_ms = int(time.time() * 1000)
        ids = [f"spiffe://{tag}.example.org/ns/prod/sa/job-{i}" for i in range(WORKLOADS)]
        burst = [workload_grant(f"{tag}-w{i}", ids[i % WORKLOADS], now_ms) for i in range(BURST)]
        await harness.produce("grants", burst)
        await harness.wait_processed(timeout=60)

        deadline = time.monotonic() + 60
        while state_keys(runner) != baseline:  # the sweep expires them, then deletes the keys
            assert time.monotonic() < deadline, len(state_keys(runner))
            await asyncio.sleep(0.2)
        assert expired_total() - before == BURST
    finally:
        await runner.stop()
        task.cancel()

    # Every grant was active, then expired with its Decision and Revocation (cause expiry).
    revocations = [
        r for r in await harness.read("revocations") if r["grant_id"].startswith(f"{tag}-w")
    ]
    assert len(revocations) == BURST
    assert {r["cause"]["kind"] for r in revocations} == {"expiry"}
    # The changelog ends each workload's grant state with a tombstone: its live keys are the
    # baseline's, so a compacted changelog holds nothing of the burst.
    assert await changelog_keys(harness) == baseline

    # Restored from the changelog alone (an empty data dir): nothing of the burst comes back.
    again = runner_for(harness, tmp_path / "empty", retention_seconds=0)
    await again.start()
    task = asyncio.create_task(again.run())
    try:
        await asyncio.wait_for(again.ready.wait(), 60)
        assert state_keys(again) == baseline
    finally:
        await again.stop()
        task.cancel()


async def test_workload_ids_that_are_no_spiffe_id_are_dead_lettered(
    broker: str, tmp_path: Path
) -> None:
    harness = Worker(broker, tmp_path / "harness")
    await harness.create_topics()
    tag = uuid.uuid4().hex[:6]
    now_ms = int(time.time() * 1000)
    bad = {
        "spiffe://Example.org/app": "lowercase",
        "spiffe://example.org:8443/app": "no port",
        "spiffe://example.org/a/../b": "'..' segment",
        "spiffe://example.org": "needs a path",
        "https://example.org/app": "must start with 'spiffe://'",
    }
    good = f"spiffe://{tag}.example.org/ns/prod/sa/api"
    records = [workload_grant(f"{tag}-bad{i}", sid, now_ms) for i, sid in enumerate(bad)]
    records.append(workload_grant(f"{tag}-good", good, now_ms + 60_000))
    signal = {
        "event_id": f"{tag}-sig",
        "type": "risk-level-change",
        "subject": {"type": "workload", "id": "spiffe://example.org/x?y=1"},
        "source": "ueba",
        "event_time": now_ms,
        "attributes": {"current_level": "HIGH"},
    }
    await harness.produce("grants", records)
    await harness.produce("risk", [signal])
    before = validation_letters()
    runner = runner_for(harness, tmp_path / "state", retention_seconds=0)
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        await harness.wait_processed(timeout=60)
        assert f"g:workload:{good}".encode() in state_keys(runner)
    finally:
        await runner.stop()
        task.cancel()
    letters = [d for d in await harness.read("deadletter") if d["error"] == "validation"]
    assert len(letters) == len(bad) + 1
    assert validation_letters() - before == len(bad) + 1
    reasons = " | ".join(d["reason"] for d in letters)
    for why in bad.values():
        assert why in reasons, (why, reasons)
    assert "query" in reasons  # the signal's subject
