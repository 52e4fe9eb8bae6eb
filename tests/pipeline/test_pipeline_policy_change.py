"""Policy bundles in a running pipeline: a pushed stricter bundle revokes exactly the grants it no
longer allows (cause policy-change, old and new digests); a broken bundle is refused; edits of the
watched --policies directory are picked up."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from streams.bundles.bundle import Bundle
from streams.bundles.publish import push_bundle
from tests.pipeline.test_pipeline_e2e import device_signal, grant
from tests.pipeline.worker_harness import ROOT, Worker

STRICTER = "              - expr: V.device_ok\n              - expr: V.network_ok\n"


def stricter_copy(target: Path) -> Path:
    """The default policies, but write/delete also need the corporate network zone."""
    shutil.copytree(ROOT / "policies", target)
    doc = target / "document.yaml"
    text = doc.read_text()
    assert STRICTER in text
    doc.write_text(
        text.replace(
            STRICTER, STRICTER + '              - expr: P.attr.signals.network.zone == "corp"\n'
        )
    )
    return target


def vigil_push(worker: Worker, directory: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_BROKER": worker.bootstrap}
    env["VIGIL_TOPIC_BUNDLES"] = worker.topics["bundles"]
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "policy", "push", str(directory), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def compliant_users_with_grants(
    worker: Worker, prefix: str, count: int, *action_sets: list[str]
) -> list[str]:
    """``count`` fresh users on a compliant device D1, each with one grant per action set (grant
    ids ``<user>-rw`` for read+write, ``<user>-r`` for read)."""
    users = [f"{prefix}-{uuid.uuid4().hex[:6]}-{i}" for i in range(count)]
    await worker.produce(
        "device",
        [device_signal(f"{u}-ok", u, "D1", "compliant", "2026-11-29T08:00:00Z") for u in users],
    )
    await worker.wait_processed()
    for actions in action_sets:
        suffix = "rw" if "write" in actions else "r"
        await worker.produce("grants", [grant(f"{u}-{suffix}", u, actions, "D1") for u in users])
    await worker.wait_processed()
    return users


async def wait_for_digest(worker: Worker, digest: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        health = worker.health()
        if health["policy_digest"] == digest and not health["reevaluating_partitions"]:
            return
        assert time.monotonic() < deadline, f"worker still on {health}\n{worker.log()}"
        await asyncio.sleep(0.2)


async def test_pushed_stricter_bundle_revokes_exactly_what_it_no_longer_allows(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker()
    # Half the grants go: the blast-radius guard would hold this switch (tested on its own in
    # test_pipeline_bundle_guard.py); here it is off.
    worker.extra_env["VIGIL_BUNDLE_MAX_REVOKE_SHARE"] = "1"
    await worker.start()
    old = worker.health()["policy_digest"]
    users = await compliant_users_with_grants(worker, "pc", 20, ["read", "write"], ["read"])
    assert await worker.read("revocations") == []

    # A bundle that does not compile is refused; the running bundle stays.
    broken = Bundle(digest="sha256:" + "0" * 64, files={"document.yaml": "apiVersion: [oops"})
    await push_bundle(worker.bootstrap, worker.topics["bundles"], broken)
    deadline = time.monotonic() + 20
    while worker.metric("vigil_policy_bundle_rejected_total") < 1:
        assert time.monotonic() < deadline, worker.log()
        await asyncio.sleep(0.2)
    assert worker.health()["policy_digest"] == old

    stricter = stricter_copy(tmp_path / "stricter")
    bundle = Bundle.from_directory(stricter)
    # A bundle whose own test suite fails is not published.
    failing = tmp_path / "failing"
    shutil.copytree(stricter, failing)
    suite = failing / "tests" / "document_test.yaml"
    suite.write_text(suite.read_text().replace("EFFECT_ALLOW", "EFFECT_DENY", 1))
    refused = vigil_push(worker, failing)
    assert refused.returncode == 1 and "nothing published" in refused.stderr
    pushed = vigil_push(worker, stricter)
    assert pushed.returncode == 0, pushed.stderr
    assert bundle.digest in pushed.stdout
    await wait_for_digest(worker, bundle.digest)

    revocations = await worker.read("revocations")
    assert sorted(r["grant_id"] for r in revocations) == sorted(f"{u}-rw" for u in users)
    for rev in revocations:
        assert rev["cause"] == {"kind": "policy-change", "event_id": bundle.digest}
        assert rev["policy_digest"] == bundle.digest
        assert rev["previous_policy_digest"] == old
        assert rev["denied_actions"] == ["write"]
    changed = [d for d in await worker.read("decisions") if d["cause"]["kind"] == "policy-change"]
    assert sorted(d["grant_id"] for d in changed) == sorted(
        [f"{u}-rw" for u in users] + [f"{u}-r" for u in users]
    )
    assert {d["policy_digest"] for d in changed} == {bundle.digest}

    # A restarted worker runs the pushed bundle, not its --policies directory, and re-judges
    # nothing (every grant already carries the new digest).
    worker.stop()
    again = start_worker(worker.data_dir, like=worker)
    await again.start()
    assert again.health()["policy_digest"] == bundle.digest
    await wait_for_digest(again, bundle.digest)
    assert (
        len([d for d in await again.read("decisions") if d["cause"]["kind"] == "policy-change"])
        == 40
    )


async def test_edits_of_the_watched_policy_directory_switch_the_bundle(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker()
    worker.policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", worker.policies)
    await worker.start()
    old = worker.health()["policy_digest"]
    (worker.policies / "document.yaml").write_text(
        "apiVersion: api.cerbos.dev/v1\nresourcePolicy: 7\n"
    )
    deadline = time.monotonic() + 20
    while worker.metric("vigil_policy_bundle_rejected_total") < 1:
        assert time.monotonic() < deadline, worker.log()
        await asyncio.sleep(0.2)
    assert worker.health()["policy_digest"] == old
    stricter_copy(tmp_path / "stricter")
    shutil.copy(tmp_path / "stricter" / "document.yaml", worker.policies / "document.yaml")
    expected = Bundle.from_directory(worker.policies).digest
    await wait_for_digest(worker, expected)
