"""Crash and recovery on the real broker: kill -9 loses no revocation (counted as records, not
as ids: ids are a hash of the grant id, so distinct ids could never show a loss or a stray
duplicate), and a worker with an empty
data dir rebuilds subject state from the changelog (read to the true end despite Tansu's short
ListOffsets, see streams.kafka.quirks)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.pipeline.test_pipeline_e2e import device_signal, grant
from tests.pipeline.worker_harness import Worker

USERS = 150


async def seed(worker: Worker, prefix: str) -> list[str]:
    users = [f"{prefix}-{i}" for i in range(USERS)]
    await worker.produce(
        "device",
        [device_signal(f"{u}-ok", u, "D1", "compliant", "2026-11-29T08:00:00Z") for u in users],
    )
    await worker.produce("grants", [grant(f"{u}-g1", u, ["read", "write"], "D1") for u in users])
    await worker.produce("grants", [grant(f"{u}-g2", u, ["read"], "D1") for u in users])
    await worker.wait_processed(timeout=60)
    return users


async def test_kill_9_and_restart_loses_no_revocation(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker()
    await worker.start()
    users = await seed(worker, "k9")
    bad = [
        device_signal(f"{u}-bad", u, "D1", "not-compliant", "2026-11-29T11:00:00Z") for u in users
    ]
    # A backlog with telemetry between the revoking signals, so the worker is busy for a while;
    # it is killed as soon as the first revocation is out, i.e. mid-stream (seen: 62 of 75).
    backlog = []
    for i, signal in enumerate(bad[: USERS // 2]):
        u = users[i]
        backlog.append(signal)
        backlog += [
            device_signal(f"{u}-tick{k}", u, "D2", "compliant", f"2026-11-29T10:{k:02d}:00Z")
            for k in range(20)
        ]
    await worker.produce("device", backlog)
    await worker.wait_for_records("revocations", 1)
    worker.kill9()
    at_kill = len(await worker.read("revocations"))  # the only effects a restart may repeat
    await worker.produce("device", bad[USERS // 2 :])

    restarted = start_worker(worker.data_dir, like=worker)
    await restarted.start()
    await restarted.wait_processed(timeout=60)

    revocations = await restarted.read("revocations")
    records = defaultdict(list)
    for rev in revocations:
        records[rev["grant_id"]].append(rev)
    # Nothing lost: every grant that needed revoking has a revocation record, no other grant has.
    assert set(records) == {f"{u}-g1" for u in users}
    # Signals sent after the crash were handled by the restarted worker alone: one record each.
    assert [len(records[f"{u}-g1"]) for u in users[USERS // 2 :]] == [1] * (USERS - USERS // 2)
    # At-least-once: only a revocation already out at the kill can come out once more, ...
    assert len(revocations) - len(records) <= at_kill
    assert all(len(recs) <= 2 for recs in records.values())
    # ... and a repeat is the same revocation (same id, decision, cause, rule), not a new one.
    for recs in records.values():
        assert all(_without_clock(r) == _without_clock(recs[0]) for r in recs)


def _without_clock(revocation: dict[str, Any]) -> dict[str, Any]:
    """A revocation without ``revoked_at`` (the wall clock of whichever worker produced it)."""
    return {k: v for k, v in revocation.items() if k != "revoked_at"}


async def test_empty_data_dir_restores_state_from_changelog(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    first = start_worker()
    await first.start()
    users = await seed(first, "cl")
    # Half of the users lose device compliance before the handover.
    await first.produce(
        "device",
        [
            device_signal(f"{u}-bad", u, "D1", "not-compliant", "2026-11-29T11:00:00Z")
            for u in users[: USERS // 2]
        ],
    )
    await first.wait_processed()
    first.stop()

    second = start_worker(tmp_path / "fresh", like=first)  # nothing on disk
    await second.start()
    # The state gauges count what was restored (not what this process added since it started):
    # 2 grants per user, minus the 75 read+write grants revoked by non-compliance. They are
    # counted after the worker is ready (streams.state.counting): wait for the count.
    restored = (2 * USERS - USERS // 2, USERS)
    for _ in range(300):
        gauges = (second.metric("vigil_active_grants"), second.metric("vigil_state_subjects"))
        if gauges == restored:
            break
        await asyncio.sleep(0.1)
    assert gauges == restored
    # Evidence that state came back: (1) an older event changes nothing for the healthy half;
    # (2) a write grant on a device known to be non-compliant is revoked at issuance;
    # (3) the grants still active for the healthy half are revoked by a new signal.
    before = len(await second.read("decisions"))
    await second.produce(
        "device",
        [
            device_signal(f"{u}-old", u, "D1", "not-compliant", "2026-11-29T07:00:00Z")
            for u in users[USERS // 2 :]
        ],
    )
    await second.wait_processed()
    assert len(await second.read("decisions")) == before

    await second.produce(
        "grants", [grant(f"{u}-g9", u, ["write"], "D1") for u in users[: USERS // 2]]
    )
    await second.produce(
        "device",
        [
            device_signal(f"{u}-bad", u, "D1", "not-compliant", "2026-11-29T12:00:00Z")
            for u in users[USERS // 2 :]
        ],
    )
    await second.wait_processed(timeout=60)
    revoked = {r["grant_id"]: r for r in await second.read("revocations")}
    for u in users[: USERS // 2]:
        assert revoked[f"{u}-g9"]["cause"]["kind"] == "grant-issued"
    for u in users[USERS // 2 :]:
        assert revoked[f"{u}-g1"]["cause"]["event_id"] == f"{u}-bad"
    assert len(revoked) == USERS + USERS // 2


async def test_positions_restored_from_the_state_are_committed_to_the_group(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    """The group's committed offsets follow the state's positions even when a partition has
    nothing new to apply: here a second group takes over a data dir whose state is ahead of
    everything that group ever committed (as after a kill -9 before the background commit)."""
    first = start_worker()
    await first.start()
    await seed(first, "pc")
    first.stop()

    second = start_worker(first.data_dir, like=first)
    second.group = f"{first.group}-other"  # nothing committed: only the state knows positions
    await second.start()
    await second.wait_processed(timeout=60)  # committed offsets reach the ends, no new records
