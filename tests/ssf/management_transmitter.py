"""An SSF 1.0 transmitter's management API for the tests (aiohttp): discovery, one stream per
receiver (create, read, update), status, and verification, which pushes a signed verification
SET with the receiver's ``state`` to the stream's push endpoint."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from streams.ssf.events import VERIFICATION
from tests.ssf.helpers import AUDIENCE, Signer

SUPPORTED = [
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
    "https://schemas.openid.net/secevent/caep/event-type/credential-change",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
]


class ManagedTransmitter:
    def __init__(self, signer: Signer, authorization: str) -> None:
        self.signer = signer
        self.authorization = authorization
        self.streams: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.pushed: list[int] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/ssf-configuration", self._metadata)
        app.router.add_route("*", "/ssf/stream", self._stream)
        app.router.add_get("/ssf/status", self._status)
        app.router.add_post("/ssf/verify", self._verify)
        app.router.add_get("/jwks", self._jwks)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metadata(self, request: web.Request) -> web.Response:
        base = self.issuer.rstrip("/")
        return web.json_response(
            {
                "spec_version": "1_0",
                "issuer": self.issuer,
                "jwks_uri": f"{base}/jwks",
                "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
                "configuration_endpoint": f"{base}/ssf/stream",
                "status_endpoint": f"{base}/ssf/status",
                "verification_endpoint": f"{base}/ssf/verify",
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.signer.jwks())

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == self.authorization

    def _config(self, stream_id: str, body: dict[str, Any]) -> dict[str, Any]:
        requested = body.get("events_requested", [])
        return {
            "stream_id": stream_id,
            "iss": self.issuer,
            "aud": [AUDIENCE],
            "delivery": body.get("delivery", {"method": "urn:ietf:rfc:8936"}),
            "events_supported": SUPPORTED,
            "events_requested": requested,
            "events_delivered": [e for e in requested if e in SUPPORTED],
            "description": body.get("description"),
        }

    async def _stream(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        self.calls.append((request.method, request.path))
        if request.method == "GET":
            return web.json_response(list(self.streams.values()))
        body = orjson.loads(await request.read())
        if request.method == "POST":
            if self.streams:
                return web.Response(status=409)
            stream_id = f"stream-{next(self._ids)}"
            self.streams[stream_id] = self._config(stream_id, body)
            return web.json_response(self.streams[stream_id], status=201)
        if request.method == "PATCH":
            stream = self.streams.get(body.get("stream_id", ""))
            if stream is None:
                return web.Response(status=404)
            merged = {**stream, **{k: v for k, v in body.items() if k != "stream_id"}}
            self.streams[stream["stream_id"]] = self._config(stream["stream_id"], merged)
            return web.json_response(self.streams[stream["stream_id"]])
        return web.Response(status=405)

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        stream_id = request.query.get("stream_id", "")
        if stream_id not in self.streams:
            return web.Response(status=404)
        return web.json_response({"stream_id": stream_id, "status": "enabled"})

    async def _verify(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        body = orjson.loads(await request.read())
        stream = self.streams.get(body.get("stream_id", ""))
        if stream is None:
            return web.Response(status=404)
        claims = {
            "iss": self.issuer,
            "jti": f"verify-{time.monotonic_ns()}",
            "iat": int(time.time()),
            "aud": AUDIENCE,
            "sub_id": {"format": "opaque", "id": stream["stream_id"]},
            "events": {VERIFICATION: {"state": body.get("state")}},
        }
        task = asyncio.create_task(self._push(stream["delivery"], self.signer.sign(claims)))
        self._tasks.add(task)
        return web.Response(status=204)

    async def _push(self, delivery: dict[str, Any], token: bytes) -> None:
        await asyncio.sleep(0.1)  # after the verification request was answered
        headers = {"Content-Type": "application/secevent+jwt"}
        if delivery.get("authorization_header"):
            headers["Authorization"] = delivery["authorization_header"]
        async with (
            aiohttp.ClientSession() as session,
            session.post(delivery["endpoint_url"], data=token, headers=headers) as resp,
        ):
            self.pushed.append(resp.status)
