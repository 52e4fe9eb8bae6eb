"""Signal → revocation and signal → decision latency at a paced offered load.

The load generator (``bench.loadgen``) is its own process: it records the wall-clock send time
of every signal's ``event_id``. Here, assigned consumers (no group, ``fetch_max_wait_ms`` 5) on
the output topics only stamp each record with its receive time and keep its bytes; decoding and
matching (receive time − send time of ``cause.event_id``) happen after the run, so the
measuring side does no per-record work while it measures. The same run measures a minimal
aiokafka relay (``bench.relay``) as the floor of what the broker and client allow.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.events import World
from streams.codecs import decode_any
from streams.kafka.security import PLAINTEXT, KafkaSecurity

Decode = Callable[[bytes, Any], dict[str, Any]]
_TICKS = os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds (nearest-rank)."""
    if not values:
        return {}
    v = sorted(values)

    def rank(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 1)

    return {"p50_ms": rank(0.50), "p90_ms": rank(0.90), "p99_ms": rank(0.99), "max_ms": rank(1.0)}


def vigil_record(value: bytes, headers: Any) -> dict[str, Any]:
    return decode_any(value, headers)[1]


def json_record(value: bytes, headers: Any) -> dict[str, Any]:
    return dict(orjson.loads(value))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class OutputWatcher:
    """Reads one output topic from its end; keeps (receive time, value, headers) per record."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        *,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.topic = topic
        self.received: list[tuple[float, bytes, Any]] = []
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **security.client_kwargs(),
        )
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        # Tansu's ListOffsets is one batch short: old records may come back; they never match.
        await self.consumer.seek_to_end(*self.tps)
        for tp in self.tps:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        keep = self.received.append
        while True:
            data = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for messages in data.values():
                for m in messages:
                    keep((now, m.value, m.headers))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.consumer.stop()

    def match(self, sent: dict[str, float], decode: Decode) -> dict[str, Any]:
        """Latency per record and first record per cause event (after the run)."""
        latencies: list[float] = []
        first: dict[str, float] = {}
        other = 0
        for now, value, headers in self.received:
            eid = decode(value, headers).get("cause", {}).get("event_id")
            at = sent.get(eid)  # type: ignore[arg-type]
            if at is None:
                other += 1
                continue
            latencies.append(now - at)
            first.setdefault(eid, now - at)  # type: ignore[arg-type]
        return {
            "records": len(latencies),
            "signals_with_output": len(first),
            "unmatched_records": other,
            "per_record": percentiles(latencies),
            "first_per_signal": percentiles(list(first.values())),
            "_first": first,
        }


async def paced_run(
    bootstrap: str,
    topics: dict[str, str],
    world: World,
    *,
    rate: int,
    seconds: float,
    noop_subjects: range,
    fresh_subjects: range,
    revoke_share: float,
    toggle_share: float,
    tmp: Path,
    drained: Callable[[int], Awaitable[Any]] | None = None,
    cross_subjects: range = range(0),
    cross_share: float = 0.0,
    settle: float = 1.0,
    decode: Decode = vigil_record,
    server_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Offer ``rate`` signals/s for ``seconds`` from the generator process: ``revoke_share`` of
    them turn a fresh subject's device not-compliant (→ its read+write grants are revoked),
    ``toggle_share`` change risk or zone (→ decisions only), ``cross_share`` disable the
    account of a user an agent acts for (``cross_subjects``, loaded with ``World.delegations``:
    → the agent's grant, on the agent's partition, is revoked through the subscriptions topic),
    the rest are no-op telemetry. ``revocation.same_subject`` and
    ``revocation.cross_subject`` are the first-revocation latencies of the two revoking kinds.

    ``drained(sent)`` waits until the server has consumed every signal, so an overloaded run
    reports its real tail instead of dropping the late outputs. ``world`` is updated with what
    the generator did. CPU seconds of the generator and of ``server_pids`` over the run are
    reported as shares of one core and of the machine.
    """
    watchers = {"revocation": OutputWatcher(bootstrap, topics["revocations"], 4)}
    if topics["revocations"] != topics["decisions"]:  # a relay has one output
        watchers["decision"] = OutputWatcher(bootstrap, topics["decisions"], 4)
    for w in watchers.values():
        await w.start()
    world_path, spec_path, out_path = tmp / "world.pickle", tmp / "spec.json", tmp / "sent.json"
    world_path.write_bytes(pickle.dumps(world))
    spec = {
        "bootstrap": bootstrap,
        "topics": topics,
        "world": str(world_path),
        "out": str(out_path),
        "rate": rate,
        "seconds": seconds,
        "noop": [noop_subjects.start, noop_subjects.stop],
        "fresh": [fresh_subjects.start, fresh_subjects.stop],
        "revoke_share": revoke_share,
        "toggle_share": toggle_share,
        "cross": [cross_subjects.start, cross_subjects.stop],
        "cross_share": cross_share,
    }
    spec_path.write_bytes(orjson.dumps(spec))
    cpu0 = {name: cpu_seconds(pid) for name, pid in (server_pids or {}).items()}
    wall0 = time.perf_counter()
    try:
        gen = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen", str(spec_path)
        )
        if await gen.wait() != 0:
            raise RuntimeError(f"load generator exited with {gen.returncode}")
        wall = time.perf_counter() - wall0
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in (server_pids or {}).items()}
        gen_out = orjson.loads(out_path.read_bytes())
        sent: dict[str, float] = gen_out["sent"]
        if drained is not None:  # an overloaded worker is still working off its backlog
            await drained(len(sent))
        await asyncio.sleep(settle)
    finally:
        for w in watchers.values():
            await w.stop()
    fresh_world = pickle.loads(world_path.read_bytes())  # noqa: S301 - our own file
    for name in ("risk", "zone", "device_ok", "clock", "seq"):
        setattr(world, name, getattr(fresh_world, name))
    kinds: dict[str, str] = gen_out["kinds"]
    names = ("revoke", "cross", "toggle", "noop")
    counts = {k: sum(1 for v in kinds.values() if v == k) for k in names}
    ncpu = os.cpu_count() or 1
    gen_cpu = gen_out["cpu_s"]
    result: dict[str, Any] = {
        "offered_rate": rate,
        "achieved_send_rate": round(len(sent) / gen_out["seconds"], 1),
        "seconds": round(gen_out["seconds"], 1),
        "signals_sent": len(sent),
        "signals_by_kind": counts,
        "producer_late_ticks": gen_out["producer_late_ticks"],
        "cpu": {
            "generator_core_share": round(gen_cpu / gen_out["seconds"], 3),
            "generator_machine_share": round(gen_cpu / gen_out["seconds"] / ncpu, 3),
            **{f"{n}_core_share": round(c / wall, 3) for n, c in cpu.items()},
            "window_s": round(wall, 1),
        },
    }
    for name, w in watchers.items():
        result[name] = w.match(sent, decode)
    if "decision" not in result:
        result["decision"] = {k: v for k, v in result["revocation"].items()}
    first = result["revocation"]["_first"]
    revoking = [e for e, k in kinds.items() if k == "revoke"]
    crossing = [e for e, k in kinds.items() if k == "cross"]
    result["revocation"]["revoking_signals_without_revocation"] = sum(
        1 for e in revoking if e not in first
    )
    result["revocation"]["same_subject"] = percentiles([first[e] for e in revoking if e in first])
    if crossing:
        result["revocation"]["cross_subject"] = percentiles(
            [first[e] for e in crossing if e in first]
        )
        result["revocation"]["cross_signals_without_revocation"] = sum(
            1 for e in crossing if e not in first
        )
    for name in watchers:
        result[name].pop("_first", None)
    result["decision"].pop("_first", None)
    return result


