"""Vigil's policy engine against the stock Cerbos PDP 0.55 on the same requests.

Run: ``.venv/bin/python -m bench.policy_vs_cerbos [--requests N] [--concurrency C] [--no-docs]``

Measures, on the default bundle (`policies/`, Cerbos policy documents only) and one generated
set of CheckResources requests shaped like the pipeline's (a principal with live signals, 1-3
documents/tools, 1-3 actions each):

1. in process: `PolicyEngine.check` latency per action (what the worker pays), and
   `api.check_resources` per request (adds validation and response JSON);
2. `vigil policy eval`: requests as JSON lines through one subprocess (pipelined; startup and
   compile excluded), and through C processes each taking a share of the lines;
3. the stock Cerbos PDP (`cerbos server`, fetched from npm like tests/external_tools.py)
   answering the same requests over HTTP `/api/check/resources`: sequential on one keep-alive
   connection, and with C concurrent connections (client threads).

Responses of both are compared on the way (effects and matched policies), then figures and
ratios are printed and the section "Policy engine vs stock Cerbos PDP" of docs/performance.md is
rewritten (the rest of that file belongs to `make bench`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streams.policy import PolicyEngine
from streams.policy.api import check_resources
from streams.policy.bench import HEALTHY_SIGNALS
from streams.policy.loader import load_directory

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
DOC = REPO / "docs" / "performance.md"
HEADING = "## Policy engine vs stock Cerbos PDP"

HEALTHY: dict[str, Any] = HEALTHY_SIGNALS


def make_requests(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """N CheckResources requests like the pipeline's: varied signals, 1-3 resources."""
    rng = random.Random(seed)
    levels = ["LOW"] * 6 + ["MEDIUM"] * 3 + ["HIGH"]
    zones = ["corp", "corp", "vpn", "public", "untrusted"]
    out = []
    for i in range(n):
        signals = json.loads(json.dumps(HEALTHY))
        signals["risk"] = {"level": rng.choice(levels), "score": float(rng.randint(0, 100))}
        signals["device"]["compliant"] = rng.random() < 0.8
        signals["network"]["zone"] = rng.choice(zones)
        signals["session"]["revoked"] = rng.random() < 0.05
        signals["identity"]["credential_compromised"] = rng.random() < 0.03
        pid = f"user{rng.randint(1, 50)}"
        roles = rng.choice([["employee"], ["employee"], ["agent"], ["admin", "employee"]])
        grant = {"id": f"g-{i}", "issued_at": "2026-01-01T00:00:00Z", "expires_at": ""}
        entries = []
        for j in range(rng.randint(1, 3)):
            if rng.random() < 0.75:
                owner = pid if rng.random() < 0.3 else "someone"
                res = {"kind": "document", "id": f"d{i}-{j}", "attr": {"owner": owner}}
                actions = rng.sample(["read", "write", "delete", "share"], rng.randint(1, 3))
            else:
                res = {"kind": "tool", "id": f"t{i}-{j}", "attr": {}}
                actions = rng.sample(["invoke", "admin"], rng.randint(1, 2))
            entries.append({"resource": res, "actions": actions})
        out.append(
            {
                "requestId": f"bench-{i}",
                "principal": {
                    "id": pid,
                    "roles": roles,
                    "attr": {"signals": signals, "grant": grant},
                },
                "resources": entries,
                "includeMeta": True,
            }
        )
    return out


def _actions(requests: list[dict[str, Any]]) -> int:
    return sum(len(e["actions"]) for r in requests for e in r["resources"])


def _best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# -- Vigil ----------------------------------------------------------------------------------------


def bench_in_process(requests: list[dict[str, Any]], repeat: int) -> dict[str, float]:
    """µs per action of `engine.check`, µs per request of `check_resources`."""
    engine = PolicyEngine.from_directory(POLICIES)
    now = dt.datetime.now(dt.UTC)
    calls = [
        (r["principal"], e["resource"], e["actions"]) for r in requests for e in r["resources"]
    ]

    def checks() -> None:
        for p, res, acts in calls:
            engine.check(p, res, acts, now=now)

    def api() -> None:
        for r in requests:
            check_resources(engine, r, now=now)

    checks()  # warm the per-(action, role) indexes
    n_actions = _actions(requests)
    t_check = _best(checks, repeat)
    t_api = _best(api, repeat)
    return {
        "check_us_per_action": t_check / n_actions * 1e6,
        "check_us_per_call": t_check / len(calls) * 1e6,
        "api_us_per_request": t_api / len(requests) * 1e6,
        "api_requests_per_s": len(requests) / t_api,
    }


