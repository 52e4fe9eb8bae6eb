"""``make bench``: baselines, the Vigil worker, latency, the Quix Streams peer and the check API
against the stock Cerbos PDP, on one broker.

    .venv/bin/python -m bench.run             # full run (≈10 min)
    .venv/bin/python -m bench.run --quick     # smoke run (≈2 min)
    .venv/bin/python -m bench.run --profile   # also profile the worker with py-spy during (b)

Prints a table and (re)writes the results section of docs/performance.md and
bench/results/latest.json. No thresholds: figures and ratios against baselines from this run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import check_api, ephemeral, memory, report, restore, ssf
from bench.events import GRANTS_PER_SUBJECT, PARTITIONS, World
from bench.kafka import baseline_consume, baseline_produce, produce_batched, producer
from bench.latency import json_record, paced_run, trace_summary
from bench.measure import measure_drain
from bench.profile import Profiler, top_functions
from bench.quix import QuixPeer
from bench.worker import REPO, Worker, create_worker_topics, snapshot, topic_names
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import EmbeddedBroker

RESULTS = REPO / "bench" / "results"
log = logging.getLogger("bench")


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one run; ``subjects`` is an upper bound the preload budget may cut."""

    name: str
    subjects: int
    baseline_n: int
    mix_n: int
    hot_n: int
    latency_rate: int
    latency_seconds: float
    quix_n: int
    preload_budget_s: float
    chunk_subjects: int
    drain_timeout_s: float


QUICK = Plan("quick", 5_000, 50_000, 20_000, 5_000, 2_000, 8, 50_000, 45, 1_000, 120)
FULL = Plan("full", 100_000, 200_000, 60_000, 20_000, 2_000, 20, 200_000, 210, 5_000, 240)

MIX_CHANGING = 0.20  # share of signals that change policy-visible state
MIX_REVOKING = 0.05  # share of those that turn the device not-compliant (→ revocations)
LAT_REVOKE = 0.05  # latency run: share of signals that revoke (fresh subject's device)
LAT_TOGGLE = 0.15  # latency run: share that toggle risk/zone (decisions, no revocation)
LAT_CROSS = 0.05  # latency run: share that disable a delegating user (agent's grant revoked)
LOW_RATE = 500  # second latency run, below the worker's capacity
LATENCY_SUBJECTS = 3_000  # (c): subjects with state and grants besides those a run revokes
PER_HOST_SUBJECTS = 20_000  # state of the per-host comparison (two preloads)


ALL_PARTS = "abcpdefghi"


def results_name(quick: bool, only: str) -> str:
    """``latest.json`` belongs to a full run: a run of some parts writes ``partial.json`` so it
    never replaces the full run's figures that docs/performance.md reads."""
    if quick:
        return "quick.json"
    return "latest.json" if set(ALL_PARTS) <= set(only) else "partial.json"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine_facts() -> dict[str, Any]:
    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    return {
        "nproc": sh("nproc"),
        "free_g": sh("free -g | head -2"),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "python": platform.python_version(),
        "loadavg_start": sh("cat /proc/loadavg"),
    }


async def run_baselines(bootstrap: str, plan: Plan, results: dict[str, Any]) -> None:
    """(a) raw aiokafka produce, consume (no decode) and consume + ``orjson.loads``."""
    topic = "bench.baseline.signals"
    await ensure_topics(bootstrap, [topic], PARTITIONS)
    world = World.create(20_000)
    recs = world.mix(plan.baseline_n, range(20_000), MIX_CHANGING, MIX_REVOKING, seed=3)
    avg = sum(len(r.value) for r in recs) / len(recs)
    say(f"(a) baseline: {len(recs)} signals, {avg:.0f} bytes average JSON")
    prod = await baseline_produce(bootstrap, topic, recs)
    raw = await baseline_consume(bootstrap, topic, PARTITIONS, len(recs), decode=False)
    dec = await baseline_consume(bootstrap, topic, PARTITIONS, len(recs), decode=True)
    results["baseline"] = {
        "events": len(recs),
        "avg_bytes": round(avg),
        "produce_rate": prod,
        "consume_rate": raw,
        "consume_decode_rate": dec,
    }
    say(f"(a) produce {prod:,.0f}/s, consume {raw:,.0f}/s, consume+orjson {dec:,.0f}/s")


