"""Pruning on the real broker and real RocksDB: a device entry no grant names, older than the
retention, is pruned by the background sweep through the changelog, and stays pruned after a
restart from the same data dir and from an empty one (restored from the changelog alone); the
entry a grant names is kept."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
from prometheus_client import REGISTRY

from streams.app import build_pipeline
from streams.processing.runner import PipelineRunner, RunnerConfig
from streams.settings import Settings
from streams.state.store import signal_key
from tests.pipeline.test_pipeline_e2e import device_signal, grant
from tests.pipeline.worker_harness import ROOT, Worker

OLD = "2026-01-01T00:00:00Z"  # long before the retention


def settings_for(harness: Worker, retention_seconds: int) -> Settings:
    return Settings(
        broker=harness.bootstrap,
        policies=ROOT / "policies",
        risk_model=ROOT / "risk" / "model.yaml",
        state_retention_seconds=retention_seconds,
        **{f"topic_{name}": topic for name, topic in harness.topics.items()},
    )


def runner_for(harness: Worker, data_dir: Path, retention_seconds: int) -> PipelineRunner:
    settings = settings_for(harness, retention_seconds)
    return PipelineRunner(
        RunnerConfig(
            bootstrap=harness.bootstrap,
            group_id=harness.group,
            input_topics=settings.input_topics,
            changelog_topic=harness.topics["changelog"],
            data_dir=data_dir,
            commit_interval_s=0.1,
        ),
        build_pipeline(settings),
    )


def devices(runner: PipelineRunner, user: str) -> set[str]:
    key = signal_key(f"user:{user}".encode())
    for store in runner.stores.values():
        raw = store.get(key)
        if raw is not None:
            return {d for d in orjson.loads(raw)["dims"] if d.startswith("device:")}
    raise AssertionError(f"no signal state for {user}")


def pruned_devices() -> float:
    return REGISTRY.get_sample_value("vigil_state_entries_pruned_total", {"kind": "device"}) or 0


async def test_an_unnamed_old_device_is_pruned_and_stays_pruned_after_restarts(
    broker: str, tmp_path: Path
) -> None:
    harness = Worker(broker, tmp_path / "harness")  # topics, group and helpers; no subprocess
    await harness.create_topics()
    user = f"prune-{uuid.uuid4().hex[:6]}"
    await harness.produce(
        "device",
        [
            device_signal(f"{user}-c1", user, "D1", "compliant", OLD),
            device_signal(f"{user}-c2", user, "D2", "compliant", OLD),
        ],
    )
    await harness.produce("grants", [grant(f"{user}-g1", user, ["read"], "D1")])

    before = pruned_devices()
    first = runner_for(harness, tmp_path / "state", retention_seconds=1)
    await first.start()
    task = asyncio.create_task(first.run())
    try:
        await harness.wait_processed(timeout=60)
        deadline = time.monotonic() + 60
        while devices(first, user) != {"device:D1"}:  # stamped by one sweep, pruned by a later
            assert time.monotonic() < deadline, devices(first, user)
            await asyncio.sleep(0.2)
    finally:
        await first.stop()
        task.cancel()
    assert pruned_devices() - before >= 1

    # Restarts without pruning (retention 0), so that an entry brought back would stay visible:
    # from the same data dir, then from an empty one (the changelog alone).
    for data_dir in (tmp_path / "state", tmp_path / "empty"):
        again = runner_for(harness, data_dir, retention_seconds=0)
        await again.start()
        task = asyncio.create_task(again.run())
        try:
            await asyncio.wait_for(again.ready.wait(), 60)
            assert devices(again, user) == {"device:D1"}, data_dir
        finally:
            await again.stop()
            task.cancel()
