"""Time on the real broker with a real worker: a policy that reads ``now()`` revokes when its
time comes (cause ``time``), and a grant past ``expires_at`` gets a Decision and a Revocation
with cause ``expiry``, both found by the worker's background sweep with no event for the
subject."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.pipeline.worker_harness import Worker

POLICIES = {
    "timed.yaml": """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: timed
  version: default
  rules:
    - name: first-fifteen-seconds
      actions: ["read"]
      roles: ["employee"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: now() < timestamp(P.attr.grant.issued_at) + duration("15s")
""",
    "plain.yaml": """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: plain
  version: default
  rules:
    - name: employees-read
      actions: ["read"]
      roles: ["employee"]
      effect: EFFECT_ALLOW
""",
}


def grant(gid: str, user: str, kind: str, issued_at: int, **extra: Any) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": user, "type": "user", "roles": ["employee"], "attr": {}},
        "resource": {"kind": kind, "id": f"r-{gid}", "attr": {}},
        "actions": ["read"],
        "issued_at": issued_at,
        **extra,
    }


async def test_now_based_policy_revokes_in_time_and_expiry_is_published(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in POLICIES.items():
        (policies / name).write_text(text)
    worker = start_worker()
    worker.policies = policies
    worker.extra_env["VIGIL_TIME_REEVALUATION_SECONDS"] = "1"
    await worker.start()
    user = f"tim-{uuid.uuid4().hex[:6]}"
    now_ms = int(time.time() * 1000)
    await worker.produce(
        "grants",
        [
            grant(f"{user}-t", user, "timed", now_ms),
            grant(f"{user}-e", user, "plain", now_ms, expires_at=now_ms + 5000),
        ],
    )
    await worker.wait_processed()

    deadline = time.monotonic() + 90
    while True:
        revocations = {r["grant_id"]: r for r in await worker.read("revocations")}
        if len(revocations) == 2:
            break
        assert time.monotonic() < deadline, f"revocations so far: {revocations}\n{worker.log()}"
        await asyncio.sleep(1)

    assert revocations[f"{user}-t"]["cause"]["kind"] == "time"
    assert revocations[f"{user}-e"]["cause"] == {
        "kind": "expiry",
        "event_id": f"{user}-e@{now_ms + 5000}",
    }
    decisions = await worker.read("decisions")
    by_grant: dict[str, list[tuple[str, str]]] = {}
    for d in decisions:
        by_grant.setdefault(d["grant_id"], []).append((d["cause"]["kind"], d["effect"]))
    timed = by_grant[f"{user}-t"]
    assert timed[0] == ("grant-issued", "EFFECT_ALLOW")
    assert timed[-1] == ("time", "EFFECT_DENY")
    assert {c for c, _ in timed[1:-1]} <= {"time"}  # allowed time slots in between
    assert by_grant[f"{user}-e"] == [
        ("grant-issued", "EFFECT_ALLOW"),
        ("expiry", "EFFECT_DENY"),
    ]
    revoked_by_time = revocations[f"{user}-t"]["decision_id"]
    assert revoked_by_time in {d["decision_id"] for d in decisions}
    assert worker.metric("vigil_time_reevaluations_total") >= 1