def _eval_proc(bundle: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "policy", "eval", str(bundle)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _run_eval(
    bundle: Path, lines: list[bytes], ready: threading.Barrier | None = None
) -> tuple[float, float, list[bytes]]:
    """Start one `vigil policy eval`, wait for its first answer (startup + compile), then time
    the remaining lines, pipelined (a writer thread feeds stdin while we read stdout).
    Returns (seconds for the remaining lines, perf_counter at the last answer, answers)."""
    proc = _eval_proc(bundle)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(lines[0])
    proc.stdin.flush()
    first = proc.stdout.readline()
    if ready is not None:
        ready.wait()
    rest = lines[1:]
    t0 = time.perf_counter()

    def feed() -> None:
        assert proc.stdin is not None
        for line in rest:
            proc.stdin.write(line)
        proc.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    answers = [first] + [proc.stdout.readline() for _ in rest]
    done = time.perf_counter()
    writer.join()
    proc.wait(timeout=60)  # interpreter shutdown is not part of the figure
    return done - t0, done, answers


def bench_eval(bundle: Path, requests: list[dict[str, Any]], procs: int) -> dict[str, Any]:
    lines = [json.dumps(r).encode() + b"\n" for r in requests]
    t0 = time.perf_counter()
    startup = _eval_proc(bundle)
    startup.communicate(b"", timeout=120)
    startup_s = time.perf_counter() - t0
    elapsed, _, answers = _run_eval(bundle, lines)
    n = len(lines) - 1
    result: dict[str, Any] = {
        "startup_s": startup_s,
        "requests_per_s": n / elapsed,
        "actions_per_s": (_actions(requests) - _actions(requests[:1])) / elapsed,
        "answers": answers,
    }
    # C processes, each taking every C-th line.
    shares = [lines[i::procs] for i in range(procs)]
    barrier = threading.Barrier(procs + 1)
    with concurrent.futures.ThreadPoolExecutor(procs) as pool:
        futures = [pool.submit(_run_eval, bundle, share, barrier) for share in shares]
        barrier.wait()
        t0 = time.perf_counter()
        wall = max(f.result()[1] for f in futures) - t0
    result["parallel_requests_per_s"] = (len(lines) - procs) / wall
    return result


# -- stock Cerbos ---------------------------------------------------------------------------------


def _cerbos() -> tuple[Any, Any] | None:
    """The binary fetch and server helpers of the differential test (None if unavailable)."""
    sys.path.insert(0, str(REPO))
    try:
        from tests.external_tools import cerbos_binary
        from tests.policy.test_differential import _server

        return cerbos_binary(), _server
    except BaseException as exc:  # pytest.skip raises a BaseException outside pytest
        print(f"stock Cerbos unavailable: {exc}", file=sys.stderr)
        return None


def _post(conn: http.client.HTTPConnection, body: bytes) -> bytes:
    conn.request("POST", "/api/check/resources", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"cerbos answered {resp.status}: {data[:200]!r}")
    return data


@contextlib.contextmanager
def _connection(url: str) -> Iterator[http.client.HTTPConnection]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def bench_cerbos(
    url: str, requests: list[dict[str, Any]], concurrency: int, repeat: int
) -> dict[str, Any]:
    bodies = [json.dumps(r).encode() for r in requests]
    with _connection(url) as conn:
        for b in bodies[:200]:  # warm up
            _post(conn, b)
        answers: list[bytes] = []
        latencies: list[float] = []

        def sequential() -> None:
            answers.clear()
            latencies.clear()
            for b in bodies:
                t = time.perf_counter()
                answers.append(_post(conn, b))
                latencies.append(time.perf_counter() - t)

        t_seq = _best(sequential, repeat)
    shares = [bodies[i::concurrency] for i in range(concurrency)]

    def worker(share: list[bytes]) -> None:
        with _connection(url) as c:
            for b in share:
                _post(c, b)

    def parallel() -> None:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(worker, shares))

    t_par = _best(parallel, repeat)
    return {
        "requests_per_s": len(bodies) / t_seq,
        "actions_per_s": _actions(requests) / t_seq,
        "us_per_action": t_seq / _actions(requests) * 1e6,
        "median_request_ms": statistics.median(latencies) * 1000,
        "parallel_requests_per_s": len(bodies) / t_par,
        "answers": answers,
    }


def _same_decisions(ours: list[bytes], theirs: list[bytes]) -> int:
    """Number of responses whose effects and matched policies differ (should be 0)."""
    bad = 0
    for a, b in zip(ours, theirs, strict=True):
        ra, rb = json.loads(a), json.loads(b)
        key = [(r["actions"], r["meta"]["actions"]) for r in ra["results"]]
        if key != [(r["actions"], r["meta"]["actions"]) for r in rb["results"]]:
            bad += 1
    return bad