def latency_pools(plan: Plan) -> tuple[int, int]:
    """Fresh subjects the two latency runs revoke (each signal of kind ``revoke`` takes one)."""
    fresh_n = int(plan.latency_rate * plan.latency_seconds * LAT_REVOKE * 1.3) + 50
    low_n = int(LOW_RATE * plan.latency_seconds / 2 * LAT_REVOKE * 1.3) + 50
    return fresh_n, low_n


async def preload(worker: Worker, world: World, plan: Plan, topics: dict[str, str]) -> int:
    """Per chunk of subjects: their state signals, then (once applied) their 10 grants each.

    Stops adding chunks once the projected time exceeds the budget, but not before the latency
    runs have their fresh subjects and a pool of 1,000 others; returns subjects loaded.
    """
    fresh_n, low_n = latency_pools(plan)
    minimum = min(plan.subjects, fresh_n + low_n + 1_000)
    prod = producer(worker.bootstrap)
    await prod.start()
    loaded = 0
    started = time.perf_counter()
    grants_time = 0.0
    try:
        while loaded < plan.subjects:
            chunk = range(loaded, min(plan.subjects, loaded + plan.chunk_subjects))
            base = await worker.counters()
            n = await produce_batched(prod, world.preload_signals(chunk), topics)
            await worker.wait_for("signals", base.counts["signals"] + n, plan.drain_timeout_s)
            g0 = time.perf_counter()
            n = await produce_batched(prod, world.grants(chunk), topics)
            await worker.wait_for("grants", base.counts["grants"] + n, plan.drain_timeout_s)
            grants_time += time.perf_counter() - g0
            loaded = chunk.stop
            spent = time.perf_counter() - started
            per_chunk = spent / (loaded // plan.chunk_subjects or 1)
            say(
                f"preload: {loaded} subjects ({loaded * GRANTS_PER_SUBJECT} grants) in {spent:.0f}s"
            )
            over = spent + per_chunk > plan.preload_budget_s
            if over and minimum <= loaded < plan.subjects:
                say(f"preload: budget {plan.preload_budget_s:.0f}s reached; scaling down")
                break
    finally:
        await prod.stop()
    worker.preload_stats = {  # type: ignore[attr-defined]
        "subjects": loaded,
        "grants": loaded * GRANTS_PER_SUBJECT,
        "seconds": round(time.perf_counter() - started, 1),
        "grant_rate": round(loaded * GRANTS_PER_SUBJECT / grants_time, 1) if grants_time else 0,
    }
    return loaded


async def preload_delegations(
    worker: Worker, world: World, users: range, topics: dict[str, str], plan: Plan
) -> None:
    """One agent grant on behalf of each of ``users`` (``World.delegations``), applied before
    the latency runs; their subscriptions reach the users' partitions meanwhile."""
    prod = producer(worker.bootstrap)
    await prod.start()
    try:
        base = await worker.counters()
        n = await produce_batched(prod, world.delegations(users), topics)
        await worker.wait_for("grants", base.counts["grants"] + n, plan.drain_timeout_s)
    finally:
        await prod.stop()
    await asyncio.sleep(1.0)  # the users' first state records reach the agents' partitions
    say(f"preload: {n} delegated agent grants")


async def drain_mix(
    worker: Worker,
    world: World,
    topics: dict[str, str],
    n: int,
    subjects: range,
    changing: float,
    timeout: float,
    seed: int,
) -> dict[str, Any]:
    """(b) produce ``n`` pre-encoded signals as fast as possible while the worker drains them."""
    recs = world.mix(n, subjects, changing, MIX_REVOKING, seed=seed)
    prod = producer(worker.bootstrap)
    await prod.start()

    async def produce() -> float:
        t0 = time.perf_counter()
        await produce_batched(prod, recs, topics)
        return len(recs) / (time.perf_counter() - t0)

    try:
        drain, prod_rate = await measure_drain(
            worker.counters, "signals", n, produce, timeout=timeout
        )
    finally:
        await prod.stop()
    summary = drain.summary(extra=("decisions", "revocations", "deadletters"))
    summary["produce_rate"] = prod_rate
    summary["changing_share"] = changing
    summary["signals"] = n
    return summary


def worker_source(args: argparse.Namespace, tmp: Path, results: dict[str, Any]) -> Path | None:
    """The code the workers of (b) and (c) run: ``--ref`` archived once, else the working tree."""
    if not args.ref:
        results["source"] = "working tree"
        return None
    source = tmp / "source"
    if not source.exists():
        results["source"] = snapshot(args.ref, source)
        say(f"worker code: {results['source']}")
    return source


async def run_vigil(
    bootstrap: str, plan: Plan, args: argparse.Namespace, results: dict[str, Any], tmp: Path
) -> None:
    topics = topic_names("bench.vigil.")
    source = worker_source(args, tmp, results)
    worker = Worker(bootstrap, tmp / "vigil", topics, group="bench-vigil", source=source)
    await create_worker_topics(bootstrap, topics, PARTITIONS)
    worker.start()
    try:
        took = await worker.wait_healthy()
        say(f"worker pid {worker.pid} healthy after {took:.1f}s (port {worker.port})")
        world = World.create(plan.subjects)
        loaded = await preload(worker, world, plan, topics)
        results["preload"] = worker.preload_stats  # type: ignore[attr-defined]
        say(f"preload: {results['preload']}")
        pool = range(0, loaded)

        say(
            f"(b) mix {1 - MIX_CHANGING:.0%} no-op / {MIX_CHANGING:.0%} changing, {plan.mix_n} signals"
        )
        mix = await drain_mix(
            worker, world, topics, plan.mix_n, pool, MIX_CHANGING, plan.drain_timeout_s, 11
        )
        results["vigil_mix"] = mix
        say(f"(b) {report.fmt_drain(mix)}")

        say(f"(b) 100% state-changing, {plan.hot_n} signals")
        hot = await drain_mix(
            worker, world, topics, plan.hot_n, pool, 1.0, plan.drain_timeout_s, 12
        )
        results["vigil_hot"] = hot
        say(f"(b) {report.fmt_drain(hot)}")

        if args.profile:
            say("(profile) py-spy on the worker during another mix drain")
            prof = Profiler(worker.pid, RESULTS)
            await prof.start()
            try:
                pm = await drain_mix(
                    worker, world, topics, plan.mix_n, pool, MIX_CHANGING, plan.drain_timeout_s, 13
                )
            finally:
                await prof.stop()
            results["profile"] = {"drain_under_pyspy": pm, **top_functions(prof.raw)}
            say(f"(profile) {report.fmt_drain(pm)}; {results['profile']['samples']} samples")

        results["worker_counters_end"] = (await worker.counters()).counts
    finally:
        await worker.stop()


def pool_size(rate: float, seconds: float, share: float) -> int:
    """Subjects a latency run uses up: each signal of a kind with ``share`` takes a new one."""
    return int(rate * seconds * share * 1.3) + 50


async def run_latency(
    plan: Plan, args: argparse.Namespace, results: dict[str, Any], tmp: Path
) -> None:
    """(c) Each latency run on a broker of its own, with a worker of its own and a small preload.

    Tansu (memory storage) answers a fetch in time that grows with the record batches stored in
    the fetched partition (docs/performance.md, goal 2), and a paced generator writes about one
    batch per partition per tick: on the broker of (b), a run would be measured on top of the
    batches of every earlier part and run, and so would the relay floor. Real Kafka finds a fetch
    offset through its index whatever the log holds.
    """
    source = worker_source(args, tmp, results)
    cores = os.cpu_count() or 1
    runs = [
        ("latency", plan.latency_rate, plan.latency_seconds, 1),
        ("latency_low", LOW_RATE, plan.latency_seconds / 2, 1),
    ]
    if cores > 1:  # (c′) the first run again with one worker process per core
        runs.append(("latency_host", plan.latency_rate, plan.latency_seconds, cores))
    for key, rate, secs, processes in runs:
        with EmbeddedBroker() as broker:
            say(f"(c) {key}: fresh broker {broker.bootstrap}")
            await latency_run(
                broker.bootstrap, plan, key, rate, secs, results, tmp, source, processes
            )


async def latency_run(
    bootstrap: str,
    plan: Plan,
    key: str,
    rate: int,
    secs: float,
    results: dict[str, Any],
    tmp: Path,
    source: Path | None,
    processes: int = 1,
) -> None:
    """One latency run: preload ``LATENCY_SUBJECTS`` subjects (+ the fresh subjects the run
    revokes, + agents acting for the users it disables), offer ``rate`` signals/s to the worker
    (``processes`` worker processes in one group), then the same load to the relay floor on its
    own topics of the same broker."""
    topics = topic_names(f"bench.{key}.")
    # the fetch trace is one process's file: traced only when there is one process
    trace = tmp / key / "fetch-trace.jsonl" if processes == 1 else None
    worker = Worker(
        bootstrap,
        tmp / key,
        topics,
        group=f"bench-{key}",
        source=source,
        fetch_trace=trace,
        processes=processes,
    )
    await create_worker_topics(bootstrap, topics, PARTITIONS)
    worker.start()
    try:
        took = await worker.wait_healthy()
        if processes > 1:
            await worker.wait_assigned(PARTITIONS)
        say(f"(c) worker pid {worker.pid} healthy after {took:.1f}s")
        fresh_n = pool_size(rate, secs, LAT_REVOKE)
        subjects = min(plan.subjects, LATENCY_SUBJECTS) + fresh_n
        world = World.create(subjects)
        sized = Plan(**{**asdict(plan), "subjects": subjects})
        loaded = await preload(worker, world, sized, topics)
        results[f"{key}_preload"] = worker.preload_stats  # type: ignore[attr-defined]
        fresh = range(loaded - fresh_n, loaded)
        # users beyond the world, each with an agent acting for them (cross-subject latency)
        cross = range(subjects, subjects + pool_size(rate, secs, LAT_CROSS))
        await preload_delegations(worker, world, cross, topics, sized)
        relay = await Relay.start(bootstrap, tmp)
        try:
            say(f"(c) latency: {rate}/s for {secs:.0f}s")
            base = (await worker.counters()).counts["signals"]

            async def drained(sent: int) -> None:
                await worker.wait_for("signals", base + sent, plan.drain_timeout_s, every=0.2)

            # the same offered load for the worker and the relay baseline
            load: dict[str, Any] = {
                "rate": rate,
                "seconds": secs,
                "noop_subjects": range(0, fresh.start),
                "fresh_subjects": fresh,
                "revoke_share": LAT_REVOKE,
                "toggle_share": LAT_TOGGLE,
                "tmp": tmp,
                "cross_subjects": cross,
                "cross_share": LAT_CROSS,
            }
            window = time.time()
            lat = await paced_run(
                bootstrap,
                topics,
                world,
                drained=drained,
                server_pids=worker.server_pids(),
                **load,
            )
            lat["subjects"], lat["processes"] = loaded, processes
            results[key] = lat
            say(f"(c) {report.fmt_latency(lat)}")
            if trace is not None:
                lat["fetch_trace"] = trace_summary(trace, window, time.time())
                say(f"(c) fetch trace: {report.fmt_trace(lat['fetch_trace'])}")
            say(f"(c) relay baseline: {rate}/s for {secs:.0f}s")
            rl = await paced_run(  # the same mix, cross-subject signals included
                bootstrap,
                relay.topics,
                world,
                settle=2.0,
                decode=json_record,
                server_pids={"relay": relay.pid},
                **load,
            )
            results[f"relay_{key}"] = rl
            say(f"(c) relay {report.fmt_latency(rl)}")
        finally:
            await relay.stop()
    finally:
        await worker.stop()


class Relay:
    """``bench.relay`` as a subprocess on its own topics (the latency floor of part (c))."""

    def __init__(self, proc: asyncio.subprocess.Process, topics: dict[str, str]) -> None:
        self.proc = proc
        self.topics = topics

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, bootstrap: str, tmp: Path) -> Relay:
        topics = {k: f"bench.relay.signals.{k}" for k in ("identity", "device", "network", "risk")}
        topics["revocations"] = topics["decisions"] = "bench.relay.out"
        await ensure_topics(bootstrap, sorted(set(topics.values())), PARTITIONS)
        inputs = [topics[k] for k in ("identity", "device", "network", "risk")]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.relay",
            bootstrap,
            "bench-relay",
            topics["revocations"],
            *inputs,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 90)
        if line.strip() != b"ready":
            raise RuntimeError(f"relay did not start: {line!r}")
        await asyncio.sleep(1.0)  # a second beat: the group settled
        return cls(proc, topics)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def run_per_host(bootstrap: str, plan: Plan, results: dict[str, Any], tmp: Path) -> None:
    """(b′) per host: the realistic mix drained by one worker process, then by ``vigil worker
    --processes N`` with N = the core count (one consumer group, own topics and state each),
    on the same smaller state (so both preloads fit the budget)."""
    cores = os.cpu_count() or 1
    small = Plan(**{**asdict(plan), "subjects": min(plan.subjects, PER_HOST_SUBJECTS)})
    out: dict[str, Any] = {"cores": cores}
    for n in sorted({1, cores}):
        topics = topic_names(f"bench.host{n}.")
        await create_worker_topics(bootstrap, topics, PARTITIONS)
        worker = Worker(bootstrap, tmp / f"host{n}", topics, group=f"bench-host{n}", processes=n)
        worker.start()
        try:
            await worker.wait_healthy()
            await worker.wait_assigned(PARTITIONS)
            world = World.create(small.subjects)
            loaded = await preload(worker, world, small, topics)
            say(f"(b') {n} process(es): {loaded} subjects; mix of {plan.mix_n} signals")
            mix = await drain_mix(
                worker,
                world,
                topics,
                plan.mix_n,
                range(loaded),
                MIX_CHANGING,
                plan.drain_timeout_s,
                31,
            )
            mix["subjects"] = loaded
            out[str(n)] = mix
            say(f"(b') {n} process(es): {report.fmt_drain(mix)}")
        finally:
            await worker.stop()
    results["per_host"] = out


