"""(e) The check API of one ``vigil worker`` process side by side with the stock Cerbos PDP 0.55.

Both serve the default bundle (``policies/``) to the same load generator (``bench.http_load``,
its own process, keep-alive connections) in the same run:

1. a worker with its own topics; a few thousand subjects get device, risk and network signals
   (then a share of risk/zone toggles and non-compliant devices, so answers vary);
2. the same signals are applied in process (``apply_signal``, ``signal_attributes``) to build
   each Cerbos request: the PEP's request plus ``principal.attr.signals`` and ``attr.grant``
   exactly as the worker merges them, so both evaluate the same effective request. The Vigil
   request is what a PEP sends Vigil: no signals, the session and device as
   ``requestContext.annotations``;
3. every request is sent once to both and their answers compared (effects, matched policies and
   scopes, derived roles): the figures count only if they are the same answers;
4. closed loop (``--connections``, saturation) on each, then open loop at half of Vigil's
   saturation rate on each (latency), then the same open loop on Vigil while its pipeline
   drains a paced stream of signals on the same event loop (``--signal-rate``).

Standalone (≈45 s): ``.venv/bin/python -m bench.check_api [--seconds 5] [--connections 16]``;
``make bench`` runs it as part (e). No thresholds: figures and the ratio, read against the
target (≥ the stock PDP's throughput, p99 ≤ 5 ms at half of Vigil's saturation rate).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.events import Out, World, subject_id
from bench.kafka import produce_batched, producer
from bench.profile import Profiler, top_functions
from bench.worker import REPO, Worker, create_worker_topics, snapshot, topic_names
from streams.models.signal import validate_signal
from streams.processing.check import DEVICE_ID, NO_GRANT, SESSION_ID
from streams.processing.evaluation import signal_attributes
from streams.state.risk import RiskModel
from streams.state.subject import SignalState, apply_signal, new_signal_state, subject_snapshot

PARTITIONS = 4
TARGET_P99_MS = 5.0
PROBE_DIR = Path(__file__).resolve().parent / "loop_probe"


@dataclass(frozen=True, slots=True)
class CheckPlan:
    """Sizes of one check-API run."""

    subjects: int = 2_000
    requests: int = 600  # distinct bodies, sent round-robin
    connections: int = 16  # closed loop; the open loop uses up to twice as many
    warmup_s: float = 1.0
    seconds: float = 3.0  # counted seconds of each load run
    rounds: int = 3  # runs per system and phase, alternating Vigil and Cerbos; medians reported
    signal_rate: int = 1_000  # signals/s drained by the worker during the last phase (0: skip)
    # open-loop rate; 0: half of Vigil's saturation (the target's). A fixed rate compares CPU
    # per check and latency across runs (A/B of two versions) at the same offered load.
    latency_rate: float = 0.0
    # The PDP logs two lines per request at "info" (its default); audit is off in its config.
    # "warn" measures it without that log, i.e. at its best.
    cerbos_log_level: str = "warn"


QUICK = CheckPlan(subjects=500, requests=300, connections=8, warmup_s=0.5, seconds=2.0, rounds=1)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] (e) {msg}", flush=True)


# -- requests -------------------------------------------------------------------------------------


def build_states(records: Iterable[Out]) -> dict[str, SignalState]:
    """Each subject's signal state after ``records``, built the way the worker builds it."""
    states: dict[str, SignalState] = {}
    for rec in records:
        signal = validate_signal(orjson.loads(rec.value))
        key = rec.key.decode()
        apply_signal(states.setdefault(key, new_signal_state()), signal)
    return states


