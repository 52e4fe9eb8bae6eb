"""`vigil inventory --grants` against a real worker on the embedded broker: the grants, signals
and checks it processed reach the inventory through the state changelog and the decisions topic.

The worker runs a permissive bundle (so that grants the project's policies would refuse stay
active); the inventory judges them against the project's `policies/`, the way an operator checks
a candidate bundle against what is live."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.pipeline.worker_harness import ROOT, Worker

T0 = "2026-11-29T09:00:00Z"

PERMISSIVE = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: "{kind}"
  version: default
  rules:
    - actions: ["*"]
      roles: ["*"]
      effect: EFFECT_ALLOW
"""


def grant(
    gid: str, subject: str, kind: str, actions: list[str], chain: list[str]
) -> dict[str, Any]:
    kind_of, _, ident = subject.partition(":")
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": ident, "type": kind_of, "roles": ["agent"], "attr": {}},
        "resource": {"kind": kind, "id": f"{kind}-1", "attr": {}},
        "actions": actions,
        "issued_at": T0,
        "expires_at": "2099-01-01T00:00:00Z",
        "on_behalf_of": chain,
    }


def signal(eid: str, user: str, kind: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": kind,
        "subject": {"type": "user", "id": user},
        "source": "test",
        "event_time": "2026-11-29T08:00:00Z",
        "attributes": attributes,
    }


def check(worker: Worker, kind: str, action: str) -> None:
    body = {
        "requestId": "inv-1",
        "principal": {"id": "someone", "roles": ["employee"]},
        "resources": [{"resource": {"kind": kind, "id": "x"}, "actions": [action]}],
    }
    request = urllib.request.Request(
        f"{worker.api_url}/api/check/resources",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200


async def test_inventory_reads_grants_checks_and_signals_from_kafka(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    bundle = tmp_path / "permissive"
    bundle.mkdir()
    for kind in ("mailbox", "document", "calendar", "contacts"):
        (bundle / f"{kind}.yaml").write_text(textwrap.dedent(PERMISSIVE).format(kind=kind))
    worker = start_worker()
    worker.policies = bundle
    await worker.start()
    user = f"u-{uuid.uuid4().hex[:6]}"
    await worker.produce(
        "risk", [signal(f"{user}-r", user, "risk-level-change", {"current_level": "LOW"})]
    )
    await worker.produce(
        "device",
        [
            signal(
                f"{user}-d",
                user,
                "device-compliance-change",
                {"device_id": "D1", "current_status": "compliant"},
            )
        ],
    )
    await worker.produce(
        "grants",
        [
            grant(f"{user}-ok", "agent:mail-bot", "mailbox", ["read"], [f"user:{user}"]),
            grant(
                f"{user}-deep",
                "agent:digest-bot",
                "mailbox",
                ["read"],
                [f"user:{user}", "agent:mail-bot", "agent:summary-bot"],
            ),
            grant(f"{user}-arch", "agent:mail-bot", "document", ["read", "archive"], []),
            grant(f"{user}-cal", "agent:mail-bot", "calendar", ["read"], []),
        ],
    )
    await worker.wait_processed()
    await asyncio.to_thread(check, worker, "contacts", "list")

    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streams.cli", "inventory", "--grants", "-o", "json"],
        env=worker.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    inv = json.loads(proc.stdout)
    assert inv["live"] is True
    # this worker's topics hold exactly what the test sent: 4 grants, 1 user's signals, 1 check
    assert inv["live_counts"] == {"grants": 4, "subjects": 1, "checks": 1}
    gaps = {(g["kind"], g["subject"]): g["detail"] for g in inv["gaps"]}
    assert gaps[("delegation-too-deep", f"grant {user}-deep")].startswith(
        "depth 3 > 2 allowed for mailbox:"
    )
    assert ("delegation-too-deep", f"grant {user}-ok") not in gaps
    assert f"grant {user}-arch" in gaps[("no-policy", "document:archive")]
    assert gaps[("no-policy", "calendar:read")].startswith("no resource policy for kind 'calendar'")
    assert gaps[("no-policy", "contacts:list")].endswith("seen in 1 check(s)")
    assert ("no-policy", "document:read") not in gaps and ("no-policy", "mailbox:read") not in gaps
    never = {subject for kind, subject in gaps if kind == "signal-never-sent"}
    assert "signals.network.zone" in never and "signals.session.revoked" in never
    assert not never & {"signals.risk.level", "signals.device.compliant"}
