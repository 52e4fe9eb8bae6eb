"""The results table (markdown, printed and written into docs/performance.md between markers)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bench import check_api, ephemeral, memory, restore

START = "<!-- bench:results:start (written by `make bench`; edits here are overwritten) -->"
END = "<!-- bench:results:end -->"
TARGET_RATE = 20_000
TARGET_P99_MS = 50


def _n(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def headline(d: dict[str, Any], key: str = "rate") -> float | None:
    """Drain-only rate when the drain window was long enough, else first→last overall."""
    if not d or "error" in d:
        return None
    return d.get(f"drain_{key}" if key != "rate" else "drain_rate") or d.get(key)


def fmt_drain(d: dict[str, Any]) -> str:
    if "error" in d:
        return f"error: {d['error']}"
    parts = [f"{_n(d.get('rate'))}/s overall over {d.get('seconds')}s"]
    if "drain_rate" in d:
        parts.append(f"{_n(d['drain_rate'])}/s drain-only over {d['drain_seconds']}s")
    if "decisions_rate" in d:
        parts.append(
            f"decisions {_n(d['decisions_rate'])}/s, revocations {_n(d.get('revocations_total'))}"
        )
    return "; ".join(parts)


def fmt_latency(lat: dict[str, Any]) -> str:
    r, d = lat["revocation"]["first_per_signal"], lat["decision"]["first_per_signal"]
    text = (
        f"sent {lat['achieved_send_rate']:,.0f}/s; revocation p50 {r.get('p50_ms')} ms "
        f"p99 {r.get('p99_ms')} ms; decision p50 {d.get('p50_ms')} ms p99 {d.get('p99_ms')} ms"
    )
    cross = lat["revocation"].get("cross_subject")
    if cross is not None:
        same = lat["revocation"].get("same_subject", {})
        text += (
            f"; same-subject revocation p50 {same.get('p50_ms')} ms p99 {same.get('p99_ms')} ms, "
            f"cross-subject (delegation) p50 {cross.get('p50_ms')} ms p99 {cross.get('p99_ms')} ms"
        )
    return text


def fmt_trace(tr: dict[str, Any]) -> str:
    """The fetch trace in one line: p50/p99 of each step (ms)."""
    if not tr:
        return "no trace"

    def pp(name: str) -> str:
        d = tr.get(name, {})
        return f"{d.get('p50_ms')}/{d.get('p99_ms')}"

    return (
        f"{tr['fetches']} fetches ({tr['fetches_with_data']} with data), round trip {pp('fetch_round_trip')}, "
        f"gap {pp('fetch_gap')}; newest record age at hand-over {pp('newest_age_at_handover')}, "
        f"oldest {pp('oldest_age_at_handover')}; {tr['batches']} batches of {tr['records_per_batch']}: "
        f"newest age at start {pp('newest_age_at_batch_start')}, oldest {pp('oldest_age_at_batch_start')}, "
        f"start → outputs acked {pp('batch_start_to_outputs_acked')}, start → end {pp('batch_start_to_end')}; "
        f"{tr['batches_holding_records']} batches left records buffered; per record: "
        f"produced → handed over {pp('record_age_at_handover')}, handed over → batch start "
        f"{pp('record_handover_to_batch_start')} (ms p50/p99)"
    )


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}×"


def markdown(res: dict[str, Any]) -> str:
    """Every figure of one run as markdown, with the honest reading against the targets."""
    base = res.get("baseline", {})
    mix, hot, quix = res.get("vigil_mix", {}), res.get("vigil_hot", {}), res.get("quix", {})
    lat, pre = res.get("latency", {}), res.get("preload", {})
    m = res["machine"]
    mix_rate, hot_rate, quix_rate = headline(mix), headline(hot), headline(quix)
    dec_base = base.get("consume_decode_rate")
    lines = [
        f"### Run of {res['date']} ({res['plan']['name']})",
        "",
        f"- Command: `{res['command']}` (wall time {res.get('elapsed_s', '?')} s); worker code: "
        f"{res.get('source', 'working tree')}",
        f"- Machine: `nproc` = {m['nproc']}, {m['cpu']}, Python {m['python']}; load average at "
        f"start `{m['loadavg_start']}`, end `{m.get('loadavg_end', '?')}`",
        "- `free -g`: `" + " / ".join(" ".join(x.split()) for x in m["free_g"].splitlines()) + "`",
        "- One embedded Tansu broker (memory storage), and a fresh one per latency run of (c); broker, "
        "worker and load generator share the cores.",
    ]
    if pre:
        lines.append(
            f"- State: **{pre['subjects']:,} subjects × 10 grants = {pre['grants']:,} active grants** "
            f"(preloaded through the worker in {pre['seconds']} s; grant events at "
            f"{_n(pre['grant_rate'])}/s incl. one decision each)"
            + (
                ""
                if pre["subjects"] >= res["plan"]["subjects"]
                else f" — scaled down from {res['plan']['subjects']:,} subjects: the preload did not fit the "
                f"{res['plan']['preload_budget_s']:.0f} s budget"
            )
        )
    if base or mix or hot or quix:  # parts (a), (b), (d): a run of other parts skips these
        mx = res["mix"]
        lines += [
            f"- Realistic mix: {1 - mx['changing']:.0%} telemetry that changes no policy-visible state "
            "(half network-context repeating the subject's zone/IP/country/ASN, half risk-level-change "
            f"repeating its level) and {mx['changing']:.0%} that change it (risk LOW↔MEDIUM or zone "
            f"corp↔vpn → all grants re-evaluated; {mx['revoking_of_changing']:.0%} of them device "
            "not-compliant → read+write grants revoked). Events ≈"
            f"{base.get('avg_bytes', '?')} bytes of JSON.",
            "",
            "| measurement | events/s | decisions/s | vs consume+decode | vs Quix |",
            "|---|---:|---:|---:|---:|",
            f"| (a) raw aiokafka producer, `send()` keyed, linger 20 ms, 256 KiB | {_n(base.get('produce_rate'))} | | | |",
            f"| (a) raw aiokafka consumer, `getmany`, no decode | {_n(base.get('consume_rate'))} | | | |",
            f"| (a) raw aiokafka consumer, `getmany` + `orjson.loads` | {_n(dec_base)} | | 1.00× | |",
            f"| (b) Vigil worker, realistic mix ({1 - mx['changing']:.0%}/{mx['changing']:.0%}) | **{_n(mix_rate)}** "
            f"| {_n(headline(mix, 'decisions_rate'))} | {_ratio(mix_rate, dec_base)} | **{_ratio(mix_rate, quix_rate)}** |",
            f"| (b) Vigil worker, 100% state-changing | {_n(hot_rate)} | {_n(headline(hot, 'decisions_rate'))} "
            f"| {_ratio(hot_rate, dec_base)} | {_ratio(hot_rate, quix_rate)} |",
            f"| (d) Quix Streams: JSON decode + RocksDB per-subject update + 1 output | {_n(quix_rate)} | "
            f"| {_ratio(quix_rate, dec_base)} | 1.00× |",
            "",
            "Worker rates are drain-only (backlog produced, producer finished, worker still draining; "
            "counters polled every 0.25 s) when that window lasted ≥ 1 s, else first→last progress:",
            "",
            "| run | signals | overall /s (s) | drain-only /s (s) | decisions | revocations | backlog produced at /s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, d in (
            ("(b) mix", mix),
            ("(b) 100% changing", hot),
            ("(d) Quix", quix),
            ("(b) mix under py-spy", res.get("profile", {}).get("drain_under_pyspy", {})),
        ):
            if not d:
                continue
            if "error" in d:
                lines.append(f"| {name} | error: {d['error']} | | | | | |")
                continue
            lines.append(
                f"| {name} | {_n(d.get('processed'))} | {_n(d.get('rate'))} ({d.get('seconds')}) | "
                f"{_n(d.get('drain_rate'))} ({d.get('drain_seconds', '—')}) | {_n(d.get('decisions_total'))} | "
                f"{_n(d.get('revocations_total'))} | {_n(d.get('produce_rate'))} |"
            )
    lines += _per_host_lines(res.get("per_host", {}), quix_rate)
    for lat_run, relay_run in (
        (lat, res.get("relay_latency", {})),
        (res.get("latency_low", {}), res.get("relay_latency_low", {})),
        (res.get("latency_host", {}), res.get("relay_latency_host", {})),
    ):
        if lat_run:
            lines += _latency_table(lat_run)
        if relay_run:
            lines += _relay_lines(lat_run, relay_run)
    lines += ssf_lines(res.get("ssf", {}))
    prof = res.get("profile")
    if prof and prof.get("own"):
        lines += [
            "",
            f"Profile (py-spy, {prof['samples']:,} samples of the worker during a mix drain; "
            "`bench/results/profile.svg`), top functions by own time:",
            "",
            "| # | function | own % |",
            "|---:|---|---:|",
        ]
        lines += [f"| {i} | `{f['function']}` | {f['pct']} |" for i, f in enumerate(prof["own"], 1)]
        lines += [
            "",
            "Inclusive time of Vigil's own functions (share of all samples):",
            "",
            "| function | incl. % |",
            "|---|---:|",
        ]
        lines += [f"| `{f['function']}` | {f['pct']} |" for f in prof.get("streams_total", [])]
    lines += check_api.markdown(res)
    lines += memory.markdown(res) + restore.markdown(res) + ephemeral.markdown(res)
    lines += goals_lines(res)
    if res.get("failed"):
        lines += ["", "Parts that failed in this run: " + "; ".join(res["failed"]) + "."]
    if quix and "error" in quix:
        lines.append(f"- Quix Streams failed on this broker: `{quix['error']}`")
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**not met**")


def _p99(lat: dict[str, Any]) -> float | None:
    return lat.get("revocation", {}).get("first_per_signal", {}).get("p99_ms") if lat else None


def goals_lines(res: dict[str, Any]) -> list[str]:
    """Issue 10's goals, each as this run's figure, its baseline from the same run, the ratio and
    the target; a goal whose part did not run (or failed) says so instead of a verdict."""
    mix_rate, quix_rate = headline(res.get("vigil_mix", {})), headline(res.get("quix", {}))
    hot_rate = headline(res.get("vigil_hot", {}))
    rows: list[tuple[str, str, str, str, str, str]] = []
    ratio = mix_rate / quix_rate if mix_rate and quix_rate else None
    if mix_rate or quix_rate:
        rows.append(
            (
                "1. Throughput, one worker process, realistic mix",
                f"{_n(mix_rate)} signals/s (100 % changing: {_n(hot_rate)}/s)",
                f"Quix Streams {_n(quix_rate)}/s",
                _ratio(mix_rate, quix_rate),
                "≥ 1.0×",
                _verdict(None if ratio is None else ratio >= 1.0),
            )
        )
    ph = res.get("per_host", {})
    if ph and "error" not in ph:
        n = max((k for k in ph if k.isdigit()), key=int, default=None)
        one, many = headline(ph.get("1", {})), headline(ph.get(n, {})) if n else None
        rows.append(
            (
                f"1. Per host, {n} processes (`--processes {n}`, {ph.get('cores')} cores)",
                f"{_n(many)} signals/s",
                f"1 process {_n(one)}/s; Quix {_n(quix_rate)}/s",
                f"{_ratio(many, one)}; {_ratio(many, quix_rate)}",
                "reported",
                "—",
            )
        )
    for lat_key, label in (
        ("latency", "target ≤ 2×"),
        ("latency_low", "reported"),
        ("latency_host", "reported"),
    ):
        lat, relay = res.get(lat_key, {}), res.get(f"relay_{lat_key}", {})
        if not lat or "error" in lat:
            continue
        vp, rp = _p99(lat), _p99(relay)
        r = vp / rp if vp and rp else None
        procs = lat.get("processes", 1)
        rows.append(
            (
                f"2. Signal → revocation p99 at {lat.get('offered_rate', 0):,}/s"
                + (f", {procs} worker processes (c′)" if procs > 1 else ""),
                "—" if vp is None else f"{vp} ms",
                "relay p99 —" if rp is None else f"relay p99 {rp} ms",
                _ratio(vp, rp),
                "≤ 2×" if label != "reported" else "reported",
                _verdict(None if r is None else r <= 2.0) if label != "reported" else "—",
            )
        )
    m = res.get("memory", {})
    if m and "rss_at_1m_subjects" in m:
        loaded = m.get("subjects", {}).get("count", 0)
        how = f"extrapolated from {loaded:,}" if m.get("rss_at_1m_extrapolated") else "measured"
        rss = m["rss_at_1m_subjects"]
        rows.append(
            (
                "3. Memory: RSS with 1M subjects' signal state, loaded live (g)",
                f"{rss / 2**20:,.0f} MiB ({how})",
                "1 GiB",
                f"{rss / memory.TARGET_RSS_BYTES:.2f}×",
                "≤ 1.00×",
                _verdict(rss <= memory.TARGET_RSS_BYTES),
            )
        )
    r = res.get("restore", {})
    if r and "rss" in r and r.get("subjects", 0) >= restore.FULL_STATE_SUBJECTS:
        rss = r["rss"]["VmRSS"]
        rows.append(
            (
                f"3. Memory: RSS of the restored worker, {r['subjects']:,} subjects (h)",
                f"{rss / 2**20:,.0f} MiB",
                "1 GiB",
                f"{rss / memory.TARGET_RSS_BYTES:.2f}×",
                "≤ 1.00×",
                _verdict(rss <= memory.TARGET_RSS_BYTES),
            )
        )
    if r and r.get("projected_1m_s") is not None:
        proj = r["projected_1m_s"]
        measured = r.get("subjects", 0) >= restore.FULL_STATE_SUBJECTS
        rows.append(
            (
                "4. Restore of 1M subjects, empty data dir → `/healthz` 200",
                f"{proj} s ({'measured' if measured else 'projected'}; "
                f"{r.get('cpu_s_to_healthy')} CPU s)",
                f"{restore.TARGET_SECONDS:.0f} s",
                f"{proj / restore.TARGET_SECONDS:.2f}×",
                "≤ 1.00×",
                _verdict(proj <= restore.TARGET_SECONDS),
            )
        )
    lines = [
        "",
        "**Issue 10 goals in this run** (every baseline measured in this run, on this broker):",
        "",
        "| goal | Vigil | baseline | ratio | target | verdict |",
        "|---|---|---|---:|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    for name, key in (("(g) memory", "memory"), ("(h) restore", "restore")):
        if "error" in res.get(key, {}):
            lines.append(f"\n{name} did not complete: `{res[key]['error']}`")
    lat = res.get("latency", {})
    if mix_rate or lat:
        lines += [
            "",
            f"Older absolute targets (≥ {TARGET_RATE:,} signals/s, p99 ≤ {TARGET_P99_MS} ms at 2k/s):",
        ]
    if mix_rate:
        lines.append(
            f"- Throughput: {_n(mix_rate)} signals/s = {mix_rate / TARGET_RATE:.2f}× the 20k target "
            f"→ {_verdict(mix_rate >= TARGET_RATE)}."
        )
    if lat and "error" not in lat:
        p99 = _p99(lat)
        ok = (
            p99 is not None
            and p99 <= TARGET_P99_MS
            and lat["achieved_send_rate"] >= 0.95 * lat["offered_rate"]
        )
        lines.append(
            f"- Latency: signal → revocation p99 {p99} ms at {lat['achieved_send_rate']:,.0f}/s → {_verdict(ok)}."
        )
        cross = lat["revocation"].get("cross_subject")
        if cross is not None:
            same = lat["revocation"].get("same_subject", {})
            lines.append(
                f"- Cross-subject (a delegating user's signal → the agent's revocation, "
                f"docs/delegation.md): p50 {cross.get('p50_ms')} ms, p99 {cross.get('p99_ms')} ms "
                f"beside same-subject p50 {same.get('p50_ms')} ms, p99 {same.get('p99_ms')} ms "
                "(both are in the p99 above)."
            )
    return lines


def ssf_lines(r: dict[str, Any]) -> list[str]:
    """(f) Shared Signals (bench/ssf.py): SETs accepted per second, SET -> revocation latency."""
    if not r:
        return []
    lat = r.get("revocation_latency_ms", {})
    return [
        "",
        f"(f) Shared Signals, one worker: {_n(r.get('push_accepted_per_s'))} SETs/s accepted "
        f"(ES256 verified, POSTed to `/ssf/push`, {r.get('concurrency')} in flight, "
        f"{_n(r.get('sets_pushed'))} SETs, {r.get('push_non_202')} not 202); "
        f"{_n(r.get('verify_map_per_s'))} SETs/s verified and mapped in process; "
        f"SET received → revocation p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms "
        f"(max {lat.get('max')} ms, {lat.get('samples')} SETs one at a time).",
    ]


def _latency_table(lat: dict[str, Any]) -> list[str]:
    rv, dc = lat["revocation"], lat["decision"]
    k = lat["signals_by_kind"]
    lines = [
        "",
        ("(c′)" if lat.get("processes", 1) > 1 else "(c)")
        + (
            f" {lat['processes']} worker processes (`--processes`)"
            if lat.get("processes", 1) > 1
            else ""
        )
        + f" Latency at {lat['offered_rate']:,} signals/s offered for {lat['seconds']} s "
        f"(achieved {lat['achieved_send_rate']:,.0f}/s, {lat['signals_sent']:,} signals: {k['revoke']:,} "
        f"revoking, {k.get('cross', 0):,} cross-subject, {k['toggle']:,} risk/zone toggles, {k['noop']:,} no-op telemetry; generator in its own "
        "process, producer linger 2 ms; measuring consumers `fetch_max_wait_ms`=5, records decoded "
        "after the run; waited until the worker had consumed every signal"
        + (
            f"; on a fresh broker, {lat['subjects']:,} subjects × 10 grants preloaded):"
            if "subjects" in lat
            else "):"
        ),
        "",
        "| path | records | signals | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, d in (("signal → revocation", rv), ("signal → decision", dc)):
        f, p = d["first_per_signal"], d["per_record"]
        lines.append(
            f"| {label} (first per signal) | | {d['signals_with_output']:,} | {f.get('p50_ms')} | "
            f"{f.get('p90_ms')} | {f.get('p99_ms')} | {f.get('max_ms')} |"
        )
        lines.append(
            f"| {label} (every record) | {d['records']:,} | | {p.get('p50_ms')} | "
            f"{p.get('p90_ms')} | {p.get('p99_ms')} | {p.get('max_ms')} |"
        )
    for label, key in (
        ("same-subject signal → revocation", "same_subject"),
        ("cross-subject (delegation) signal → revocation", "cross_subject"),
    ):
        f = rv.get(key)
        if f is not None and "cross_subject" in rv:
            lines.append(
                f"| {label} (first per signal) | | | {f.get('p50_ms')} | {f.get('p90_ms')} | "
                f"{f.get('p99_ms')} | {f.get('max_ms')} |"
            )
    lines.append(
        f"\nRevoking signals without a revocation seen: {rv.get('revoking_signals_without_revocation')}."
    )
    if "cross_subject" in rv:
        lines.append(
            f"Cross-subject: {k.get('cross', 0):,} signals disabled the account of a user an agent "
            "acts for (the agent's grant, on the agent's partition, is revoked through "
            "`vigil.subscriptions`, docs/delegation.md); without a revocation seen: "
            f"{rv.get('cross_signals_without_revocation')}."
        )
    if lat.get("fetch_trace"):
        lines.append(
            f"\nWorker fetch trace (`VIGIL_FETCH_TRACE`): {fmt_trace(lat['fetch_trace'])}."
        )
    return lines


def _per_host_lines(ph: dict[str, Any], quix_rate: float | None) -> list[str]:
    """(b′) one process vs one per core, same mix and state size."""
    if not ph:
        return []
    cores = ph["cores"]
    one = ph.get("1", {})
    lines = [
        "",
        f"(b′) Per host (`vigil worker --processes N`, one consumer group; {cores} cores; the broker "
        "and the load generator share them):",
        "",
        "| processes | subjects | mix signals/s (drain-only) | decisions/s | revocations | vs 1 process | vs Quix |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, d in sorted(((k, v) for k, v in ph.items() if k != "cores"), key=lambda kv: int(kv[0])):
        rate = headline(d)
        lines.append(
            f"| {n} | {_n(d.get('subjects'))} | {_n(rate)} | {_n(headline(d, 'decisions_rate'))} | "
            f"{_n(d.get('revocations_total'))} | {_ratio(rate, headline(one))} | {_ratio(rate, quix_rate)} |"
        )
    lines.append(
        "\nBoth drain the same mix over the same state: their revocation counts must be equal."
    )
    return lines


def _relay_lines(lat: dict[str, Any], relay: dict[str, Any]) -> list[str]:
    """The relay floor at the same offered rate, the ratio, and who took how much CPU."""
    f = relay["revocation"]["first_per_signal"]
    vigil_p99 = lat.get("revocation", {}).get("first_per_signal", {}).get("p99_ms") if lat else None
    cpu, rcpu = lat.get("cpu", {}) if lat else {}, relay.get("cpu", {})
    workers = [v for k, v in cpu.items() if k.startswith("worker") and k.endswith("_core_share")]
    worker_share = f"{sum(workers):.3f}" if workers else "—"
    return [
        "",
        f"Minimal aiokafka relay (`bench/relay.py`: group consumer → `orjson.loads` → producer, "
        f"the worker's fetch and producer settings, own process) at {relay['offered_rate']:,}/s "
        f"offered (achieved {relay['achieved_send_rate']:,.0f}/s, {relay['signals_sent']:,} "
        f"signals, every one relayed): signal → output p50 {f.get('p50_ms')} ms, p90 "
        f"{f.get('p90_ms')} ms, p99 **{f.get('p99_ms')} ms**, max {f.get('max_ms')} ms. "
        f"**Vigil revocation p99 / relay p99 = {_ratio(vigil_p99, f.get('p99_ms'))}**.",
        "",
        f"CPU during the runs (share of one core; the machine has {os.cpu_count()}): load "
        f"generator {cpu.get('generator_core_share', '—')} (Vigil run) / "
        f"{rcpu.get('generator_core_share', '—')} (relay run), Vigil worker "
        f"{worker_share}"
        + (f" ({len(workers)} processes)" if len(workers) > 1 else "")
        + f", relay {rcpu.get('relay_core_share', '—')}.",
    ]


def write_docs(path: Path, text: str) -> None:
    """Replace the text between the markers (append the section if they are missing)."""
    block = f"{START}\n{text}\n{END}"
    doc = path.read_text() if path.exists() else "# Performance\n"
    if START in doc and END in doc:
        doc = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    path.write_text(doc)
