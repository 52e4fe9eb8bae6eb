"""Signed policy bundles and the blast-radius guard on a real worker (issue 6, items 2 and 3).

* With --bundle-public-keys, unsigned, unknown-key and badly signed records are refused (metric
  with the reason, log line) and the running bundle stays; a path-like digest touches nothing on
  disk; a bundle signed by `vigil policy push --sign-key` is taken.
* A bundle that would revoke most grants is held: nothing revoked, the hold is visible in
  /healthz, the metric and `vigil policy status`; pushing the running bundle rolls back;
  `vigil policy confirm` switches and revokes. `vigil policy push --dry-run` lists the grants.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from streams.bundles.bundle import Bundle, Confirmation
from streams.bundles.publish import push_bundle
from streams.bundles.signing import generate_keypair, load_private_key, sign
from tests.pipeline.test_pipeline_e2e import grant
from tests.pipeline.test_pipeline_policy_change import (
    compliant_users_with_grants,
    stricter_copy,
    wait_for_digest,
)
from tests.pipeline.worker_harness import ROOT, Worker


def vigil(worker: Worker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=worker.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def rejected(worker: Worker, reason: str) -> float:
    """``vigil_policy_bundle_rejected_total`` for one reason (any source)."""
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vigil_policy_bundle_rejected_total{") and f'reason="{reason}"' in line
    )


async def wait_rejected(worker: Worker, reason: str, count: float = 1) -> None:
    deadline = time.monotonic() + 30
    while rejected(worker, reason) < count:
        assert time.monotonic() < deadline, f"no rejection {reason}\n{worker.log()}"
        await asyncio.sleep(0.2)


async def test_only_bundles_signed_by_a_configured_key_are_taken(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    public = generate_keypair(tmp_path / "fleet.key")
    generate_keypair(tmp_path / "intruder.key")
    worker = start_worker()
    worker.extra_env["VIGIL_BUNDLE_PUBLIC_KEYS"] = str(public)
    await worker.start()
    old = worker.health()["policy_digest"]
    stricter = Bundle.from_directory(stricter_copy(tmp_path / "stricter"))
    topic = worker.topics["bundles"]

    await push_bundle(worker.bootstrap, topic, stricter)
    await wait_rejected(worker, "unsigned")
    kid, signature = sign(load_private_key(tmp_path / "intruder.key"), stricter.signed_bytes())
    forged = Bundle(stricter.digest, stricter.files, 0, "x", None, kid, signature)
    await push_bundle(worker.bootstrap, topic, forged)
    await wait_rejected(worker, "unknown-key")
    kid, signature = sign(load_private_key(tmp_path / "fleet.key"), stricter.signed_bytes())
    tampered = Bundle(stricter.digest, stricter.files, 1, stricter.source, None, kid, signature)
    await push_bundle(worker.bootstrap, topic, tampered)  # pushed_at changed after signing
    await wait_rejected(worker, "bad-signature")

    # A record whose digest names a directory: refused before anything touches the disk.
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("do not delete")
    path_like = {"digest": str(precious), "files": stricter.files, "key_id": kid}
    await worker.produce_raw("bundles", b"bundle", orjson.dumps(path_like))
    await wait_rejected(worker, "digest")
    assert (precious / "keep.txt").read_text() == "do not delete"
    escape = {**orjson.loads(stricter.to_bytes()), "files": {"../../escaped.yaml": "x: 1\n"}}
    await worker.produce_raw("bundles", b"bundle", orjson.dumps(escape))
    await wait_rejected(worker, "path")
    assert not list(tmp_path.rglob("escaped.yaml"))
    # Confirmations must be signed too.
    await push_bundle(worker.bootstrap, topic, Confirmation(stricter.digest, 1, "intruder"))
    await wait_rejected(worker, "unsigned", 2)
    assert worker.health()["policy_digest"] == old
    assert "refused a policy bundle record" in worker.log()

    pushed = vigil(
        worker,
        "policy",
        "push",
        str(tmp_path / "stricter"),
        "--sign-key",
        str(tmp_path / "fleet.key"),
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "signed by" in pushed.stdout
    await wait_for_digest(worker, stricter.digest)


async def test_a_bundle_that_would_revoke_most_grants_is_held_until_confirmed(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker()
    await worker.start()
    old = worker.health()["policy_digest"]
    users = await compliant_users_with_grants(worker, "bg", 20, ["read", "write"], ["read"])
    stricter_dir = stricter_copy(tmp_path / "stricter")
    stricter = Bundle.from_directory(stricter_dir)

    # The dry run lists exactly the read+write grants (write now needs the corp zone).
    dry = vigil(worker, "policy", "push", str(stricter_dir), "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["active_grants"], report["would_revoke"]) == (40, 20)
    assert [(g["policy"], g["action"], g["cause"], g["grants"]) for g in report["groups"]] == [
        ("resource.document.vdefault", "write", "no matching rule", 20)
    ]
    assert report["groups"][0]["grant_ids"] == sorted(f"{u}-rw" for u in users)
    table = vigil(worker, "policy", "push", str(stricter_dir), "--dry-run")
    assert "would revoke 20 of 40 active grants" in table.stdout
    assert await worker.read("revocations") == []
    assert worker.health()["policy_digest"] == old  # the dry run published nothing

    pushed = vigil(worker, "policy", "push", str(stricter_dir))
    assert pushed.returncode == 0, pushed.stderr
    pending = await wait_pending(worker, "held")
    assert pending["digest"] == stricter.digest
    assert (pending["would_revoke"], pending["active_grants"]) == (20, 40)
    assert worker.metric("vigil_policy_bundle_held") == 1
    assert worker.metric("vigil_policy_bundle_would_revoke_grants") == 20
    assert "HELD" in worker.log()
    await worker.produce("grants", [grant(f"{users[0]}-late", users[0], ["read"], "D1")])
    await worker.wait_processed()
    assert await worker.read("revocations") == []
    assert worker.health()["policy_digest"] == old

    status = await wait_status(worker, "HELD")
    assert f"HELD {stricter.digest}: would revoke 20 of 40" in status
    assert f"newest bundle {stricter.digest} (unsigned)" in status

    # A restart keeps the bundle the worker ran (not the held one on the topic) and holds again.
    worker.stop()
    worker = start_worker(worker.data_dir, like=worker)
    await worker.start()
    assert worker.health()["policy_digest"] == old
    await wait_pending(worker, "held")
    assert await worker.read("revocations") == []

    # Roll back: pushing the running bundle drops the hold.
    back = vigil(worker, "policy", "push", str(ROOT / "policies"))
    assert back.returncode == 0, back.stderr
    await wait_pending(worker, None)
    assert worker.metric("vigil_policy_bundle_held") == 0
    assert worker.health()["policy_digest"] == old

    # Pushed again, held again; the operator confirms: the switch happens and revokes.
    pushed = vigil(worker, "policy", "push", str(stricter_dir))
    assert pushed.returncode == 0, pushed.stderr
    await wait_pending(worker, "held")
    confirmed = vigil(worker, "policy", "confirm", stricter.digest)
    assert confirmed.returncode == 0, confirmed.stderr
    await wait_for_digest(worker, stricter.digest)
    assert worker.health()["pending_bundle"] is None
    revocations = await worker.read("revocations")
    assert sorted(r["grant_id"] for r in revocations) == sorted(f"{u}-rw" for u in users)
    assert worker.metric("vigil_policy_bundle_held") == 0


async def wait_pending(worker: Worker, state: str | None, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        pending = worker.health()["pending_bundle"]
        if (pending or {}).get("state") == state or (state is None and pending is None):
            return pending
        assert time.monotonic() < deadline, f"pending {pending}\n{worker.log()}"
        await asyncio.sleep(0.2)


async def wait_status(worker: Worker, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        run = vigil(worker, "policy", "status")
        assert run.returncode == 0, run.stderr
        if text in run.stdout:
            return run.stdout
        assert time.monotonic() < deadline, run.stdout
        await asyncio.sleep(1)


async def test_a_policy_directory_edited_while_the_worker_is_down_goes_through_the_guard(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker()
    worker.policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", worker.policies)
    await worker.start()
    old = worker.health()["policy_digest"]
    await compliant_users_with_grants(worker, "bd", 12, ["read", "write"])
    worker.stop()
    stricter = stricter_copy(tmp_path / "stricter")
    shutil.copy(stricter / "document.yaml", worker.policies / "document.yaml")

    again = start_worker(worker.data_dir, like=worker)
    again.policies = worker.policies
    await again.start()
    assert again.health()["policy_digest"] == old  # the bundle it ran, not the edited directory
    pending = await wait_pending(again, "held")
    assert pending["digest"] == Bundle.from_directory(stricter).digest
    assert (pending["would_revoke"], pending["active_grants"]) == (12, 12)
    await again.wait_processed()
    assert await again.read("revocations") == []
