"""(h) Restore: a fresh ``vigil worker`` with an EMPTY data dir, from start to ready.

The state is the one (g) loaded (``results["memory"]["state"]``: its topics, changelog and group
stay on the broker after that worker stopped); when (g) did not run in this invocation, (g) runs
first into a scratch result to write it. Then:

1. the changelog is read once from the beginning to its true end (``read_to_end``, which knows
   Tansu's short ListOffsets) by an assigned consumer: records and bytes (key + value as stored,
   ``serialized_key_size + serialized_value_size``; record-batch framing not included), divided
   by the state changes of the load (every preload signal and every grant changes state);
2. optionally (``scale_to``, 1M in the full plan) the changelog is grown to the target size by
   copies of the records (g) wrote: each extra signal-only subject gets the signal state of a
   loaded one, each extra grant subject the signal and grant states of a loaded one, under new
   subject keys on the partition their key hashes to. The bytes per subject are those the worker
   wrote; only the values repeat. The figures are then measured at the target size, not
   projected (the report says which);
3. a new worker starts on the same topics and group with an empty data dir; the clock runs from
   process start to ``/healthz`` = 200 (``vigil health --wait`` semantics: partitions assigned
   and restored). The worker's own ``vigil_changelog_restore_seconds`` (one observation per
   assignment, every partition restored at once) and ``vigil_changelog_restored_records_total``
   separate the replay from process start + group join; the worker's CPU seconds at that moment
   (``/proc/<pid>/stat``) are the figure a loaded machine does not distort; its RSS peak
   (``VmHWM``) shows what the replay costs in memory. The subject and grant gauges are counted
   after ready (``streams.state.counting``): the bench waits for them and reports when they
   were complete, and the RSS of the worker holding the whole state.

With ``profile`` (``bench.run --profile``), py-spy samples the restoring worker from just after
its start to ready, and again from ready until the counts are done; ``cpu_components`` splits
the worker's CPU seconds by what was on each sampled stack (``COMPONENTS``) and by thread
(native RocksDB threads are invisible to py-spy but not to ``/proc/<pid>/task``).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bench import memory
from bench.events import PARTITIONS, Out
from bench.kafka import produce_batched, producer
from bench.profile import Profiler, _short
from bench.worker import Worker, topic_names
from streams.kafka.quirks import read_to_end
from streams.kafka.security import PLAINTEXT

TARGET_SECONDS = 60.0  # issue 10: ≤ 60 s to restore 1M subjects
FULL_STATE_SUBJECTS = 1_100_000  # (g)'s full plan: 1M signal-only + 100k subjects with grants


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def changelog_size(
    bootstrap: str, topic: str, templates: dict[bytes, bytes] | None = None
) -> dict[str, int]:
    """Records and key+value bytes in every partition of ``topic``, read to the true end;
    ``templates`` (optional) gets the newest value of every key."""
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
        if templates is not None and record.key is not None and record.value is not None:
            templates[record.key] = record.value

    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        await read_to_end(consumer, parts, count, max_records=10_000)
    finally:
        await consumer.stop()
    return totals


def clones(templates: dict[bytes, bytes], signal_only: int, grant_subjects: int) -> list[Out]:
    """Changelog records for ``signal_only`` + ``grant_subjects`` new subjects (``user:c…``),
    each a copy of a loaded subject's states (see the module docstring, step 2)."""
    # subjects holding grants and signal state (a device subject's grant state, its list of
    # subscribers, has no signal state of its own: not a template of either kind)
    with_grants = [k[2:] for k in templates if k.startswith(b"g:") and b"s:" + k[2:] in templates]
    grant_set = {k[2:] for k in templates if k.startswith(b"g:")}
    only = [k[2:] for k in templates if k.startswith(b"s:") and k[2:] not in grant_set]
    n = signal_only + grant_subjects
    part = DefaultPartitioner()  # the producers' murmur2, as for every subject key
    all_parts = list(range(PARTITIONS))
    out: list[Out] = []
    for i in range(n):
        key = f"user:c{i:07d}".encode()
        p = part(key, all_parts, all_parts)
        if i < signal_only:
            src = only[i % len(only)]
            out.append(Out("changelog", p, b"s:" + key, templates[b"s:" + src]))
        else:
            src = with_grants[i % len(with_grants)]
            out.append(Out("changelog", p, b"s:" + key, templates[b"s:" + src]))
            out.append(Out("changelog", p, b"g:" + key, templates[b"g:" + src]))
    return out


