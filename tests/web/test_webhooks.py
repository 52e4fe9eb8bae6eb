"""Webhooks for revocations: the Standard Webhooks signature, the strict target file, and real
deliveries from a real revocations topic to real aiohttp receivers (one verifying the HMAC, one
failing until its revocations are dead-lettered)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from streams import metrics
from streams.codecs import decode_any
from streams.web.signature import WebhookSignatureError, sign, verify
from streams.web.webhooks import WebhookDispatcher, WebhookFileError, WebhookTarget, load_webhooks
from tests.kafka_helpers import consume_all
from tests.web.revocation_helpers import produce, revocation

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def _hmac(msg_id: str, ts: str, body: bytes) -> str:
    """The signature as a receiver computes it from the documented scheme alone."""
    mac = hmac.new(KEY, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_signature_verifies_and_rejects_tampering_and_replays() -> None:
    body = b'{"grant_id":"g1"}'
    headers = sign(SECRET, "r-g1", body, timestamp=1_800_000_000)
    assert headers["webhook-signature"] == _hmac("r-g1", "1800000000", body)
    assert verify(SECRET, headers, body, now=1_800_000_100) == "r-g1"
    rotated = {**headers, "webhook-signature": "v1,b2xk " + headers["webhook-signature"]}
    assert verify(SECRET, rotated, body, now=1_800_000_000) == "r-g1"
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    for bad_headers, bad_body, now, secret in (
        (headers, b'{"grant_id":"g2"}', 1_800_000_000, SECRET),  # body changed
        ({**headers, "webhook-id": "r-g2"}, body, 1_800_000_000, SECRET),  # id changed
        (headers, body, 1_800_000_301, SECRET),  # too old: a replay
        (headers, body, 1_799_999_699, SECRET),  # from the future
        (headers, body, 1_800_000_000, other),  # another key
        ({k: v for k, v in headers.items() if k != "webhook-timestamp"}, body, 1.8e9, SECRET),
    ):
        with pytest.raises(WebhookSignatureError):
            verify(secret, bad_headers, bad_body, now=now)


def test_webhook_file_is_parsed_strictly(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.yaml"
    good = f"webhooks:\n  - name: a\n    url: 'http://x/y'\n    secret: '{SECRET}'\n"
    path.write_text(good + "    filter: {principal: alice, session_id: [S1]}\n")
    [target] = load_webhooks(path)
    assert target.filter.compile().subjects == {"user:alice"}
    assert "whsec" not in repr(target)
    for bad in (
        good + "    retries: 3\n",  # unknown field
        good.replace(SECRET, "s3cret-but-not-whsec"),
        good.replace(SECRET, "whsec_c2hvcnQ="),  # key too short
        good + good.split("\n", 1)[1],  # duplicate name
        good.replace("'http://x/y'", "'ftp://x/y'"),
        good + "    max_attempts: 20\n    timeout_seconds: 60\n",  # schedule far too long
        "webhooks: []\n",
    ):
        path.write_text(bad)
        with pytest.raises(WebhookFileError, match=str(path)):
            load_webhooks(path)


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_deliveries_are_signed_and_a_failing_target_ends_in_the_dead_letter(
    broker: str, topic_factory: Any
) -> None:
    revocations, deadletter = await topic_factory(
        "authz.revocations", "signals.deadletter", partitions=2
    )
    received: list[tuple[dict[str, str], bytes]] = []
    failed_attempts: list[dict[str, str]] = []

    async def ok(request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        if request.headers["webhook-signature"] != _hmac(
            request.headers["webhook-id"], request.headers["webhook-timestamp"], body
        ):
            return web.Response(status=401)
        verify(SECRET, request.headers, body)
        received.append((headers, body))
        return web.Response(status=204)

    async def fail(request: web.Request) -> web.Response:
        failed_attempts.append(dict(request.headers))
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/fail", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    targets = [
        WebhookTarget(name="ok", url=f"{base}/ok", secret=SECRET, filter={"principal": "alice"}),
        WebhookTarget(
            name="fail",
            url=f"{base}/fail",
            secret=SECRET,
            max_attempts=3,
            backoff_seconds=0.05,
            timeout_seconds=2,
        ),
    ]
    dispatcher = WebhookDispatcher(
        targets,
        bootstrap=broker,
        group_id=f"vigil-test-{time.time_ns()}",
        revocations_topic=revocations,
        deadletter_topic=deadletter,
    )
    dead_before = metrics.WEBHOOK_DEADLETTERS.labels("fail")._value.get()
    await dispatcher.start()
    try:
        assigned = metrics.WEBHOOK_ASSIGNED_PARTITIONS
        await _until(lambda: all(assigned.labels(n)._value.get() == 2 for n in ("ok", "fail")))
        await produce(
            broker,
            revocations,
            (0, revocation("g1", "user:alice")),
            (1, revocation("g2", "user:bob")),
        )
        await _until(lambda: len(received) == 1 and len(failed_attempts) == 6)
        await _until(
            lambda: metrics.WEBHOOK_DEADLETTERS.labels("fail")._value.get() == dead_before + 2
        )
    finally:
        await dispatcher.stop()
        await runner.cleanup()
    assert len(received) == 1  # bob's revocation does not pass the "ok" target's filter
    headers, body = received[0]
    assert orjson.loads(body) == revocation("g1", "user:alice")  # bob: filtered out
    assert headers["webhook-id"] == "r-g1"
    assert headers["Content-Type"] == "application/json"
    # every retry carries the same id (receivers deduplicate by it), freshly signed
    assert sorted(h["webhook-id"] for h in failed_attempts) == ["r-g1"] * 3 + ["r-g2"] * 3
    dead = [decode_any(r.value, list(r.headers))[1] for r in await consume_all(broker, deadletter)]
    assert sorted(d["offset"] for d in dead) == [0, 0]
    for letter in dead:
        assert letter["error"] == "webhook" and letter["topic"] == revocations
        assert letter["reason"] == "webhook fail: HTTP 500 after 3 attempts"
        original = decode_any(letter["value"])[1]
        assert original == revocation(
            "g1" if letter["partition"] == 0 else "g2", original["subject"]
        )


def test_backoff_doubles_up_to_its_cap() -> None:
    target = WebhookTarget(
        name="t", url="http://x/", secret=SECRET, backoff_seconds=0.5, max_backoff_seconds=3
    )
    assert [target.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]
    assert target.schedule_seconds() == 5 * 5.0 + 0.5 + 1.0 + 2.0 + 3