# -- report ---------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def render(figures: dict[str, Any], args: argparse.Namespace) -> str:
    v, e, c = figures["vigil"], figures["eval"], figures.get("cerbos")
    lines = [
        HEADING,
        "",
        f"`.venv/bin/python -m bench.policy_vs_cerbos --requests {args.requests} "
        f"--concurrency {args.concurrency}` on {figures['when']} ({figures['machine']}). "
        f"Default bundle (`policies/`), {args.requests} generated CheckResources requests, "
        f"{figures['actions']} actions ({figures['actions'] / args.requests:.1f} per request, "
        f"{figures['resources'] / args.requests:.1f} resources); best of {args.repeat}. "
        "Both engines' decisions (effects and matched policies) were compared on every request: "
        f"{figures.get('mismatches', 'n/a')} differed.",
        "",
        "| what | Vigil | stock Cerbos 0.55 | Vigil / Cerbos |",
        "|---|---:|---:|---:|",
    ]

    def row(label: str, ours: float, theirs: float | None, unit: str, higher_better: bool) -> None:
        ratio = ""
        if theirs:
            r = ours / theirs if higher_better else theirs / ours
            ratio = f"{r:.2f}× {'faster' if r >= 1 else 'slower'}"
        lines.append(
            f"| {label} | {_fmt(ours)} {unit} | {(_fmt(theirs) + ' ' + unit) if theirs else '—'} | {ratio} |"
        )

    row(
        "µs per action, in process `engine.check` vs HTTP sequential",
        v["check_us_per_action"],
        c and c["us_per_action"],
        "µs",
        False,
    )
    row(
        "requests/s, `check_resources` in process vs HTTP sequential",
        v["api_requests_per_s"],
        c and c["requests_per_s"],
        "req/s",
        True,
    )
    row(
        "requests/s, `vigil policy eval` (1 process) vs HTTP sequential",
        e["requests_per_s"],
        c and c["requests_per_s"],
        "req/s",
        True,
    )
    row(
        f"requests/s, {args.concurrency} eval processes vs {args.concurrency} HTTP connections",
        e["parallel_requests_per_s"],
        c and c["parallel_requests_per_s"],
        "req/s",
        True,
    )
    lines += [
        "",
        f"Other figures: `engine.check` {v['check_us_per_call']:.1f} µs per call (one resource); "
        f"`check_resources` {v['api_us_per_request']:.1f} µs per request; `vigil policy eval` "
        f"startup + compile {e['startup_s']:.2f} s, {_fmt(e['actions_per_s'])} actions/s"
        + (
            f"; Cerbos median HTTP round trip {c['median_request_ms']:.2f} ms, "
            f"{_fmt(c['actions_per_s'])} actions/s sequential."
            if c
            else "; stock Cerbos was not available."
        ),
        "",
        "Reading: the in-process figure is what the Vigil worker pays per decision; the Cerbos "
        "figures include HTTP/JSON on loopback and the Python client (one keep-alive connection "
        "per client thread), which is what a service calling a Cerbos sidecar pays. The "
        "concurrent rows are driven by one Python client process sharing the 2 vCPUs with the "
        "servers, so they are lower bounds for both (Cerbos gains from concurrency because its "
        "time is mostly round trips; the eval processes compete with the client for CPU). "
        "Single runs on a shared VM; expect ±15 %.",
        "",
    ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    """Replace (or append) only our section of docs/performance.md."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(HEADING))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + section + ("\n" + text[end:] if nxt >= 0 else "")
    DOC.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/performance.md")
    args = parser.parse_args(argv)
    requests = make_requests(args.requests)
    figures: dict[str, Any] = {
        "when": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "actions": _actions(requests),
        "resources": sum(len(r["resources"]) for r in requests),
    }
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "policies"
        for lf in load_directory(POLICIES).files:  # stock Cerbos rejects non-policy YAML
            (bundle / lf.rel_path).parent.mkdir(parents=True, exist_ok=True)
            (bundle / lf.rel_path).write_bytes(lf.raw)
        print(f"{len(requests)} requests, {figures['actions']} actions", flush=True)
        figures["vigil"] = bench_in_process(requests, args.repeat)
        print("in process:", {k: round(v, 2) for k, v in figures["vigil"].items()}, flush=True)
        ev = bench_eval(bundle, requests, args.concurrency)
        our_answers = ev.pop("answers")
        figures["eval"] = ev
        print("vigil policy eval:", {k: round(v, 2) for k, v in ev.items()}, flush=True)
        cerbos = _cerbos()
        if cerbos is not None:
            binary, server = cerbos
            try:
                with server(binary, bundle, Path(tmp), {}) as url:
                    cb = bench_cerbos(url, requests, args.concurrency, args.repeat)
            except BaseException as exc:  # pytest.fail outside pytest
                print(f"stock Cerbos failed: {exc}", file=sys.stderr)
                cb = None
            if cb is not None:
                figures["mismatches"] = _same_decisions(our_answers, cb.pop("answers"))
                figures["cerbos"] = cb
                print("stock cerbos:", {k: round(v, 2) for k, v in cb.items()}, flush=True)
    section = render(figures, args)
    print()
    print(section)
    if not args.no_docs:
        write_doc(section)
        print(f"updated {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