def trace_summary(path: Path, start: float, end: float) -> dict[str, Any]:
    """Where a record's time went before and in its batch, from the worker's fetch trace
    (``VIGIL_FETCH_TRACE``) between ``start`` and ``end``: percentiles in ms."""
    if not path.exists():
        return {}
    fetches, handovers, batches = [], [], []
    for line in path.read_bytes().splitlines():
        ev = orjson.loads(line)
        t = ev.get("sent", ev.get("t", ev.get("start", 0.0)))
        if not start <= t <= end:
            continue
        {"fetch": fetches, "handover": handovers, "batch": batches}[ev["e"]].append(ev)
    fetches.sort(key=lambda e: e["sent"])
    gaps = [b["sent"] - a["received"] for a, b in zip(fetches, fetches[1:], strict=False)]
    return {
        "fetches": len(fetches),
        "fetches_with_data": sum(1 for f in fetches if f["data"]),
        "fetch_round_trip": percentiles([f["received"] - f["sent"] for f in fetches]),
        "fetch_gap": percentiles(gaps),
        "handovers": len(handovers),
        "newest_age_at_handover": percentiles([h["t"] - h["ts_max"] / 1000 for h in handovers]),
        "oldest_age_at_handover": percentiles([h["t"] - h["ts_min"] / 1000 for h in handovers]),
        "batches": len(batches),
        "records_per_batch": round(sum(b["n"] for b in batches) / len(batches), 1)
        if batches
        else 0,
        "newest_age_at_batch_start": percentiles(
            [b["start"] - b["ts_max"] / 1000 for b in batches]
        ),
        "oldest_age_at_batch_start": percentiles(
            [b["start"] - b["ts_min"] / 1000 for b in batches]
        ),
        "batch_start_to_outputs_acked": percentiles([b["sent"] - b["start"] for b in batches]),
        "batch_start_to_end": percentiles([b["end"] - b["start"] for b in batches]),
        "batches_holding_records": sum(1 for b in batches if b["held"]),
        "record_age_at_handover": percentiles(
            [a / 1000 for b in batches for a in b.get("age", ())]
        ),
        "record_handover_to_batch_start": percentiles(
            [w / 1000 for b in batches for w in b.get("wait", ())]
        ),
    }