async def run_quix(bootstrap: str, plan: Plan, results: dict[str, Any], tmp: Path) -> None:
    """(d) the Quix Streams peer on the same backlog shape (fresh topics, same mix)."""
    topics = {k: f"bench.quix.signals.{k}" for k in ("device", "network", "risk")}
    output = "bench.quix.out"
    await ensure_topics(bootstrap, [*topics.values(), output], PARTITIONS)
    peer = QuixPeer(bootstrap, "bench-quix", tmp / "quix", output, list(topics.values()))
    await peer.start()
    world = World.create(plan.subjects)
    prod = producer(bootstrap)
    await prod.start()
    try:
        warm = world.mix(2_000, range(plan.subjects), MIX_CHANGING, MIX_REVOKING, seed=21)
        t0 = time.perf_counter()
        await produce_batched(prod, warm, topics)
        while (await peer.sample()).counts["processed"] < len(warm):
            if time.perf_counter() - t0 > 120:
                raise TimeoutError("quix app processed nothing in 120 s:\n" + "\n".join(peer.tail))
            await asyncio.sleep(0.25)
        say(f"(d) quix app ready after {time.perf_counter() - t0:.1f}s; {plan.quix_n} signals")
        recs = world.mix(plan.quix_n, range(plan.subjects), MIX_CHANGING, MIX_REVOKING, seed=22)

        async def produce() -> float:
            t1 = time.perf_counter()
            await produce_batched(prod, recs, topics)
            return len(recs) / (time.perf_counter() - t1)

        drain, rate = await measure_drain(
            peer.sample, "processed", len(recs), produce, timeout=plan.drain_timeout_s
        )
        summary = drain.summary()
        summary["produce_rate"] = rate
        summary["signals"] = len(recs)
        results["quix"] = summary
        say(f"(d) {report.fmt_drain(summary)}")
    except Exception as exc:
        results["quix"] = {"error": f"{type(exc).__name__}: {exc}", "output": peer.tail[-20:]}
        say(f"(d) quix failed: {results['quix']['error']}")
    finally:
        await prod.stop()
        await peer.stop()


