"""(g) Memory: RSS of one ``vigil worker`` holding many subjects with signal state, and grants.

One worker, its own topics and group. Steps, each followed by an RSS reading of the worker
process from ``/proc/<pid>/status`` (``VmRSS`` now, ``VmHWM`` the peak so far):

1. idle (healthy, owns every partition, no state);
2. ``10 × plan.subjects`` subjects (1M in the full plan) get signal state: device compliant,
   risk LOW, zone corp (3 signals each, the same preload as (b)), in chunks, until done or the
   time budget says the next chunk would not fit: the size reached is reported and the figure
   per subject is extrapolated to 1M, labelled as such;
3. ``plan.subjects`` further subjects (100k in the full plan) get the same signal state and 10
   grants each.

Bytes per subject = (RSS after 2 − idle RSS) / subjects; bytes per grant = (RSS after 3 − RSS
after 2 − new subjects × bytes per subject) / grants. RocksDB's on-disk size (every file under
the worker's data dir) is read at each step. The loaded state is left on the broker (topics
and changelog) and described in ``results["memory"]["state"]`` so that (h) restore can replay
it without loading it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.events import GRANTS_PER_SUBJECT, PARTITIONS, Out, World
from bench.kafka import produce_batched, producer
from bench.worker import Worker, create_worker_topics, topic_names

TARGET_SUBJECTS = 1_000_000
TARGET_RSS_BYTES = 1 << 30  # issue 10: 1M subjects in ≤ 1 GiB RSS
SUBJECTS_PER_GRANT_SUBJECT = 10  # signal-only subjects = 10 × plan.subjects (1M in the full plan)
PREFIX = "bench.mem."
GROUP = "bench-mem"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a process, in bytes (``/proc/<pid>/status`` gives kB)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(rest.split()[0]) * 1024
    return out


def disk_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (the worker's RocksDB stores, one per partition)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "worker.log")


def reading(worker: Worker, **extra: Any) -> dict[str, Any]:
    return {**rss(worker.pid), "disk": disk_bytes(worker.data_dir), **extra}


async def load_chunks(
    worker: Worker,
    topics: dict[str, str],
    subjects: range,
    chunk: int,
    budget_s: float,
    counter: str,
    records: Callable[[range], Iterator[Out]],
    timeout: float,
) -> tuple[int, float]:
    """Produce ``records(chunk)`` per chunk of ``subjects`` and wait until the worker counted
    them on ``counter``; stop before a chunk that the budget says would not fit. Returns
    (subjects loaded, seconds)."""
    prod = producer(worker.bootstrap)
    await prod.start()
    started = time.perf_counter()
    done = subjects.start
    try:
        while done < subjects.stop:
            part = range(done, min(subjects.stop, done + chunk))
            base = (await worker.counters()).counts[counter]
            n = await produce_batched(prod, records(part), topics)
            await worker.wait_for(counter, base + n, timeout, every=0.25)
            done = part.stop
            spent = time.perf_counter() - started
            per_chunk = spent * chunk / (done - subjects.start)
            if done < subjects.stop and spent + per_chunk > budget_s:
                say(f"(g) budget {budget_s:.0f}s reached after {done - subjects.start} subjects")
                break
    finally:
        await prod.stop()
    return done - subjects.start, time.perf_counter() - started


def sizes(plan: Any) -> tuple[int, int, float, int]:
    """(signal-only subjects, grant subjects, budget per load step in s, chunk) for a plan."""
    budget = 240.0 if plan.name == "full" else plan.preload_budget_s
    return plan.subjects * SUBJECTS_PER_GRANT_SUBJECT, plan.subjects, budget, plan.chunk_subjects


async def run_memory(bootstrap: str, plan: Any, results: dict[str, Any], tmp: Path) -> None:
    """Part (g); see the module docstring. Fills ``results["memory"]``."""
    n_signal, n_grant, budget, chunk = sizes(plan)
    topics = topic_names(PREFIX)
    await create_worker_topics(bootstrap, topics, PARTITIONS)
    worker = Worker(bootstrap, tmp / "mem", topics, group=GROUP)
    worker.start()
    out: dict[str, Any] = {"planned_signal_subjects": n_signal, "planned_grant_subjects": n_grant}
    results["memory"] = out
    try:
        out["start_to_healthy_s"] = round(await worker.wait_healthy(), 2)
        out["idle"] = reading(worker)
        say(f"(g) idle worker: {_mib(out['idle']['VmRSS'])} RSS")
        world = World.create(n_signal + n_grant)
        loaded, secs = await load_chunks(
            worker,
            topics,
            range(n_signal),
            chunk * SUBJECTS_PER_GRANT_SUBJECT,
            budget,
            "signals",
            world.preload_signals,
            plan.drain_timeout_s,
        )
        out["subjects"] = reading(worker, count=loaded, seconds=round(secs, 1))
        say(f"(g) {loaded:,} subjects with signal state: {_mib(out['subjects']['VmRSS'])} RSS")

        grant_range = range(n_signal, n_signal + n_grant)
        g_loaded, g_secs = await _load_grants(
            worker, world, topics, grant_range, chunk, budget, plan
        )
        out["grants"] = reading(
            worker, subjects=g_loaded, count=g_loaded * GRANTS_PER_SUBJECT, seconds=round(g_secs, 1)
        )
        say(
            f"(g) + {g_loaded:,} subjects × {GRANTS_PER_SUBJECT} grants: "
            f"{_mib(out['grants']['VmRSS'])} RSS"
        )
        out.update(derive(out))
        out["state"] = {
            "prefix": PREFIX,
            "group": GROUP,
            "signal_subjects": loaded,
            "grant_subjects": g_loaded,
            # every input event of the load changes state: 3 signals per subject, each grant
            "state_changes": 3 * (loaded + g_loaded) + g_loaded * GRANTS_PER_SUBJECT,
        }
        out["worker_counters"] = (await worker.counters()).counts
    finally:
        await worker.stop()


async def _load_grants(
    worker: Worker,
    world: World,
    topics: dict[str, str],
    subjects: range,
    chunk: int,
    budget: float,
    plan: Any,
) -> tuple[int, float]:
    """Per chunk: the subjects' signal state first (applied), then their grants (as in (b))."""
    started = time.perf_counter()
    done = subjects.start
    while done < subjects.stop:
        part = range(done, min(subjects.stop, done + chunk))
        for counter, records in (("signals", world.preload_signals), ("grants", world.grants)):
            await load_chunks(
                worker, topics, part, chunk, 1e9, counter, records, plan.drain_timeout_s
            )
        done = part.stop
        spent = time.perf_counter() - started
        if done < subjects.stop and spent * (1 + chunk / (done - subjects.start)) > budget:
            say(f"(g) budget {budget:.0f}s reached after {done - subjects.start} grant subjects")
            break
    return done - subjects.start, time.perf_counter() - started