def make_requests(
    n: int, subjects: int, states: dict[str, SignalState], risk: RiskModel, seed: int = 5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` CheckResources requests as a PEP sends them to Vigil, and their Cerbos twins."""
    rng = random.Random(seed)
    vigil, cerbos = [], []
    for k in range(n):
        i = rng.randrange(subjects)
        sid = subject_id(i)
        roles = rng.choice([["employee"]] * 8 + [["agent"], ["admin", "employee"]])
        entries = []
        for j in range(rng.randint(1, 3)):
            if rng.random() < 0.8:
                owner = sid if rng.random() < 0.3 else "someone-else"
                res = {"kind": "document", "id": f"doc-{k}-{j}", "attr": {"owner": owner}}
                acts = rng.sample(["read", "write", "delete", "share"], rng.randint(1, 3))
            else:
                res = {"kind": "tool", "id": f"tool-{k}-{j}", "attr": {}}
                acts = rng.sample(["invoke", "admin"], rng.randint(1, 2))
            entries.append({"resource": res, "actions": acts})
        device, session = f"D-{sid}", f"s-{sid}-{k % 7}"
        body = {
            "requestId": f"bench-{k}",
            "principal": {"id": sid, "roles": roles, "attr": {"department": "eng"}},
            "resources": entries,
            "includeMeta": True,
        }
        twin = copy.deepcopy(body)
        state = states.get(f"user:{sid}", new_signal_state())
        twin["principal"]["attr"]["signals"] = signal_attributes(
            subject_snapshot(state, risk), state, device, session
        )
        twin["principal"]["attr"]["grant"] = dict(NO_GRANT)
        body["requestContext"] = {"annotations": {DEVICE_ID: device, SESSION_ID: session}}
        vigil.append(body)
        cerbos.append(twin)
    return vigil, cerbos


def _decisions(response: dict[str, Any]) -> list[Any]:
    """What must be equal: effects, matched policies and scopes, derived roles (a set)."""
    out = []
    for r in response["results"]:
        meta = r.get("meta", {})
        out.append(
            (
                r["resource"],
                r["actions"],
                meta.get("actions"),
                sorted(meta.get("effectiveDerivedRoles", [])),
            )
        )
    return out


async def compare_answers(
    vigil_url: str, cerbos_url: str, vigil: list[dict[str, Any]], cerbos: list[dict[str, Any]]
) -> dict[str, Any]:
    """Send every request once to both; count differing answers and the effects seen."""
    mismatches: list[str] = []
    effects: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:

        async def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
            async with http.post(f"{url}/api/check/resources", data=orjson.dumps(body)) as resp:
                data = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}: {data[:300]!r}")
                return dict(orjson.loads(data))

        async def one(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
            async with gate:
                a, b = await post(vigil_url, ours), await post(cerbos_url, theirs)
            if _decisions(a) != _decisions(b):
                mismatches.append(
                    f"{ours['requestId']}: vigil {a['results']} cerbos {b['results']}"
                )
            for r in a["results"]:
                for effect in r["actions"].values():
                    effects[effect] = effects.get(effect, 0) + 1

        gate = asyncio.Semaphore(8)
        await asyncio.gather(*(one(o, t) for o, t in zip(vigil, cerbos, strict=True)))
    return {
        "requests": len(vigil),
        "mismatches": len(mismatches),
        "examples": mismatches[:3],
        "effects": effects,
    }


# -- load phases ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_with_argument(text: str) -> int:
    """The process whose command line contains ``text`` (the PDP, started by the test helper)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise LookupError(f"no process with {text!r} in its command line")


async def load(
    url: str,
    bodies: Path,
    plan: CheckPlan,
    server_pid: int,
    rate: float = 0.0,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """One ``bench.http_load`` run in its own process; its JSON result, plus the server's CPU
    time per request (less sensitive to other load on the machine than the rates) and, for
    Vigil, the broker's (the audit records it stores)."""
    cmd = [
        sys.executable,
        "-m",
        "bench.http_load",
        "--url",
        url,
        "--bodies",
        str(bodies),
        "--connections",
        str(plan.connections * (2 if rate else 1)),
        "--warmup",
        str(plan.warmup_s),
        "--seconds",
        str(plan.seconds),
    ]
    if rate:
        cmd += ["--rate", f"{rate:.0f}"]
    cpu = cpu_seconds(server_pid)
    broker_cpu = cpu_seconds(broker_pid) if broker_pid else 0.0
    started = time.time()
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    cpu = cpu_seconds(server_pid) - cpu
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err.decode()[-2000:]}")
    result = dict(orjson.loads(out))
    result["window"] = [started, time.time()]  # wall clock, for the loop probe
    answered = max(1, result["requests_incl_warmup"])
    result["server_cpu_us_per_request"] = round(cpu / answered * 1e6)
    if broker_pid:
        result["broker_cpu_us_per_request"] = round(
            (cpu_seconds(broker_pid) - broker_cpu) / answered * 1e6
        )
    return result


async def paced_signals(worker: Worker, records: list[Out], rate: int, stop: asyncio.Event) -> int:
    """Produce ``records`` at ``rate``/s (10 ms ticks) until ``stop``; returns how many were sent."""
    prod = producer(worker.bootstrap, linger_ms=2)
    await prod.start()
    sent = 0
    try:
        started = time.perf_counter()
        while not stop.is_set() and sent < len(records):
            due = min(len(records), int((time.perf_counter() - started) * rate))
            if due > sent:
                await produce_batched(prod, records[sent:due], worker.topics)
                sent = due
            await asyncio.sleep(0.01)
    finally:
        await prod.stop()
    return sent


_MEDIANS = ("rate", "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_us_per_request")


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's settings with the median of each figure over ``runs``, and ``runs``."""
    out = dict(runs[0])
    for key in (*_MEDIANS, "broker_cpu_us_per_request", "generator_late_p99_ms"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 2)
    out["errors"] = sum(r["errors"] for r in runs)
    out["runs"] = runs
    return out


def _fmt_load(d: dict[str, Any]) -> str:
    text = (
        f"{d['rate']:,.0f} req/s (errors {d['errors']}), p50 {d.get('p50_ms')} ms, "
        f"p99 {d.get('p99_ms')} ms, max {d.get('max_ms')} ms; "
        f"server CPU {d['server_cpu_us_per_request']} µs/request"
    )
    if "broker_cpu_us_per_request" in d:
        text += f" + broker {d['broker_cpu_us_per_request']}"
    if "generator_late_p99_ms" in d:
        text += f"; generator late p99 {d['generator_late_p99_ms']} ms"
    return text


# -- where the latency goes (``--loop-probe``) ---------------------------------------------------


def _windows(out: dict[str, Any]) -> dict[str, list[list[float]]]:
    """Wall-clock windows of the Vigil runs per phase, and of the PDP runs (worker idle)."""
    phases: dict[str, list[list[float]]] = {}
    for key, label in (
        ("vigil_saturation", "Vigil closed loop"),
        ("vigil_latency", "Vigil open loop"),
        ("cerbos_latency", "PDP runs (worker idle)"),
    ):
        phases[label] = [r["window"] for r in out.get(key, {}).get("runs", []) if "window" in r]
    signal = out.get("vigil_latency_signal_load")
    if signal and "window" in signal:
        phases["Vigil open loop + signals"] = [signal["window"]]
    return phases


def probe_summary(path: Path, out: dict[str, Any], pid: int) -> dict[str, Any]:
    """Per phase, from the probe's lines (bench/loop_probe): how long the worker's event loop
    was late and how much of that it was running (the rest: waiting for a CPU), its callbacks
    over 2 ms of CPU by task, and its garbage collections."""
    mine = f"{pid} "
    lines = [
        line[len(mine) :].split(" ", 3)
        for line in path.read_text().splitlines()
        if line.startswith(mine)
    ]
    summary: dict[str, Any] = {}
    for phase, windows in _windows(out).items():
        span = sum(b - a for a, b in windows)
        if not span:
            continue

        def inside(t: str, windows: list[list[float]] = windows) -> bool:
            return any(a <= float(t) < b for a, b in windows)

        late = [(float(x[2]), float(x[3])) for x in lines if x[0] == "L" and inside(x[1])]
        steps: dict[str, list[float]] = {}
        gcs: dict[str, list[float]] = {}
        for x in lines:
            if x[0] == "C" and inside(x[1]):
                steps.setdefault(x[3], []).append(float(x[2]))
            elif x[0] == "G" and inside(x[1]):
                gcs.setdefault(f"gen{x[3]}", []).append(float(x[2]))
        summary[phase] = {
            "seconds": round(span, 1),
            "loop_late_s": round(sum(ms for ms, _ in late) / 1000, 2),
            "running_while_late_s": round(sum(min(c, ms) for ms, c in late) / 1000, 2),
            "steps_over_2ms_cpu": {
                name: {"count": len(v), "max_ms": round(max(v), 1), "sum_ms": round(sum(v), 1)}
                for name, v in sorted(steps.items(), key=lambda kv: -sum(kv[1]))
            },
            "gc": {
                g: {"count": len(v), "max_ms": round(max(v), 2), "sum_ms": round(sum(v), 1)}
                for g, v in sorted(gcs.items())
            },
        }
    return summary


def probe_lines(summary: dict[str, Any], top: int = 4) -> list[str]:
    """The probe summary as text."""
    lines = []
    for phase, p in summary.items():
        lines.append(
            f"  {phase} ({p['seconds']} s): loop late {p['loop_late_s']} s, running "
            f"{p['running_while_late_s']} s of it"
        )
        for name, st in list(p["steps_over_2ms_cpu"].items())[:top]:
            lines.append(
                f"    {st['count']:4d} steps > 2 ms CPU, max {st['max_ms']:6.1f} ms, "
                f"sum {st['sum_ms']:7.1f} ms: {name}"
            )
        gcs = ", ".join(f"{g} {v['count']}× max {v['max_ms']} ms" for g, v in p["gc"].items())
        lines.append(f"    GC (CPU): {gcs or 'none'}")
    return lines


# -- the run --------------------------------------------------------------------------------------


async def run_check_api(
    bootstrap: str,
    plan: CheckPlan,
    results: dict[str, Any],
    tmp: Path,
    profile: Path | None = None,
    prefix: str = "bench.check.",
    source: Path | None = None,
    loop_probe: Path | None = None,
) -> None:
    """Everything above on ``bootstrap`` (topics and group under ``prefix``); fills
    ``results["check_api"]``."""
    from tests.external_tools import cerbos_binary
    from tests.policy.test_differential import _server

    out: dict[str, Any] = {"plan": asdict(plan)}
    results["check_api"] = out
    topics = topic_names(prefix)
    await create_worker_topics(bootstrap, topics, PARTITIONS)
    probe_env = (
        {"PYTHONPATH": str(PROBE_DIR), "VIGIL_LOOP_PROBE": str(loop_probe)} if loop_probe else {}
    )
    worker = Worker(
        bootstrap,
        tmp / "check-worker",
        topics,
        group=f"{prefix}group",
        source=source,
        env=probe_env,
    )
    worker.start()
    try:
        took = await worker.wait_healthy()
        say(f"worker pid {worker.pid} healthy after {took:.1f}s; check API on {worker.api_url}")
        world = World.create(plan.subjects)
        state_records = list(world.preload_signals(range(plan.subjects)))
        state_records += world.mix(plan.subjects, range(plan.subjects), 1.0, 0.2, seed=31)
        prod = producer(bootstrap)
        await prod.start()
        try:
            base = (await worker.counters()).counts["signals"]
            n = await produce_batched(prod, state_records, topics)
        finally:
            await prod.stop()
        await worker.wait_for("signals", base + n, 120)
        await worker.wait_api_ready()
        say(f"{plan.subjects} subjects, {n} state signals applied")

        states = build_states(state_records)
        risk = RiskModel.from_file(REPO / "risk" / "model.yaml")
        vigil_reqs, cerbos_reqs = make_requests(plan.requests, plan.subjects, states, risk)
        vigil_bodies, cerbos_bodies = tmp / "vigil.jsonl", tmp / "cerbos.jsonl"
        vigil_bodies.write_bytes(b"\n".join(orjson.dumps(r) for r in vigil_reqs) + b"\n")
        cerbos_bodies.write_bytes(b"\n".join(orjson.dumps(r) for r in cerbos_reqs) + b"\n")
        actions = sum(len(e["actions"]) for r in vigil_reqs for e in r["resources"])
        resources = sum(len(r["resources"]) for r in vigil_reqs)
        out["workload"] = {
            "requests": len(vigil_reqs),
            "resources_per_request": round(resources / len(vigil_reqs), 2),
            "actions_per_request": round(actions / len(vigil_reqs), 2),
            "vigil_body_bytes": round(vigil_bodies.stat().st_size / len(vigil_reqs)),
            "cerbos_body_bytes": round(cerbos_bodies.stat().st_size / len(vigil_reqs)),
        }

        cerbos_dir = tmp / "cerbos"
        cerbos_dir.mkdir()
        pdp_args = [f"--log-level={plan.cerbos_log_level}"]
        with _server(
            cerbos_binary(), REPO / "policies", cerbos_dir, {}, args=pdp_args
        ) as cerbos_url:
            cerbos_pid = pid_with_argument(str(cerbos_dir / "cerbos.json"))
            answers = await compare_answers(worker.api_url, cerbos_url, vigil_reqs, cerbos_reqs)
            out["answers"] = answers
            say(
                f"answers compared on {answers['requests']} requests: {answers['mismatches']} "
                f"differ; effects {answers['effects']}"
            )
            if profile is not None:
                prof = Profiler(worker.pid, profile)
                await prof.start()
                try:
                    profiled = await load(worker.api_url, vigil_bodies, plan, worker.pid)
                finally:
                    await prof.stop()
                out["profile"] = {"load": profiled, **top_functions(prof.raw, 25)}
                say(f"Vigil closed loop under py-spy: {_fmt_load(profiled)}; {prof.svg}")
            broker_pid = pid_with_argument(f"tcp://{bootstrap}")
            vigil = (worker.api_url, vigil_bodies, worker.pid, broker_pid)
            cerbos = (cerbos_url, cerbos_bodies, cerbos_pid, None)

            async def alternate(label: str, rate: float = 0.0) -> tuple[dict, dict]:
                """``plan.rounds`` runs on each system, alternating (the machine's other load
                drifts); the medians and every run."""
                runs: dict[str, list[dict[str, Any]]] = {"vigil": [], "cerbos": []}
                for n in range(plan.rounds):
                    for name, (url, bodies, pid, bpid) in (("vigil", vigil), ("cerbos", cerbos)):
                        got = await load(url, bodies, plan, pid, rate, bpid)
                        runs[name].append(got)
                        say(f"{name} {label} #{n + 1}: {_fmt_load(got)}")
                return median_run(runs["vigil"]), median_run(runs["cerbos"])

            vigil_sat, cerbos_sat = await alternate(f"closed loop ({plan.connections} conn.)")
            rate = plan.latency_rate or max(1.0, vigil_sat["rate"] / 2)
            vigil_lat, cerbos_lat = await alternate(f"open loop {rate:,.0f}/s", rate)
            out.update(
                vigil_saturation=vigil_sat,
                cerbos_saturation=cerbos_sat,
                latency_rate=rate,
                vigil_latency=vigil_lat,
                cerbos_latency=cerbos_lat,
            )
        if plan.signal_rate:
            n_signals = int(plan.signal_rate * (plan.warmup_s + plan.seconds + 2))
            mix = world.mix(n_signals, range(plan.subjects), 0.2, 0.05, seed=32)
            base = (await worker.counters()).counts["signals"]
            stop = asyncio.Event()
            pacer = asyncio.create_task(paced_signals(worker, mix, plan.signal_rate, stop))
            try:
                await asyncio.sleep(0.5)
                loaded = await load(
                    worker.api_url, vigil_bodies, plan, worker.pid, rate, broker_pid
                )
            finally:
                stop.set()
                sent = await pacer
            consumed = (await worker.counters()).counts["signals"] - base
            loaded["signals_sent"] = sent
            loaded["signals_consumed_by_end"] = consumed
            loaded["signal_rate"] = plan.signal_rate
            out["vigil_latency_signal_load"] = loaded
            say(
                f"Vigil open loop {rate:,.0f}/s with {plan.signal_rate}/s signals "
                f"({consumed:.0f} of {sent} consumed by the end): {_fmt_load(loaded)}"
            )
        if loop_probe is not None:
            out["loop_probe"] = probe_summary(loop_probe, out, worker.pid)
        out["audit_dropped"] = await _metric(worker, "vigil_check_audit_dropped_total")
        out["gc_frozen_objects"] = await _metric(worker, "vigil_gc_frozen_objects")
    finally:
        await worker.stop()


async def _metric(worker: Worker, name: str) -> float:
    """Sum of one metric's samples on the worker's ``/metrics``."""
    async with worker.session().get(f"http://127.0.0.1:{worker.port}/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name)] in " {"
    )


def _row(d: dict[str, Any]) -> str:
    cpu = f"{d['server_cpu_us_per_request']:,.0f}"
    if "broker_cpu_us_per_request" in d:
        cpu += f" + {d['broker_cpu_us_per_request']:,.0f}"
    return f"{d['rate']:,.0f} | {d.get('p50_ms')} / {d.get('p99_ms')} | {cpu}"


def markdown(res: dict[str, Any]) -> list[str]:
    """The (e) table and its reading against the target."""
    c = res.get("check_api")
    if not c or "vigil_saturation" not in c:
        return [] if not c else [f"(e) check API: incomplete run: {c.get('error', 'see log')}"]
    w, a = c["workload"], c["answers"]
    vs, cs, vl, cl = (
        c["vigil_saturation"],
        c["cerbos_saturation"],
        c["vigil_latency"],
        c["cerbos_latency"],
    )
    sl = c.get("vigil_latency_signal_load")
    ratio = vs["rate"] / cs["rate"] if cs["rate"] else 0.0
    how = "fixed rate" if c["plan"].get("latency_rate") else "half Vigil's saturation"
    lines = [
        "",
        f"(e) Check API, `POST /api/check/resources`: one `vigil worker` process vs the stock Cerbos "
        f"PDP 0.55 on the default bundle; {w['requests']:,} distinct requests "
        f"({w['resources_per_request']} resources, {w['actions_per_request']} actions per request; "
        f"{w['vigil_body_bytes']} bytes to Vigil, {w['cerbos_body_bytes']} bytes with the signals to "
        f"Cerbos), load generator `bench.http_load` in its own process; answers compared on every "
        f"request: {a['mismatches']} differed. PDP at `--log-level={c['plan']['cerbos_log_level']}`, "
        f"audit off; Vigil audits every action to Kafka. Medians of {c['plan']['rounds']} runs per "
        f"system and phase, Vigil and Cerbos alternating, each {c['plan']['seconds']:g} s counted "
        f"after {c['plan']['warmup_s']:g} s warm-up. CPU µs/req: the server process's user + "
        "system time over a run divided by the requests it answered (idle work included); for "
        "Vigil, + the broker's for the audit records.",
        "",
        "| phase | Vigil req/s | p50 / p99 ms | CPU µs/req | Cerbos req/s | p50 / p99 ms | "
        "CPU µs/req | Vigil / Cerbos |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| closed loop, {vs['connections']} connections (saturation) | {_row(vs)} | {_row(cs)} | "
        f"**{ratio:.2f}×** |",
        f"| open loop at {c['latency_rate']:,.0f}/s ({how}) | {_row(vl)} | {_row(cl)} | |",
    ]
    if sl:
        lines.append(
            f"| same, worker draining {sl['signal_rate']:,} signals/s | {_row(sl)} | | | | |"
        )
    per_round = [
        v["rate"] / c_["rate"] for v, c_ in zip(vs["runs"], cs["runs"], strict=True) if c_["rate"]
    ]
    lines.append(
        "\nVigil / Cerbos closed-loop throughput per round: "
        + ", ".join(f"{r:.2f}×" for r in per_round)
        + "."
    )
    lines.append(
        f"Open loop: the generator put requests on their way up to "
        f"{vl.get('generator_late_p99_ms')} ms (Vigil runs) / {cl.get('generator_late_p99_ms')} ms "
        "(Cerbos runs) late at p99 (its own share of the CPU; a latency near that is the "
        f"machine's, not the server's). Audit records dropped by Vigil: "
        f"{c.get('audit_dropped', float('nan')):g}."
    )
    errors = vs["errors"] + cs["errors"] + vl["errors"] + cl["errors"]
    met_rate = ratio >= 1.0
    met_p99 = (vl.get("p99_ms") or 1e9) <= TARGET_P99_MS and vl["rate"] >= 0.95 * c["latency_rate"]
    lines += [
        "",
        f"- Throughput: Vigil {vs['rate']:,.0f} req/s = {ratio:.2f}× the stock PDP → "
        + ("**met**" if met_rate else "**not met**")
        + f"; p99 at half saturation {vl.get('p99_ms')} ms (target ≤ {TARGET_P99_MS:g}) → "
        + ("**met**" if met_p99 else "**not met**")
        + f". Non-200 answers: {errors}.",
    ]
    return lines


async def main_async(
    plan: CheckPlan, profile: Path | None = None, ref: str = "", loop_probe: Path | None = None
) -> dict[str, Any]:
    from streams.kafka.broker import EmbeddedBroker

    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="vigil-check-bench-") as tmpdir,
        EmbeddedBroker() as broker,
    ):
        tmp = Path(tmpdir)
        source = tmp / "source" if ref else None
        results["source"] = snapshot(ref, source) if source is not None else "working tree"
        await run_check_api(
            broker.bootstrap, plan, results, tmp, profile, source=source, loop_probe=loop_probe
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--connections", type=int, default=None)
    parser.add_argument("--signal-rate", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open-loop rate in requests/s (default: half of Vigil's measured saturation)",
    )
    parser.add_argument("--cerbos-log-level", default=None, help="the PDP's --log-level (warn)")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy the worker during an extra closed loop: DIR/profile.svg, DIR/profile.txt",
    )
    parser.add_argument(
        "--ref", default="", help="run the worker from this git ref (see bench.run --ref)"
    )
    parser.add_argument(
        "--loop-probe",
        type=Path,
        default=None,
        metavar="FILE",
        help="record the worker's event-loop stalls, long callbacks and GC to FILE "
        "(bench/loop_probe) and summarize them per phase",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else CheckPlan()
    overrides = {
        k: v
        for k, v in (
            ("seconds", args.seconds),
            ("connections", args.connections),
            ("signal_rate", args.signal_rate),
            ("cerbos_log_level", args.cerbos_log_level),
            ("rounds", args.rounds),
            ("latency_rate", args.rate),
        )
        if v is not None
    }
    plan = CheckPlan(**{**asdict(plan), **overrides})
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.loop_probe is not None:
        args.loop_probe = args.loop_probe.resolve()
        args.loop_probe.unlink(missing_ok=True)
    results = asyncio.run(main_async(plan, args.profile, args.ref, args.loop_probe))
    if args.out is not None:
        args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print("\n".join(markdown(results)))
    probe = results.get("check_api", {}).get("loop_probe")
    if probe:
        print("\nworker event loop (bench/loop_probe):")
        print("\n".join(probe_lines(probe)))
    prof = results.get("check_api", {}).get("profile")
    if prof:
        print(f"\nprofile: {prof['samples']} samples; own time:")
        for row in prof["own"]:
            print(f"  {row['pct']:5.1f}  {row['function']}")
        print("inclusive (streams/):")
        for row in prof["streams_total"]:
            print(f"  {row['pct']:5.1f}  {row['function']}")


if __name__ == "__main__":
    main()