async def grow_changelog(
    bootstrap: str, topic: str, templates: dict[bytes, bytes], signal_only: int, grants: int
) -> int:
    """Produce the clones (step 2); returns the records written."""
    prod = producer(bootstrap)
    await prod.start()
    try:
        return await produce_batched(
            prod, clones(templates, signal_only, grants), {"changelog": topic}
        )
    finally:
        await prod.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``, clock ticks)."""
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def parse_metric(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (exact sample name, any labels) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far per thread name (digits dropped: ``rocksdb:low0`` and ``rocksdb:low1``
    add up); the main thread, whose id is the process id, is ``main``."""
    out: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
            out[re.sub(r"\d+$", "", name)] += cpu_seconds_of(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
    return {name: round(seconds, 2) for name, seconds in out.most_common()}


def cpu_seconds_of(stat: Path) -> float:
    """User + system CPU seconds in a ``/proc`` ``stat`` file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: What a sample of the worker's main thread was doing, by the frames on its stack: the first
#: rule (in this order) with a marker in any frame names it; a stack no rule matches is named
#: by the package of its innermost frame (``leaf: asyncio``, ``leaf: faust``, ...). Markers
#: are substrings of frames as ``bench.profile._short`` prints them (``path:Qual.name``).
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("imports (module code, bytecode compile)", ("<frozen importlib",)),
    ("restore: RocksDB writes (store.write)", ("store.py:RocksStore.write",)),
    ("restore: runner apply loop", ("runner.py:PipelineRunner._restore_into.<locals>.apply",)),
    ("restore: replay fetch + batch parse", ("streams/kafka/replay.py:",)),
    ("counting after ready", ("streams/state/counting.py:",)),
    ("re-evaluation scan", ("runner.py:PipelineRunner._reevaluation_step",)),
    ("policy bundle (compile, evaluation)", ("streams/policy/",)),
    ("signal replica catch-up / follow", ("streams/state/replica.py:",)),
    ("other topic followers (subscriptions, SSF)", ("streams/kafka/follow.py:", "streams/ssf/")),
    ("aiokafka fetcher (group consumers)", ("aiokafka/consumer/fetcher.py:",)),
    ("aiokafka group join / coordinator", ("aiokafka/consumer/group_coordinator.py:",)),
    ("runner batch loop", ("streams/processing/",)),
    ("web (/metrics, /healthz)", ("streams/app.py:", "prometheus_client/", "aiohttp/")),
    (
        "Kafka network I/O (socket reads, response decode; every client)",
        (
            "asyncio/streams.py:",
            "asyncio/selector_events.py:",
            "aiokafka/protocol/",
            "aiokafka/conn",
        ),
    ),
    ("event loop poll (epoll)", ("selectors.py:",)),
]


def classify(frames: list[str]) -> str:
    """The ``COMPONENTS`` label of one stack (frames as ``_short`` prints them)."""
    for label, markers in COMPONENTS:
        if any(m in frame for frame in frames for m in markers):
            return label
    leaf = frames[-1] if frames else "?"
    return "leaf: " + re.split(r"[/:.]", leaf.lstrip("<"), maxsplit=1)[0]


def cpu_components(raw: Path, main_cpu_s: float) -> list[dict[str, Any]]:
    """py-spy's collapsed stacks (``--format raw``) of the main thread, as shares of its
    ``main_cpu_s`` CPU seconds per component (idle samples are not recorded by py-spy)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[classify([_short(f) for f in stack.split(";") if f.strip()])] += int(count)
    total = sum(counts.values()) or 1
    return [
        {"component": label, "samples": n, "cpu_s": round(main_cpu_s * n / total, 2)}
        for label, n in counts.most_common()
    ]


async def attach_profiler(pid: int, out_dir: Path) -> tuple[Profiler, float]:
    """py-spy on a process that may just have started (its interpreter may not be up yet:
    retry); also the process's main-thread CPU seconds when the sampler attached."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(20):
        prof = Profiler(pid, out_dir)
        attached_at = cpu_seconds_of(Path(f"/proc/{pid}/task/{pid}/stat"))
        try:
            await prof.start()
            return prof, attached_at
        except RuntimeError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


async def run_restore(
    bootstrap: str,
    plan: Any,
    results: dict[str, Any],
    tmp: Path,
    scale_to: int = 0,
    source: Path | None = None,
    profile: Path | None = None,
) -> None:
    """Part (h); see the module docstring. Fills ``results["restore"]``. ``scale_to``: grow the
    state to this many signal-only subjects (and a tenth as many grant subjects) first;
    ``source``: run the restoring worker from this snapshot of the code (``--ref``);
    ``profile``: py-spy the worker into ``profile/ready`` and ``profile/counted``."""
    state = results.get("memory", {}).get("state")
    if state is None:
        say("(h) loading the state with (g) first")
        scratch: dict[str, Any] = {}
        await memory.run_memory(bootstrap, plan, scratch, tmp)
        state = scratch["memory"]["state"]
    topics = topic_names(state["prefix"])
    out: dict[str, Any] = {"state": state}
    results["restore"] = out
    templates: dict[bytes, bytes] = {}
    size = await changelog_size(bootstrap, topics["changelog"], templates)
    out["changelog_records"] = size["records"]
    out["changelog_bytes"] = size["bytes"]
    changes = state["state_changes"]
    out["changelog_bytes_per_state_change"] = round(size["bytes"] / changes, 1) if changes else None
    out["changelog_records_per_state_change"] = (
        round(size["records"] / changes, 3) if changes else None
    )
    say(f"(h) changelog: {size['records']:,} records, {size['bytes']:,} bytes (key + value)")
    out["subjects"] = state["signal_subjects"] + state["grant_subjects"]
    out["grown"] = None
    extra_only = max(0, scale_to - state["signal_subjects"])
    extra_grants = max(0, scale_to // 10 - state["grant_subjects"]) if scale_to else 0
    if extra_only or extra_grants:
        t0 = time.monotonic()
        n = await grow_changelog(
            bootstrap, topics["changelog"], templates, extra_only, extra_grants
        )
        out["grown"] = {
            "signal_only": extra_only,
            "grant_subjects": extra_grants,
            "records": n,
            "seconds": round(time.monotonic() - t0, 1),
        }
        out["subjects"] += extra_only + extra_grants
        say(f"(h) changelog grown by {n:,} records to {out['subjects']:,} subjects")
    templates.clear()
    expected_grants = (state["grant_subjects"] + extra_grants) * 10

    worker = Worker(bootstrap, tmp / "restored", topics, group=state["group"], source=source)
    started = time.monotonic()
    worker.start()
    prof: Profiler | None = None
    try:
        if profile is not None:
            prof, attached_at = await attach_profiler(worker.pid, profile / "ready")
            out["main_cpu_s_before_profile"] = round(attached_at, 2)
        await worker.wait_healthy(timeout=max(900.0, plan.drain_timeout_s))
        out["start_to_healthy_s"] = round(time.monotonic() - started, 2)
        out["slowest_health_probe_s"] = round(worker.slowest_probe_s, 2)
        out["cpu_s_to_healthy"] = round(cpu_seconds(worker.pid), 2)
        out["cpu_s_by_thread_to_healthy"] = thread_cpu(worker.pid)
        if prof is not None and profile is not None:
            await prof.stop()
            main = out["cpu_s_by_thread_to_healthy"].get("main", 0.0)
            out["cpu_components_to_healthy"] = cpu_components(prof.raw, main - attached_at)
            prof, attached_at = await attach_profiler(worker.pid, profile / "counted")
        out["loadavg_at_healthy"] = Path("/proc/loadavg").read_text().split()[0]
        async with worker.session().get(f"http://127.0.0.1:{worker.port}/metrics") as resp:
            text = await resp.text()
        out["replay_seconds"] = round(parse_metric(text, "vigil_changelog_restore_seconds_sum"), 2)
        out["restored_records"] = int(parse_metric(text, "vigil_changelog_restored_records_total"))
        out["rss_at_healthy"] = memory.rss(worker.pid)
        # the gauges are counted after ready: wait for the whole state (or 300 s)
        while True:
            async with worker.session().get(f"http://127.0.0.1:{worker.port}/metrics") as resp:
                text = await resp.text()
            out["subjects_after"] = int(parse_metric(text, "vigil_state_subjects"))
            out["active_grants_after"] = int(parse_metric(text, "vigil_active_grants"))
            counted = (out["subjects_after"], out["active_grants_after"])
            if counted == (out["subjects"], expected_grants) or time.monotonic() - started > 300:
                break
            await asyncio.sleep(0.5)
        out["start_to_counted_s"] = round(time.monotonic() - started, 2)
        out["cpu_s_to_counted"] = round(cpu_seconds(worker.pid), 2)
        out["cpu_s_by_thread_to_counted"] = thread_cpu(worker.pid)
        if prof is not None:
            await prof.stop()
            main = out["cpu_s_by_thread_to_counted"].get("main", 0.0)
            out["cpu_components_after_healthy"] = cpu_components(prof.raw, main - attached_at)
            prof = None
        out["rss"] = memory.rss(worker.pid)
        if out["replay_seconds"]:
            out["records_per_s"] = round(out["restored_records"] / out["replay_seconds"])
        out["records_per_s_start_to_healthy"] = round(
            out["restored_records"] / out["start_to_healthy_s"]
        )
        out["projected_1m_s"] = project(out)
        say(
            f"(h) empty data dir → healthy in {out['start_to_healthy_s']} s "
            f"({out['restored_records']:,} records replayed in {out['replay_seconds']} s)"
        )
    finally:
        if prof is not None:
            await prof.stop()
        await worker.stop()


def project(out: dict[str, Any]) -> float | None:
    """Seconds to healthy for the full state (1M subjects with signal state + 100k × 10 grants),
    linear in subjects: the fixed part of this run (process start + group join = time to healthy
    minus replay) + the measured replay time scaled by subjects. Exact in shape only when the run
    kept (g)'s 10:1 ratio of signal-only to grant subjects (both loads finished)."""
    if not out.get("subjects") or not out.get("restored_records") or not out["replay_seconds"]:
        return None
    if out["subjects"] >= FULL_STATE_SUBJECTS:
        return out["start_to_healthy_s"]  # measured at full size
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
    grown = r.get("grown")
    size = (
        f"{st['signal_subjects']:,} subjects with signal state + {st['grant_subjects']:,} "
        f"subjects × 10 grants loaded through a worker ({st['state_changes']:,} state changes)"
    )
    if grown:
        size += (
            f", grown to **{r['subjects']:,} subjects** by {grown['records']:,} copied changelog "
            f"records ({grown['signal_only']:,} signal-only and {grown['grant_subjects']:,} grant "
            "subjects, copies of loaded ones under new keys)"
        )
    lines = [
        "",
        f"(h) Restore of {size} into a new worker with an empty data dir:",
        "",
        "| measurement | value |",
        "|---|---:|",
        f"| changelog of the load: records / key+value bytes | {r['changelog_records']:,} / "
        f"{r['changelog_bytes']:,} |",
        f"| changelog bytes per state change (records per state change) | "
        f"**{r['changelog_bytes_per_state_change']}** ({r['changelog_records_per_state_change']}) |",
        f"| process start → `/healthz` 200 (load average then) | **{r['start_to_healthy_s']} s** "
        f"({r.get('loadavg_at_healthy', '?')}) |",
        f"| worker CPU seconds at `/healthz` 200 (user + system) | {r.get('cpu_s_to_healthy')} s |",
        f"| slowest `/healthz` answer while restoring (10 s = none: event loop blocked) "
        f"| {r.get('slowest_health_probe_s')} s |",
        f"| of which changelog replay (worker's `vigil_changelog_restore_seconds`) "
        f"| {r['replay_seconds']} s |",
        f"| records replayed, records/s during replay (start → healthy) "
        f"| {r['restored_records']:,}, **{r.get('records_per_s', 0):,}/s** "
        f"({r['records_per_s_start_to_healthy']:,}/s) |",
        f"| subjects / active grants counted after ready (worker gauges), complete at "
        f"| {r['subjects_after']:,} / {r['active_grants_after']:,}, "
        f"{r.get('start_to_counted_s')} s ({r.get('cpu_s_to_counted')} CPU s) |",
        f"| restored worker VmRSS / VmHWM, whole state counted | "
        f"**{r['rss']['VmRSS'] / 2**20:,.1f}** / {r['rss']['VmHWM'] / 2**20:,.1f} MiB |",
    ]
    lines += cpu_lines(r)
    if proj is not None:
        how = (
            "measured at that size"
            if r["subjects"] >= FULL_STATE_SUBJECTS
            else "projected linearly in subjects from this run"
        )
        lines.append(
            f"\n- Full state (1M subjects + 100k × 10 grants), {how}: **{proj} s** to healthy "
            f"against the {TARGET_SECONDS:.0f} s target → "
            f"**{'met' if proj <= TARGET_SECONDS else 'not met'}**."
        )
    return lines


def cpu_lines(r: dict[str, Any]) -> list[str]:
    """The worker's CPU by thread and, under ``--profile``, by component (start → ready)."""
    threads = r.get("cpu_s_by_thread_to_healthy")
    if not threads:
        return []
    lines = [
        "",
        "Worker CPU seconds from start to `/healthz` 200 by thread: "
        + ", ".join(f"{name} {cpu}" for name, cpu in threads.items())
        + ".",
    ]
    parts = r.get("cpu_components_to_healthy")
    if parts:
        lines += [
            "",
            f"Main thread by component (py-spy, attached after "
            f"{r.get('main_cpu_s_before_profile')} CPU s):",
            "",
            "| component | samples | CPU s |",
            "|---|---:|---:|",
            *(f"| {c['component']} | {c['samples']:,} | {c['cpu_s']} |" for c in parts),
        ]
    return lines
