"""The cross-subject latency figure of ``make bench`` (part (c), ``bench.latency.paced_run``
with ``cross_share``) runs end to end on tiny settings: agents act for users on other
partitions, disabling a user revokes the agent's grant, and the report renders the cross-subject
line beside the same-subject one. No timing thresholds: figures are not judged."""

from __future__ import annotations

import uuid
from pathlib import Path

from bench import report
from bench.events import PARTITIONS, World, agent_key, partition_of_key, subject_key
from bench.kafka import produce_batched, producer
from bench.latency import paced_run
from bench.worker import Worker, topic_names
from streams.kafka.admin import ensure_topics


async def test_cross_subject_latency_runs_end_to_end(broker: str, tmp_path: Path) -> None:
    topics = topic_names(f"t.crossbench.{uuid.uuid4().hex[:8]}.")
    await ensure_topics(
        broker,
        [t for r, t in topics.items() if r != "changelog"],
        PARTITIONS,
        compacted=[topics["changelog"]],
    )
    worker = Worker(broker, tmp_path / "vigil", topics, group=f"crossbench-{uuid.uuid4().hex[:6]}")
    worker.start()
    try:
        await worker.wait_healthy()
        world = World.create(20)
        users = range(20, 50)
        # the bench's agents and users do not share partitions as a rule: most pairs differ
        apart = sum(
            partition_of_key(agent_key(i)) != partition_of_key(subject_key(i)) for i in users
        )
        assert apart > len(users) // 2
        prod = producer(broker)
        await prod.start()
        try:
            n = await produce_batched(prod, world.delegations(users), topics)
        finally:
            await prod.stop()
        await worker.wait_for("grants", n, 60)
        base = (await worker.counters()).counts["signals"]

        async def drained(sent: int) -> None:
            await worker.wait_for("signals", base + sent, 60, every=0.2)

        lat = await paced_run(
            broker,
            topics,
            world,
            rate=20,
            seconds=1.5,
            noop_subjects=range(0, 20),
            fresh_subjects=range(0),
            revoke_share=0.0,
            toggle_share=0.0,
            tmp=tmp_path,
            drained=drained,
            settle=3.0,
            cross_subjects=users,
            cross_share=0.5,
        )
    finally:
        await worker.stop()
    crossing = lat["signals_by_kind"]["cross"]
    assert crossing > 0
    assert lat["revocation"]["cross_signals_without_revocation"] == 0
    assert lat["revocation"]["cross_subject"]["p50_ms"] > 0
    assert "cross-subject (delegation)" in report.fmt_latency(lat)
    assert any("cross-subject (delegation)" in line for line in report._latency_table(lat))
