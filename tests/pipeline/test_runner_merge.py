"""The runner's merge in process, on the embedded broker, with batches much smaller than the
backlog: buffers fill up, their partitions are paused and resumed, and still every record is
applied once, in produced order, and counted in the offsets."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from streams.app import build_pipeline
from streams.processing.runner import PipelineRunner, RunnerConfig
from streams.settings import Settings
from tests.pipeline.test_pipeline_e2e import device_signal, grant
from tests.pipeline.worker_harness import ROOT, Worker

BACKLOG = 400


async def test_small_batches_with_paused_inputs_apply_a_backlog_in_order(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    harness = start_worker()  # only for its topics, group and helpers: no subprocess
    await harness.create_topics()
    run = uuid.uuid4().hex[:6]
    users = [f"rm{run}-{i}" for i in range(BACKLOG)]
    await harness.produce(
        "device",
        [device_signal(f"{u}-ok", u, "D1", "compliant", "2026-11-29T08:00:00Z") for u in users],
    )
    await harness.produce("grants", [grant(f"{u}-g", u, ["read", "write"], "D1") for u in users])
    topics = harness.topics
    settings = Settings(
        broker=harness.bootstrap,
        policies=ROOT / "policies",
        risk_model=ROOT / "risk" / "model.yaml",
        **{f"topic_{name}": topic for name, topic in topics.items()},
    )
    runner = PipelineRunner(
        RunnerConfig(
            bootstrap=harness.bootstrap,
            group_id=harness.group,
            input_topics=settings.input_topics,
            changelog_topic=topics["changelog"],
            data_dir=tmp_path / "state",
            max_batch=25,  # a partition holds 200 grants: their buffer fills and is paused
            commit_interval_s=0.1,
        ),
        build_pipeline(settings),
    )
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        await harness.wait_processed(timeout=120)
    finally:
        await runner.stop()
        task.cancel()
    assert await harness.read("revocations") == []
    decisions = await harness.read("decisions")
    assert Counter((d["effect"], d["cause"]["kind"]) for d in decisions) == {
        ("EFFECT_ALLOW", "grant-issued"): BACKLOG
    }
