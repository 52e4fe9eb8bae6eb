"""Revocations reach PEPs without Kafka, from real ``vigil worker`` processes, driven by the PEP
helper (`streams.pep`).

A watched ALLOW (checked with session, device and watch on the worker that does not own the
principal) is revoked after a risky signal: on ``authz.revocations``, on the SSE stream of that
non-owner, and on a signed webhook; a check right after is denied. A listener that stops and
resumes on the other worker with its last event id, and a Kafka listener that resumes from its
committed offsets, get every later revocation exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from streams.kafka.broker import free_port
from streams.pep import (
    CheckClient,
    KafkaRevocationListener,
    SseRevocationListener,
    Watch,
    verify_webhook,
)
from streams.state.replica import partition_of
from tests.kafka_helpers import unique_name
from tests.pipeline.worker_harness import PARTITIONS, Worker
from tests.web.helpers import signal
from tests.web.test_check_api_worker import _balanced, _records_until

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
EMPLOYEE = {"roles": ["employee"], "attr": {}}
DOC = {"kind": "document", "id": "d1"}


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _risk(worker: Worker, subject: str, n: int = 1) -> None:
    await worker.produce(
        "risk", [signal(subject, "risk-level-change", {"current_level": "HIGH"}, n)]
    )


async def _pair(start_worker: Callable[..., Worker], env: dict[str, str]) -> list[Worker]:
    first = start_worker()
    first.extra_env.update(env)
    await first.start()
    second = start_worker(like=first)
    await second.start()
    await _balanced([first, second])
    return [first, second]


async def test_watched_allow_is_revoked_on_kafka_sse_and_webhook_then_denied(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    deliveries: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        verify_webhook(SECRET, request.headers, body)  # raises: 500, retried, then dead letter
        deliveries.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/revoked", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text(
        "webhooks:\n"
        "  - name: pep\n"
        f"    url: http://127.0.0.1:{port}/revoked\n"
        f"    secret: {SECRET}\n"
        "    filter: {principal: [erin]}\n"
    )
    try:
        workers = await _pair(start_worker, {"VIGIL_WEBHOOKS": str(hooks)})
        partition = partition_of(b"user:erin", PARTITIONS)
        owner, other = sorted(workers, key=lambda w: partition not in w.health()["partitions"])
        assert partition not in other.health()["partitions"]
        revoked: list[dict[str, Any]] = []
        listener = SseRevocationListener(other.api_url, revoked.append, session_id=["S-erin"])
        listening = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 15)
        await _until(
            lambda: (
                sum(w.metric("vigil_webhook_assigned_partitions") for w in workers) == PARTITIONS
            ),
            "the webhook group to settle",
        )
        async with CheckClient(other.api_url) as vigil:
            result = await vigil.check_resources(
                {"id": "erin", **EMPLOYEE},
                [{"resource": DOC, "actions": ["read", "write"]}],
                session_id="S-erin",
                device_id="D-erin",
                watch=Watch("w-erin", ttl_seconds=600),
            )
            assert result.allowed("d1", "read") and not result.allowed("d1", "write")
            issued = await _records_until(owner, "decisions", lambda d: d["grant_id"] == "w-erin")
            assert issued and issued[0]["cause"]["kind"] == "grant-issued"
            await _risk(owner, "user:erin")
            on_kafka = await _records_until(
                owner, "revocations", lambda r: r["grant_id"] == "w-erin"
            )
            assert on_kafka and on_kafka[0]["session_id"] == "S-erin"
            assert on_kafka[0]["device_id"] == "D-erin"
            await _until(lambda: bool(revoked), "the revocation on the non-owner's SSE stream")
            assert [r["grant_id"] for r in revoked] == ["w-erin"]
            assert revoked[0]["revocation_id"] == on_kafka[0]["revocation_id"]
            await owner.wait_processed()
            # the owner answers from its own store: denied right after the signal was processed
            async with CheckClient(owner.api_url) as at_owner:
                assert not await at_owner.is_allowed(
                    "read", {"id": "erin", **EMPLOYEE}, DOC, session_id="S-erin"
                )
            # the non-owner from its replica, within its (measured, docs/check-api.md) staleness
            deadline = time.monotonic() + 15
            while await vigil.is_allowed("read", {"id": "erin", **EMPLOYEE}, DOC):
                assert time.monotonic() < deadline, "the non-owner never saw the risky signal"
                await asyncio.sleep(0.05)
        await _until(lambda: bool(deliveries), "the signed webhook delivery")
        assert {d["grant_id"] for d in deliveries} == {"w-erin"}
        listener.stop()
        await listening
    finally:
        await runner.cleanup()


def _grant(principal: str, now_ms: int) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": f"g-{principal}",
        "principal": {"id": principal, "type": "user", **EMPLOYEE},
        "resource": DOC,
        "actions": ["read"],
        "issued_at": now_ms,
        "expires_at": now_ms + 600_000,
    }


async def test_listeners_resume_on_another_worker_without_loss_or_repeats(
    start_worker: Callable[..., Worker],
) -> None:
    first, second = await _pair(start_worker, {})
    names = ["frank", "gina", "hank"]
    now_ms = int(time.time() * 1000)
    await first.produce("grants", [_grant(n, now_ms) for n in names])
    await first.wait_processed()
    group = unique_name("pep")
    topic = first.topics["revocations"]
    sse: list[str] = []
    kafka: list[str] = []

    def listeners(urls: list[str], last: str | None) -> tuple[Any, Any]:
        on_sse = SseRevocationListener(
            urls, lambda r: sse.append(r["grant_id"]), principal=names, last_event_id=last
        )
        on_kafka = KafkaRevocationListener(
            first.bootstrap,
            lambda r: kafka.append(r["grant_id"]),
            group_id=group,
            topic=topic,
            principal=names,
        )
        return on_sse, on_kafka

    async def run(on_sse: Any, on_kafka: Any) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(on_sse.run()), asyncio.create_task(on_kafka.run())]
        await asyncio.wait_for(on_sse.connected.wait(), 15)
        await asyncio.wait_for(on_kafka.assigned.wait(), 30)
        return tasks

    on_sse, on_kafka = listeners([first.api_url, second.api_url], None)
    tasks = await run(on_sse, on_kafka)
    await _risk(first, "user:frank")
    await _until(lambda: sse == ["g-frank"] and kafka == ["g-frank"], "frank's revocation")
    on_sse.stop()
    on_kafka.stop()
    await asyncio.gather(*tasks)
    assert on_sse.connections == 1
    # revoked while nobody listens
    await _risk(first, "user:gina")
    await _records_until(first, "revocations", lambda r: r["grant_id"] == "g-gina")
    on_sse, on_kafka = listeners([second.api_url], on_sse.last_event_id)
    tasks = await run(on_sse, on_kafka)
    await _risk(first, "user:hank")
    await _until(lambda: len(sse) >= 3 and len(kafka) >= 3, "gina's and hank's revocations")
    await asyncio.sleep(0.5)  # room for a duplicate to show up
    assert sse == ["g-frank", "g-gina", "g-hank"]
    assert kafka[0] == "g-frank" and sorted(kafka[1:]) == ["g-gina", "g-hank"]
    on_sse.stop()
    on_kafka.stop()
    await asyncio.gather(*tasks)
