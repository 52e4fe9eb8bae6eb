"""The review's poison records against a real ``vigil worker`` on the embedded broker: each used to
make the worker exit (and the next one after it, on failover). Now each is dead-lettered with its
reason, the worker process stays the same, and the valid revoking signal after them applies."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from tests.pipeline.worker_harness import Worker


def risk(eid: str, user: str, level: str, at: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "risk-level-change",
        "subject": {"type": "user", "id": user},
        "source": "ueba",
        "event_time": at,
        "attributes": {"current_level": level},
    }


def grant(gid: str, user: str, issued_at: Any) -> dict[str, Any]:
    body = {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": user, "type": "user", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": "doc-1", "attr": {"owner": "someone"}},
        "actions": ["read"],
        "session_id": "s1",
        "device_id": "D1",
        "issued_at": issued_at,
    }
    if issued_at != 1e18:
        body["expires_at"] = "2099-01-01T00:00:00Z"
    return body


async def test_poison_records_are_dead_lettered_and_the_worker_lives_on(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    await worker.start()
    assert worker.proc is not None
    pid = worker.proc.pid
    user = f"mallory-{uuid.uuid4().hex[:6]}"

    now_ms = int(time.time() * 1000)
    # stdlib json writes the integer as is: 2**64, one past what 64 bits hold. (This subject
    # has no grants, so nothing is evaluated and the value reaches the state store.)
    await worker.produce("risk", [risk("e-overflow", user, "HIGH", 2**64)])
    await worker.produce("grants", [grant(f"{user}-g-poison", user, 1e18)])
    await worker.produce("risk", [risk("e-future", user, "HIGH", now_ms + 3600_000)])
    await worker.wait_processed()
    assert worker.proc.poll() is None and worker.proc.pid == pid, worker.log()

    await worker.produce("grants", [grant(f"{user}-g1", user, "2026-11-29T09:00:00Z")])
    await worker.produce("grants", [grant(f"{user}-g-poison2", user, 1e18)])
    await worker.produce("risk", [risk("e-valid", user, "HIGH", "2026-11-29T10:00:00Z")])
    await worker.wait_processed()

    assert worker.proc.poll() is None and worker.proc.pid == pid, worker.log()
    dead = {
        (d["topic"], d["offset"]): d
        for d in await worker.read("deadletter")
        if user.encode() in (d["key"] or b"")
    }
    names = {topic: name for name, topic in worker.topics.items()}
    found = sorted((names[d["topic"]], d["error"], d["reason"]) for d in dead.values())
    assert [(topic, error) for topic, error, _ in found] == [
        ("grants", "validation"),
        ("grants", "validation"),
        ("risk", "event-time-in-future"),
        ("risk", "validation"),
    ], found
    assert all(reason.startswith("issued_at:") for _, _, reason in found[:2])
    assert found[2][2].startswith("event-time-in-future:")
    assert found[3][2].startswith("event_time:") and "valid time range" in found[3][2]

    [rev] = [r for r in await worker.read("revocations") if r["subject"] == f"user:{user}"]
    assert rev["grant_id"] == f"{user}-g1" and rev["cause"]["event_id"] == "e-valid"
    assert worker.metric("vigil_deadletters_total") == 4
