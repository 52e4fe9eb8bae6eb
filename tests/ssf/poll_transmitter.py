"""An RFC 8936 poll transmitter for the tests (aiohttp): holds SETs until the receiver
acknowledges them, records every ``ack`` and ``setErrs``, long-polls when it has nothing.

``on_ack`` is awaited with each acknowledged jti before the poll is answered, so a test can
check what the receiver had already done when it acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web


class PollTransmitter:
    def __init__(
        self, authorization: str, on_ack: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        self.authorization = authorization
        self.on_ack = on_ack
        self.pending: dict[str, str] = {}  # jti -> SET, until acknowledged
        self.acked: list[str] = []
        self.errors: dict[str, dict[str, str]] = {}
        self.requests: list[dict[str, Any]] = []
        self.unauthorized = 0
        self._new = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add(self, jti: str, token: bytes) -> None:
        self.pending[jti] = token.decode()
        self._new.set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/poll", self._poll)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/poll"

    async def _poll(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.authorization:
            self.unauthorized += 1
            return web.Response(status=401)
        body = orjson.loads(await request.read())
        self.requests.append(body)
        for jti in body.get("ack", []):
            if self.on_ack is not None:
                await self.on_ack(jti)
            self.acked.append(jti)
            self.pending.pop(jti, None)
        for jti, error in body.get("setErrs", {}).items():
            self.errors[jti] = error
            self.pending.pop(jti, None)
        if not self.pending and not body.get("returnImmediately", False):
            self._new.clear()
            # long polling: answer as soon as there is something, or after a while
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), timeout=1.0)
        limit = int(body.get("maxEvents", 100))
        sets = dict(list(self.pending.items())[:limit])
        more = len(self.pending) > len(sets)
        return web.json_response({"sets": sets, "moreAvailable": more})