def derive(out: dict[str, Any]) -> dict[str, Any]:
    """Bytes per subject and per grant, and the 1M-subject projection (see module docstring)."""
    idle, subj, grants = out["idle"], out["subjects"], out["grants"]
    d: dict[str, Any] = {}
    if subj["count"]:
        per_subject = (subj["VmRSS"] - idle["VmRSS"]) / subj["count"]
        d["bytes_per_subject"] = round(per_subject, 1)
        d["disk_bytes_per_subject"] = round((subj["disk"] - idle["disk"]) / subj["count"], 1)
        d["rss_at_1m_subjects"] = (
            subj["VmRSS"]
            if subj["count"] >= TARGET_SUBJECTS
            else round(idle["VmRSS"] + per_subject * TARGET_SUBJECTS)
        )
        d["rss_at_1m_extrapolated"] = subj["count"] < TARGET_SUBJECTS
        if grants["count"]:
            extra = grants["VmRSS"] - subj["VmRSS"] - grants["subjects"] * per_subject
            d["bytes_per_grant"] = round(extra / grants["count"], 1)
            disk_extra = (
                grants["disk"] - subj["disk"] - grants["subjects"] * d["disk_bytes_per_subject"]
            )
            d["disk_bytes_per_grant"] = round(disk_extra / grants["count"], 1)
    return d


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def markdown(res: dict[str, Any]) -> list[str]:
    """The (g) lines of the results section (nothing when the part did not run)."""
    m = res.get("memory")
    if not m or "grants" not in m:
        return [] if not m else ["", f"(g) Memory: incomplete run: `{m}`"]
    idle, subj, gr = m["idle"], m["subjects"], m["grants"]
    label = " (extrapolated per subject)" if m.get("rss_at_1m_extrapolated") else " (measured)"
    lines = [
        "",
        f"(g) Memory of one worker process (`/proc/<pid>/status`; RocksDB = files under its "
        f"data dir; idle worker healthy after {m['start_to_healthy_s']} s):",
        "",
        "| state | VmRSS | VmHWM | RocksDB on disk | load time |",
        "|---|---:|---:|---:|---:|",
        f"| idle (4 partitions, no state) | {_mib(idle['VmRSS'])} | {_mib(idle['VmHWM'])} "
        f"| {_mib(idle['disk'])} | |",
        f"| + {subj['count']:,} subjects with signal state (3 dimensions) | {_mib(subj['VmRSS'])} "
        f"| {_mib(subj['VmHWM'])} | {_mib(subj['disk'])} | {subj['seconds']} s |",
        f"| + {gr['subjects']:,} subjects × {GRANTS_PER_SUBJECT} grants = {gr['count']:,} grants "
        f"| {_mib(gr['VmRSS'])} | {_mib(gr['VmHWM'])} | {_mib(gr['disk'])} | {gr['seconds']} s |",
        "",
        f"- Bytes per subject: **{m.get('bytes_per_subject')} RSS**, {m.get('disk_bytes_per_subject')} "
        f"on disk; per grant: **{m.get('bytes_per_grant')} RSS**, {m.get('disk_bytes_per_grant')} on "
        f"disk (differences of RSS readings; RocksDB memtables and caches fill in steps, so small "
        f"sizes are noisy).",
        f"- RSS at 1M subjects{label}: **{_mib(m['rss_at_1m_subjects'])}** against the 1 GiB "
        f"target → **{'met' if m['rss_at_1m_subjects'] <= TARGET_RSS_BYTES else 'not met'}**"
        + (
            ""
            if m["subjects"]["count"] >= m["planned_signal_subjects"]
            else f" (planned {m['planned_signal_subjects']:,} subjects; the load budget cut it)"
        )
        + ".",
    ]
    return lines
