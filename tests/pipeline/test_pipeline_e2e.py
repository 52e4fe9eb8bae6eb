"""The pipeline end to end on the real broker: a real worker process, real RocksDB, the project's
policies and Avro outputs. Subjects are unique per test (uuid), topics unique per worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.pipeline.worker_harness import Worker

T0 = "2026-11-29T09:00:00Z"


def grant(
    gid: str, user: str, actions: list[str], device: str, session: str = "s1"
) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": user, "type": "user", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": f"doc-{gid}", "attr": {"owner": "someone"}},
        "actions": actions,
        "session_id": session,
        "device_id": device,
        "issued_at": T0,
        "expires_at": "2099-01-01T00:00:00Z",
    }


def device_signal(eid: str, user: str, device: str, status: str, at: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "device-compliance-change",
        "subject": {"type": "user", "id": user},
        "source": "mdm",
        "event_time": at,
        "attributes": {"device_id": device, "current_status": status},
    }


async def setup_user(worker: Worker, user: str) -> None:
    """Devices D1 and D2 compliant, then three grants: g1 (read+write on D1), g2 (read on D1),
    g3 (read+write on D2)."""
    await worker.produce(
        "device",
        [
            device_signal(f"{user}-c1", user, "D1", "compliant", "2026-11-29T08:00:00Z"),
            device_signal(f"{user}-c2", user, "D2", "compliant", "2026-11-29T08:00:00Z"),
        ],
    )
    await worker.wait_processed()
    await worker.produce(
        "grants",
        [
            grant(f"{user}-g1", user, ["read", "write"], "D1"),
            grant(f"{user}-g2", user, ["read"], "D1"),
            grant(f"{user}-g3", user, ["read", "write"], "D2"),
        ],
    )
    await worker.wait_processed()


def of(records: list[dict[str, Any]], user: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("subject") == f"user:{user}"]


async def test_device_non_compliance_revokes_exactly_the_bound_grants_that_need_it(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    await worker.start()
    user = f"alice-{uuid.uuid4().hex[:6]}"
    await setup_user(worker, user)
    issued = of(await worker.read("decisions"), user)
    assert sorted(d["grant_id"] for d in issued) == [f"{user}-g1", f"{user}-g2", f"{user}-g3"]
    assert all(d["effect"] == "EFFECT_ALLOW" for d in issued)
    assert all(d["cause"]["kind"] == "grant-issued" for d in issued)

    await worker.produce(
        "device", [device_signal("e-bad", user, "D1", "not-compliant", "2026-11-29T11:00:00Z")]
    )
    await worker.wait_processed()

    revocations = of(await worker.read("revocations"), user)
    assert [r["grant_id"] for r in revocations] == [f"{user}-g1"]
    rev = revocations[0]
    assert rev["cause"] == {
        "kind": "signal",
        "event_id": "e-bad",
        "signal_type": "device-compliance-change",
    }
    assert rev["denied_actions"] == ["write"]
    assert rev["rule"] == "write-needs-compliant-device"
    assert rev["device_id"] == "D1"

    by_signal = [
        d for d in of(await worker.read("decisions"), user) if d["cause"]["event_id"] == "e-bad"
    ]
    # Both grants bound to D1 were re-evaluated and cite the signal; the D2 grant was not touched.
    assert sorted(d["grant_id"] for d in by_signal) == [f"{user}-g1", f"{user}-g2"]
    effects = {d["grant_id"]: d["effect"] for d in by_signal}
    assert effects == {f"{user}-g1": "EFFECT_DENY", f"{user}-g2": "EFFECT_ALLOW"}
    denied = next(d for d in by_signal if d["grant_id"] == f"{user}-g1")
    assert denied["decision_id"] == rev["decision_id"]
    # The record holds what is needed to replay it: the effective request with live signals.
    signals = denied["request"]["principal"]["attr"]["signals"]
    assert signals["device"] == {"id": "D1", "compliant": False, "status": "not-compliant"}
    assert denied["policy_digest"].startswith("sha256:")
    assert denied["request"]["actions"] == ["read", "write"]


async def test_older_event_duplicate_and_bad_input_change_nothing(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    await worker.start()
    user = f"bob-{uuid.uuid4().hex[:6]}"
    await setup_user(worker, user)
    before = len(of(await worker.read("decisions"), user))

    # An event older than the current device state (08:00 compliant) is recorded, changes nothing.
    await worker.produce(
        "device", [device_signal("e-old", user, "D1", "not-compliant", "2026-11-29T07:00:00Z")]
    )
    # Malformed input of every kind goes to the dead-letter topic; the worker keeps going.
    await worker.produce_raw("device", f"user:{user}".encode(), b"\x00\x01not avro or json")
    await worker.produce_raw("device", f"user:{user}".encode(), b'{"event_id": "x"}')
    unknown = device_signal("e-unk", user, "D1", "compliant", "2026-11-29T12:00:00Z")
    unknown["type"] = "weather-change"
    await worker.produce("device", [unknown])
    await worker.wait_processed()
    assert len(of(await worker.read("decisions"), user)) == before
    assert of(await worker.read("revocations"), user) == []

    dead = [
        d
        for d in await worker.read("deadletter")
        if d["key"] in (f"user:{user}", f"user:{user}".encode())
    ]
    assert len(dead) == 3
    assert {d["error"] for d in dead} == {"decode", "validation"}
    reasons = " | ".join(d["reason"] for d in dead)
    assert "weather-change" in reasons and "subject" in reasons
    originals = {
        bytes(d["value"]) if isinstance(d["value"], bytes | bytearray) else d["value"] for d in dead
    }
    assert b"\x00\x01not avro or json" in originals
    assert all(d["topic"] == worker.topics["device"] and d["offset"] >= 0 for d in dead)

    # A newer event, sent twice (duplicate event_id), revokes once.
    bad = device_signal("e-new", user, "D1", "not-compliant", "2026-11-29T10:00:00Z")
    await worker.produce("device", [bad, bad])
    await worker.wait_processed()
    await worker.produce("device", [bad])  # and once more, in a later batch
    await worker.wait_processed()
    revocations = of(await worker.read("revocations"), user)
    assert [r["grant_id"] for r in revocations] == [f"{user}-g1"]
    per_grant = Counter(
        d["grant_id"]
        for d in of(await worker.read("decisions"), user)
        if d["cause"]["event_id"] == "e-new"
    )
    assert per_grant == Counter({f"{user}-g1": 1, f"{user}-g2": 1})


async def test_a_grant_expires_without_any_event_for_its_subject(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    await worker.start()
    user = f"exp-{uuid.uuid4().hex[:6]}"
    expiring = grant(f"{user}-g", user, ["read"], "D1")
    expiring["expires_at"] = int(time.time() * 1000) + 2000
    await worker.produce("grants", [expiring])
    await worker.wait_processed()
    assert worker.metric("vigil_active_grants") >= 1
    deadline = time.monotonic() + 30
    while worker.metric("vigil_grants_expired_total") < 1:
        assert time.monotonic() < deadline, worker.log()
        await asyncio.sleep(0.2)
    # The grant is gone: a signal that would revoke it yields no decision for it.
    await worker.produce(
        "risk",
        [
            {
                "event_id": f"{user}-high",
                "type": "risk-level-change",
                "subject": {"type": "user", "id": user},
                "source": "ueba",
                "event_time": "2026-11-29T12:00:00Z",
                "attributes": {"current_level": "HIGH"},
            }
        ],
    )
    await worker.wait_processed()
    assert [
        d for d in of(await worker.read("decisions"), user) if d["cause"]["kind"] == "signal"
    ] == []
    # Its only revocation is the expiry's (docs/concepts.md, "Grants").
    assert [r["cause"]["kind"] for r in of(await worker.read("revocations"), user)] == ["expiry"]