async def run_check(
    bootstrap: str, quick: bool, results: dict[str, Any], tmp: Path, ref: str
) -> None:
    """(e) the check API of one worker vs the stock Cerbos PDP (``bench.check_api``)."""
    plan = check_api.QUICK if quick else check_api.CheckPlan()
    try:
        source = tmp / "check-source" if ref else None
        if source is not None:
            snapshot(ref, source)
        await check_api.run_check_api(bootstrap, plan, results, tmp, source=source)
    except BaseException as exc:  # no npm for the PDP (pytest's skip outside pytest), or a failure
        if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
            raise
        results.setdefault("check_api", {})["error"] = f"{type(exc).__name__}: {exc}"
        say(f"(e) check API bench failed: {results['check_api']['error']}")


async def run_part(
    part: str, key: str, run: Callable[[], Awaitable[None]], results: dict[str, Any]
) -> None:
    """One part of the run; a failure is recorded under ``key`` (and in ``failed``) and the run
    goes on, so one broken part does not throw away half an hour of figures."""
    try:
        await run()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        entry = results.get(key)
        if not isinstance(entry, dict):
            entry = results[key] = {}
        entry["error"] = error
        entry["traceback"] = traceback.format_exc(limit=8)
        results.setdefault("failed", []).append(f"({part}) {error}")
        say(f"({part}) FAILED: {error}")


