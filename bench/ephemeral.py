"""(i) Ephemeral workloads: state size before and after a burst of short-lived workload grants.

One ``vigil worker`` on its own topics and group (default settings: the background sweep at
``VIGIL_EXPIRY_SWEEP_RATE``). Steps, each followed by a reading of the state size:

1. baseline: healthy, owning every partition, ``plan.baseline_users`` users holding one
   long-lived grant each (so the baseline is not an empty store);
2. burst: ``plan.grants`` grants of ``plan.workloads`` workloads (``workload`` subjects named by
   SPIFFE IDs), each living ``plan.lifetime_s`` seconds, produced at once; the grant rate is the
   grants the worker applied (``vigil_grant_events_total``) divided by the time from the first
   produce to the last one applied; the reading is taken right after (``peak``);
3. after: once every burst grant expired (``vigil_grants_expired_total``) and the store's subject
   keys are back at the baseline (or ``plan.settle_timeout_s`` passed).

A reading: subject keys in the worker's RocksDB stores (``s:``/``g:`` keys, read through a
read-only RocksDB handle while the worker runs), bytes of every file under its data dir, the
changelog's records and key+value bytes (everything written, as Tansu never compacts) and its
live keys (what a compacted changelog keeps: the newest value per key, tombstones dropped), and
the worker's ``vigil_active_grants``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner
from rocksdict import AccessType, Options, Rdict

from bench.events import PARTITIONS, Out
from bench.kafka import produce_batched, producer
from bench.memory import disk_bytes
from bench.restore import changelog_size, parse_metric
from bench.worker import Worker, create_worker_topics, topic_names
from streams.processing.dryrun import read_changelog
from streams.state.store import GRANT_PREFIX, SIGNAL_PREFIX

PREFIX = "bench.eph."
GROUP = "bench-eph"


@dataclass(frozen=True, slots=True)
class EphemeralPlan:
    grants: int = 20_000
    workloads: int = 1_000
    lifetime_s: float = 30.0  # above the burst's processing time: a grant applied late is refused
    baseline_users: int = 100
    settle_timeout_s: float = 180.0


FULL = EphemeralPlan()
QUICK = EphemeralPlan(grants=5_000, workloads=100, lifetime_s=10.0, settle_timeout_s=90.0)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def spiffe_id(w: int) -> str:
    return f"spiffe://bench.example.org/ns/ns{w % 10}/sa/job-{w}"


def _grant(gid: str, principal: dict[str, Any], issued: int, expires: int) -> bytes:
    return orjson.dumps(
        {
            "op": "issued",
            "grant_id": gid,
            "principal": {**principal, "roles": ["employee"], "attr": {}},
            "resource": {"kind": "document", "id": f"doc-{gid}", "attr": {}},
            "actions": ["read"],
            "issued_at": issued,
            "expires_at": expires,
        }
    )


def _records(keyed: list[tuple[str, bytes]]) -> list[Out]:
    part = DefaultPartitioner()
    parts = list(range(PARTITIONS))
    out = []
    for key, value in keyed:
        k = key.encode()
        out.append(Out("grants", part(k, parts, parts), k, value))
    return out


def store_keys(data_dir: Path) -> int:
    """Subject keys (``s:``/``g:``) in every partition store (``<data dir>/state/p<n>``, as
    ``streams.app`` lays them out), read-only beside the worker."""
    total = 0
    for path in sorted((data_dir / "state").glob("p*")):
        try:
            db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        except Exception:  # not a RocksDB store (yet)
            continue
        try:
            for prefix in (SIGNAL_PREFIX, GRANT_PREFIX):
                for key in db.keys(from_key=prefix):
                    if not key.startswith(prefix):
                        break
                    total += 1
        finally:
            db.close()
    return total


async def reading(worker: Worker, bootstrap: str, changelog: str) -> dict[str, Any]:
    size = await changelog_size(bootstrap, changelog)
    live = await read_changelog(bootstrap, changelog)
    async with worker.session().get(f"http://127.0.0.1:{worker.port}/metrics") as resp:
        text = await resp.text()
    return {
        "store_keys": store_keys(worker.data_dir),
        "disk_bytes": disk_bytes(worker.data_dir),
        "changelog_records": size["records"],
        "changelog_bytes": size["bytes"],
        "changelog_live_keys": sum(len(list(s.items(b""))) for s in live.values()),
        "active_grants": int(parse_metric(text, "vigil_active_grants")),
        "expired_total": int(parse_metric(text, "vigil_grants_expired_total")),
        "deadletters": int(parse_metric(text, "vigil_deadletters_total")),
    }


async def run_ephemeral(
    bootstrap: str, plan: EphemeralPlan, results: dict[str, Any], tmp: Path
) -> None:
    """Part (i); see the module docstring. Fills ``results["ephemeral"]``."""
    topics = topic_names(PREFIX)
    await create_worker_topics(bootstrap, topics, PARTITIONS)
    worker = Worker(bootstrap, tmp / "eph", topics, group=GROUP)
    worker.start()
    out: dict[str, Any] = {"plan": asdict(plan)}
    results["ephemeral"] = out
    prod = producer(bootstrap)
    await prod.start()
    try:
        await worker.wait_healthy()
        now = int(time.time() * 1000)
        users = [
            (
                f"user:eph-u{u}",
                _grant(f"eph-u{u}", {"id": f"eph-u{u}", "type": "user"}, now, now + 86_400_000),
            )
            for u in range(plan.baseline_users)
        ]
        await produce_batched(prod, _records(users), topics)
        await worker.wait_for("grants", plan.baseline_users, timeout=120)
        out["baseline"] = await reading(worker, bootstrap, topics["changelog"])
        say(f"(i) baseline: {out['baseline']}")

        now = int(time.time() * 1000)
        expires = now + int(plan.lifetime_s * 1000)
        burst = []
        for i in range(plan.grants):
            w = i % plan.workloads
            principal = {"id": spiffe_id(w), "type": "workload"}
            burst.append((f"workload:{spiffe_id(w)}", _grant(f"eph-w{i}", principal, now, expires)))
        records = _records(burst)
        started = time.perf_counter()
        await produce_batched(prod, records, topics)
        target = plan.baseline_users + plan.grants
        done = await worker.wait_for("grants", target, timeout=plan.settle_timeout_s, every=0.2)
        seconds = done.t - started
        out["burst_seconds"] = round(seconds, 2)
        out["grants_per_s"] = round(plan.grants / seconds)
        out["peak"] = await reading(worker, bootstrap, topics["changelog"])
        say(f"(i) {plan.grants:,} grants applied at {out['grants_per_s']:,}/s; peak {out['peak']}")

        # a grant the worker reached after its expires_at is dead-lettered, not expired
        late = out["peak"]["deadletters"] - out["baseline"]["deadletters"]
        out["arrived_expired"] = late
        deadline = time.monotonic() + plan.settle_timeout_s
        base_expired = out["baseline"]["expired_total"]
        while True:
            now_reading = await reading(worker, bootstrap, topics["changelog"])
            expired = now_reading["expired_total"] - base_expired
            settled = now_reading["store_keys"] == out["baseline"]["store_keys"]
            if (expired >= plan.grants - late and settled) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        out["after"] = now_reading
        out["settled"] = settled
        out["seconds_to_settle_after_expiry"] = round(
            max(0.0, time.perf_counter() - started - plan.lifetime_s), 1
        )
        say(f"(i) after expiry: {out['after']}")
    finally:
        await prod.stop()
        await worker.stop()


def markdown(res: dict[str, Any]) -> list[str]:
    """The (i) lines of the results section (nothing when the part did not run)."""
    r = res.get("ephemeral")
    if not r or "after" not in r:
        return [] if not r else ["", f"(i) Ephemeral workloads: incomplete run: `{r}`"]
    p = r["plan"]
    rows = [
        ("subject keys in RocksDB (`s:`/`g:`)", "store_keys"),
        ("data dir bytes (RocksDB files)", "disk_bytes"),
        ("changelog records written (Tansu never compacts)", "changelog_records"),
        ("changelog key+value bytes written", "changelog_bytes"),
        ("changelog live keys (what compaction keeps)", "changelog_live_keys"),
        ("active grants (`vigil_active_grants`)", "active_grants"),
        ("dead letters (grants applied after their expiry)", "deadletters"),
    ]
    lines = [
        "",
        f"(i) Ephemeral workloads: {p['grants']:,} grants of {p['workloads']:,} SPIFFE-named "
        f"workloads, each living {p['lifetime_s']:g} s, over {p['baseline_users']} users with "
        f"one long-lived grant: **{r['grants_per_s']:,} grants/s** applied; state back at the "
        f"baseline: **{'yes' if r['settled'] else 'no'}** (≈{r['seconds_to_settle_after_expiry']} s "
        "after the grants' expiry).",
        "",
        "| measurement | baseline | after the burst | after expiry |",
        "|---|---:|---:|---:|",
    ]
    for label, key in rows:
        lines.append(
            f"| {label} | {_n(r['baseline'][key])} | {_n(r['peak'][key])} | {_n(r['after'][key])} |"
        )
    return lines


def _n(value: Any) -> str:
    return "—" if value is None else f"{value:,}"
