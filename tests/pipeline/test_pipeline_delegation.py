"""Delegation end to end on the embedded broker: a real worker, the subscriptions topic on
the broker, members and holders checked to sit on different partitions (and, for comparison,
on one). Policies: tests/delegation/policies (the test-only ``mailbox`` policy)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.quirks import end_offsets
from streams.state.replica import partition_of
from tests.delegation.cluster import POLICIES, issued, signal
from tests.pipeline.worker_harness import PARTITIONS, Worker

LATER = "2026-11-29T10:30:00Z"


def placed(bases: list[str], partitions: list[int]) -> list[str]:
    """One subject key per base, ``<base>-<uuid>``, on the partition given for it."""
    out = []
    for base, wanted in zip(bases, partitions, strict=True):
        while True:
            key = f"{base}-{uuid.uuid4().hex[:6]}"
            if partition_of(key.encode(), PARTITIONS) == wanted:
                out.append(key)
                break
    return out


async def settle(worker: Worker) -> None:
    """Wait until the worker applied every input record, including the subscription records it
    wrote itself while applying them (until that topic stops growing)."""
    tps = [TopicPartition(worker.topics["subscriptions"], p) for p in range(PARTITIONS)]
    last: dict[TopicPartition, int] | None = None
    while True:
        await worker.wait_processed()
        consumer = AIOKafkaConsumer(bootstrap_servers=worker.bootstrap)
        await consumer.start()
        try:
            ends = await end_offsets(consumer, tps)
        finally:
            await consumer.stop()
        if ends == last:
            return
        last = ends


async def revoked(worker: Worker) -> dict[str, dict[str, Any]]:
    return {r["grant_id"]: r for r in await worker.read("revocations")}


@pytest.fixture
async def worker(start_worker: Callable[..., Worker]) -> Worker:
    w = start_worker()
    w.policies = POLICIES
    w.extra_env["VIGIL_OUTPUT_FORMAT"] = "json"
    await w.start()
    return w


@pytest.mark.parametrize("layout", ["spread", "one-partition"])
async def test_a_users_credential_change_revokes_only_the_agents_grants_for_that_user(
    worker: Worker, layout: str
) -> None:
    parts = [0, 0, 1] if layout == "spread" else [1, 1, 1]
    alice, bob, bot = placed(["user:alice", "user:bob", "agent:mail-bot"], parts)
    await worker.produce(
        "grants", [issued("for-alice", bot, [alice]), issued("for-bob", bot, [bob])]
    )
    await settle(worker)
    assert await revoked(worker) == {}
    await worker.produce(
        "identity",
        [signal("cc-1", alice, "credential-change", LATER, credential_type="password")],
    )
    await settle(worker)
    got = await revoked(worker)
    assert list(got) == ["for-alice"]
    cause = got["for-alice"]["cause"]
    assert cause["root_cause"] == "cc-1"
    assert cause["path"] == [alice, bot]
    assert got["for-alice"]["rule"] == "deny-delegator-credential-changed"


@pytest.mark.parametrize("layout", ["spread", "one-partition"])
async def test_a_three_level_chain_cascades_from_the_root(worker: Worker, layout: str) -> None:
    parts = [0, 1, 0, 1] if layout == "spread" else [0, 0, 0, 0]
    alice, bot, helper, sub = placed(
        ["user:alice", "agent:mail-bot", "agent:helper", "agent:sub"], parts
    )
    for grant in (
        issued("d", alice, roles=["user"]),
        issued("g1", bot, [alice], parent="d"),
        issued("g2", helper, [alice, bot], parent="g1"),
        issued("g3", sub, [alice, bot, helper], parent="g2"),
    ):
        await worker.produce("grants", [grant])
        await settle(worker)
    assert await revoked(worker) == {}
    await worker.produce(
        "risk", [signal("r-1", alice, "risk-level-change", LATER, current_level="HIGH")]
    )
    await settle(worker)
    got = await revoked(worker)
    assert sorted(got) == ["d", "g1", "g2", "g3"]
    assert got["d"]["cause"]["event_id"] == "r-1"
    assert got["g3"]["cause"] == {
        "kind": "cascade",
        "event_id": "r-1",
        "root_cause": "r-1",
        "path": ["d", "g1", "g2", "g3"],
    }


async def test_an_agents_own_risk_change_affects_only_its_own_grants(worker: Worker) -> None:
    alice, bot, other = placed(["user:alice", "agent:mail-bot", "agent:other"], [0, 1, 0])
    await worker.produce(
        "grants",
        [
            issued("alice-own", alice, roles=["user"]),
            issued("bot-for-alice", bot, [alice]),
            issued("other-for-alice", other, [alice]),
        ],
    )
    await settle(worker)
    await worker.produce(
        "risk", [signal("r-bot", bot, "risk-level-change", LATER, current_level="HIGH")]
    )
    await settle(worker)
    assert list(await revoked(worker)) == ["bot-for-alice"]


async def test_a_device_going_non_compliant_revokes_the_sessions_of_every_user_on_it(
    start_worker: Callable[..., Worker],
) -> None:
    """Project policies (documents: write needs a compliant device). One signal whose subject
    is the device reaches the write grants of both users on it, on both partitions."""
    worker = start_worker()
    worker.extra_env["VIGIL_OUTPUT_FORMAT"] = "json"
    await worker.start()
    alice, bob, device = placed(["user:alice", "user:bob", "device:D"], [0, 1, 0])
    d = device.split(":", 1)[1]
    await worker.produce(
        "device",
        [
            signal(
                f"ok-{u}",
                u,
                "device-compliance-change",
                "2026-11-29T08:00:00Z",
                device_id=d,
                current_status="compliant",
            )
            for u in (alice, bob)
        ],
    )
    await settle(worker)
    grants = []
    for user in (alice, bob):
        kind, ident = user.split(":", 1)
        grants.append(
            {
                "op": "issued",
                "grant_id": f"g-{ident}",
                "principal": {"id": ident, "type": kind, "roles": ["employee"], "attr": {}},
                "resource": {"kind": "document", "id": "doc-1", "attr": {"owner": "someone"}},
                "actions": ["read", "write"],
                "session_id": f"s-{ident}",
                "device_id": d,
                "issued_at": "2026-11-29T09:00:00Z",
                "expires_at": "2099-01-01T00:00:00Z",
            }
        )
    await worker.produce("grants", grants)
    await settle(worker)
    assert await revoked(worker) == {}
    await worker.produce(
        "device",
        [
            signal(
                "nc-1",
                device,
                "device-compliance-change",
                LATER,
                device_id=d,
                current_status="not-compliant",
            )
        ],
    )
    await settle(worker)
    got = await revoked(worker)
    assert sorted(got) == sorted(g["grant_id"] for g in grants)
    for rev in got.values():
        assert rev["rule"] == "write-needs-compliant-device"
        assert rev["cause"]["event_id"] == "nc-1"
        assert rev["session_id"] == f"s-{rev['subject'].split(':', 1)[1]}"