async def run_ssf(bootstrap: str, quick: bool, results: dict[str, Any]) -> None:
    """(f) Shared Signals: SETs accepted/s, SET → revocation latency (``bench.ssf``)."""
    say("(f) Shared Signals: SETs pushed to one worker")
    n, latency_n = ssf.sizes(quick)
    results["ssf"] = r = await ssf.run(n, 16, latency_n, bootstrap)
    lat = r["revocation_latency_ms"]
    say(
        f"(f) {r['push_accepted_per_s']:,} SETs/s accepted; SET -> revocation p50 "
        f"{lat['p50']} ms, p99 {lat['p99']} ms"
    )


async def run_restore(
    bootstrap: str, plan: Plan, args: argparse.Namespace, results: dict[str, Any], tmp: Path
) -> None:
    """(h) restore into an empty data dir, at the target size unless told otherwise."""
    default = 0 if args.quick else 1_000_000
    scale = args.restore_subjects if args.restore_subjects >= 0 else default
    source = None
    if args.ref:  # the restoring worker runs that version of the code
        source = tmp / "restore-source"
        results["restore_source"] = snapshot(args.ref, source)
    profile = RESULTS / "restore-profile" if args.profile else None
    await restore.run_restore(
        bootstrap, plan, results, tmp, scale_to=scale, source=source, profile=profile
    )


