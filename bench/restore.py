"""(h) Restore: a fresh ``vigil worker`` with an EMPTY data dir, from start to ready.

The state is the one (g) loaded (``results["memory"]["state"]``: its topics, changelog and group
stay on the broker after that worker stopped); when (g) did not run in this invocation, (g) runs
first into a scratch result to write it. Then:

1. the changelog is read once from the beginning to its true end (``read_to_end``, which knows
   Tansu's short ListOffsets) by an assigned consumer: records and bytes (key + value as stored,
   ``serialized_key_size + serialized_value_size``; record-batch framing not included), divided
   by the state changes of the load (every preload signal and every grant changes state);
2. a new worker starts on the same topics and group with an empty data dir; the clock runs from
   process start to ``/healthz`` = 200 (``vigil health --wait`` semantics: partitions assigned
   and restored). The worker's own ``vigil_changelog_restore_seconds`` (sum over partitions) and
   ``vigil_changelog_restored_records_total`` separate the replay from process start + group
   join; its RSS peak (``VmHWM``) shows what the replay costs in memory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import memory
from bench.events import PARTITIONS
from bench.worker import Worker, topic_names
from streams.kafka.quirks import read_to_end
from streams.kafka.security import PLAINTEXT

TARGET_SECONDS = 60.0  # issue 10: ≤ 60 s to restore 1M subjects
FULL_STATE_SUBJECTS = 1_100_000  # (g)'s full plan: 1M signal-only + 100k subjects with grants


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def changelog_size(bootstrap: str, topic: str) -> dict[str, int]:
    """Records and key+value bytes in every partition of ``topic``, read to the true end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **PLAINTEXT.client_kwargs(),
    )
    await consumer.start()
    totals = {"records": 0, "bytes": 0}

    def count(record: Any) -> None:
        totals["records"] += 1
        totals["bytes"] += max(0, record.serialized_key_size) + max(0, record.serialized_value_size)

    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        await read_to_end(consumer, parts, count, max_records=10_000)
    finally:
        await consumer.stop()
    return totals


def parse_metric(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (exact sample name, any labels) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def run_restore(bootstrap: str, plan: Any, results: dict[str, Any], tmp: Path) -> None:
    """Part (h); see the module docstring. Fills ``results["restore"]``."""
    state = results.get("memory", {}).get("state")
    if state is None:
        say("(h) loading the state with (g) first")
        scratch: dict[str, Any] = {}
        await memory.run_memory(bootstrap, plan, scratch, tmp)
        state = scratch["memory"]["state"]
    topics = topic_names(state["prefix"])
    out: dict[str, Any] = {"state": state}
    results["restore"] = out
    size = await changelog_size(bootstrap, topics["changelog"])
    out["changelog_records"] = size["records"]
    out["changelog_bytes"] = size["bytes"]
    changes = state["state_changes"]
    out["changelog_bytes_per_state_change"] = round(size["bytes"] / changes, 1) if changes else None
    out["changelog_records_per_state_change"] = (
        round(size["records"] / changes, 3) if changes else None
    )
    say(f"(h) changelog: {size['records']:,} records, {size['bytes']:,} bytes (key + value)")

    worker = Worker(bootstrap, tmp / "restored", topics, group=state["group"])
    started = time.monotonic()
    worker.start()
    try:
        await worker.wait_healthy(timeout=max(90.0, plan.drain_timeout_s))
        out["start_to_healthy_s"] = round(time.monotonic() - started, 2)
        async with worker.session().get(f"http://127.0.0.1:{worker.port}/metrics") as resp:
            text = await resp.text()
        out["replay_seconds"] = round(parse_metric(text, "vigil_changelog_restore_seconds_sum"), 2)
        out["restored_records"] = int(parse_metric(text, "vigil_changelog_restored_records_total"))
        out["subjects_after"] = int(parse_metric(text, "vigil_state_subjects"))
        out["active_grants_after"] = int(parse_metric(text, "vigil_active_grants"))
        out["rss"] = memory.rss(worker.pid)
        if out["replay_seconds"]:
            out["records_per_s"] = round(out["restored_records"] / out["replay_seconds"])
        out["records_per_s_start_to_healthy"] = round(
            out["restored_records"] / out["start_to_healthy_s"]
        )
        out["subjects"] = state["signal_subjects"] + state["grant_subjects"]
        out["projected_1m_s"] = project(out)
        say(
            f"(h) empty data dir → healthy in {out['start_to_healthy_s']} s "
            f"({out['restored_records']:,} records replayed in {out['replay_seconds']} s)"
        )
    finally:
        await worker.stop()


def project(out: dict[str, Any]) -> float | None:
    """Seconds to healthy for the full state (1M subjects with signal state + 100k × 10 grants),
    linear in subjects: the fixed part of this run (process start + group join = time to healthy
    minus replay) + the measured replay time scaled by subjects. Exact in shape only when the run
    kept (g)'s 10:1 ratio of signal-only to grant subjects (both loads finished)."""
    if not out.get("subjects") or not out.get("restored_records") or not out["replay_seconds"]:
        return None
    scale = FULL_STATE_SUBJECTS / out["subjects"]
    fixed = out["start_to_healthy_s"] - out["replay_seconds"]
    return round(fixed + out["replay_seconds"] * scale, 1)


def markdown(res: dict[str, Any]) -> list[str]:
    """The (h) lines of the results section (nothing when the part did not run)."""
    r = res.get("restore")
    if not r or "start_to_healthy_s" not in r:
        return [] if not r else ["", f"(h) Restore: incomplete run: `{r}`"]
    st = r["state"]
    proj = r.get("projected_1m_s")
    lines = [
        "",
        f"(h) Restore of {st['signal_subjects']:,} subjects with signal state + "
        f"{st['grant_subjects']:,} subjects × 10 grants ({st['state_changes']:,} state changes "
        "during the load) into a new worker with an empty data dir:",
        "",
        "| measurement | value |",
        "|---|---:|",
        f"| changelog records / key+value bytes | {r['changelog_records']:,} / {r['changelog_bytes']:,} |",
        f"| changelog bytes per state change (records per state change) | "
        f"**{r['changelog_bytes_per_state_change']}** ({r['changelog_records_per_state_change']}) |",
        f"| process start → `/healthz` 200 | **{r['start_to_healthy_s']} s** |",
        f"| of which changelog replay (worker's `vigil_changelog_restore_seconds`, all partitions) "
        f"| {r['replay_seconds']} s |",
        f"| records replayed, records/s during replay (start → healthy) "
        f"| {r['restored_records']:,}, **{r.get('records_per_s', 0):,}/s** "
        f"({r['records_per_s_start_to_healthy']:,}/s) |",
        f"| restored worker VmRSS / VmHWM | {r['rss']['VmRSS'] / 2**20:,.1f} / "
        f"{r['rss']['VmHWM'] / 2**20:,.1f} MiB |",
        f"| subjects / active grants after restore (worker gauges) | {r['subjects_after']:,} / "
        f"{r['active_grants_after']:,} |",
    ]
    if proj is not None:
        lines.append(
            f"\n- Full state (1M subjects + 100k × 10 grants) projected linearly in subjects from this run: **{proj} s** to healthy "
            f"against the {TARGET_SECONDS:.0f} s target → "
            f"**{'met' if proj <= TARGET_SECONDS else 'not met'}**."
        )
    return lines