async def run_ephemeral(bootstrap: str, quick: bool, results: dict[str, Any], tmp: Path) -> None:
    """(i) ephemeral workloads (``bench.ephemeral``)."""
    eph_plan = ephemeral.QUICK if quick else ephemeral.FULL
    await ephemeral.run_ephemeral(bootstrap, eph_plan, results, tmp)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    if args.subjects:
        plan = Plan(**{**asdict(plan), "subjects": args.subjects})
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([".venv/bin/python -m bench.run", *sys.argv[1:]]),
        "plan": asdict(plan),
        "machine": machine_facts(),
        "mix": {
            "changing": MIX_CHANGING,
            "revoking_of_changing": MIX_REVOKING,
            "latency_revoke": LAT_REVOKE,
            "latency_toggle": LAT_TOGGLE,
            "latency_cross": LAT_CROSS,
        },
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmpdir, EmbeddedBroker() as broker:
        tmp = Path(tmpdir)
        say(f"broker {broker.bootstrap}; plan {plan.name}")
        parts: list[tuple[str, str, Callable[[], Awaitable[None]]]] = [
            ("a", "baseline", lambda: run_baselines(broker.bootstrap, plan, results)),
            ("b", "vigil_mix", lambda: run_vigil(broker.bootstrap, plan, args, results, tmp)),
            ("c", "latency", lambda: run_latency(plan, args, results, tmp)),  # own brokers
            ("p", "per_host", lambda: run_per_host(broker.bootstrap, plan, results, tmp)),
            ("d", "quix", lambda: run_quix(broker.bootstrap, plan, results, tmp)),
            (
                "e",
                "check_api",
                lambda: run_check(broker.bootstrap, args.quick, results, tmp, args.ref),
            ),
            ("f", "ssf", lambda: run_ssf(broker.bootstrap, args.quick, results)),
            ("g", "memory", lambda: memory.run_memory(broker.bootstrap, plan, results, tmp)),
            ("h", "restore", lambda: run_restore(broker.bootstrap, plan, args, results, tmp)),
            ("i", "ephemeral", lambda: run_ephemeral(broker.bootstrap, args.quick, results, tmp)),
        ]
        for part, key, run in parts:
            if part in args.only:
                await run_part(part, key, run, results)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().strip()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run (≈2 min)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the worker during (b), and the restoring worker of (h) "
        "(bench/results/restore-profile/)",
    )
    parser.add_argument("--subjects", type=int, default=0, help="override the subject count")
    parser.add_argument(
        "--restore-subjects",
        type=int,
        default=-1,
        help="(h): grow the state (g) loaded to this many signal-only subjects (+ a tenth as many "
        "with grants) by copies of its changelog records before the restore; default 1000000 "
        "(full run), 0 with --quick",
    )
    parser.add_argument(
        "--only",
        default=ALL_PARTS,
        help="parts to run: a (baselines), b (vigil throughput), c (latency and its relay floor, "
        "each run on a fresh broker), p (per host: 1 vs one process per "
        "core), d (quix), e (check API vs Cerbos), f (Shared Signals), g (memory), h (restore), "
        "i (ephemeral workloads: state size around a burst of short-lived grants)",
    )
    parser.add_argument(
        "--ref",
        default="",
        help="run the worker of (b) and the restoring worker of (h) from this git ref (git archive "
        "of streams/, policies/, schemas/) instead of the working tree, e.g. HEAD while others "
        "edit streams/",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(main_async(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = results_name(args.quick, args.only)
    (RESULTS / name).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    text = report.markdown(results)
    print()
    print(text)
    if not args.no_docs and name == "latest.json":  # only a full run rewrites the docs
        report.write_docs(REPO / "docs" / "performance.md", text)
        say("docs/performance.md results section rewritten")
    if results.get("failed"):
        say("parts failed: " + "; ".join(results["failed"]))
        sys.exit(1)


if __name__ == "__main__":
    main()
