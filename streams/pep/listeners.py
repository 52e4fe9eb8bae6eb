"""Revocation listeners: a callback per revoked grant, reconnecting and resuming without loss.

Both listeners call ``on_revocation(revocation)`` (a plain or async function; the argument is
the revocation's JSON shape, as on the SSE stream and ``vigil tail``) at least once per matching
revocation, in the order they were read, and only then move their resume position:

* `SseRevocationListener`: the position is the last SSE event id (``last_event_id``, which an
  application may persist and pass back at start). On a dropped connection, an error answer
  other than 400/401/403, or a worker that is down, it waits (backoff) and reconnects to the
  next URL with ``Last-Event-ID``.
* `KafkaRevocationListener`: the position is the consumer group's committed offsets, committed
  after each fetched batch has been handled.

A callback that raises stops the listener (``run`` raises) without moving the position past
that revocation: handling it again is the application's decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from streams.kafka.group import commit_start
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.web.revocations import RevocationFilter, decode_revocation

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], Awaitable[None] | None]


class StreamRefused(Exception):
    """The server refused the stream for a reason a retry cannot fix (400, 401, 403)."""


async def _call(callback: Callback, revocation: dict[str, Any]) -> None:
    result = callback(revocation)
    if inspect.isawaitable(result):
        await result


class SseRevocationListener:
    def __init__(
        self,
        urls: str | Sequence[str],
        on_revocation: Callback,
        *,
        principal: Iterable[str] = (),
        principal_type: str | None = None,
        session_id: Iterable[str] = (),
        grant_id: Iterable[str] = (),
        token: str | None = None,
        last_event_id: str | None = None,
        retry_seconds: float = 0.5,
        max_retry_seconds: float = 10.0,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.on_revocation = on_revocation
        self.params: list[tuple[str, str]] = [
            *(("principal", p) for p in principal),
            *(("session_id", s) for s in session_id),
            *(("grant_id", g) for g in grant_id),
        ]
        if principal_type is not None:
            self.params.append(("principal_type", principal_type))
        self.token = token
        self.last_event_id = last_event_id
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.connected = asyncio.Event()  # set while a stream is open (after its ready event)
        self.connections = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Listen until `stop`; raises `StreamRefused` or the callback's exception."""
        attempt = 0
        turn = 0
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
        ) as session:
            while not self._stopping.is_set():
                url = self.urls[turn % len(self.urls)]
                try:
                    await self._listen(session, url)
                    attempt = 0
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("revocation stream %s: %s; reconnecting", url, exc)
                finally:
                    self.connected.clear()
                if self._stopping.is_set():
                    return
                turn += 1
                delay = min(self.max_retry_seconds, self.retry_seconds * 2**attempt)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _listen(self, session: aiohttp.ClientSession, url: str) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            async with session.get(
                f"{url.rstrip('/')}/api/revocations/stream", params=self.params, headers=headers
            ) as response:
                if response.status in (400, 401, 403):
                    raise StreamRefused(f"HTTP {response.status}: {await response.text()}")
                if response.status != 200:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status
                    )
                self.connections += 1
                event: dict[str, str] = {}
                data: list[str] = []
                while True:
                    read = asyncio.ensure_future(response.content.readline())
                    done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if stop in done:
                        read.cancel()
                        return
                    raw = read.result()
                    if not raw:
                        return  # the server closed the stream: reconnect
                    line = raw.decode().rstrip("\r\n")
                    if not line:
                        await self._dispatch(event, "\n".join(data))
                        event, data = {}, []
                    elif line.startswith(":"):
                        continue  # heartbeat
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "data":
                            data.append(value)
                        else:
                            event[name] = value
        finally:
            stop.cancel()

    async def _dispatch(self, event: dict[str, str], data: str) -> None:
        kind = event.get("event", "message")
        if kind == "ready":
            self.last_event_id = event.get("id", self.last_event_id)
            self.connected.set()
        elif kind == "revocation":
            await _call(self.on_revocation, orjson.loads(data))
            self.last_event_id = event.get("id", self.last_event_id)


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: AIOKafkaConsumer, ready: asyncio.Event) -> None:
        self.consumer = consumer
        self.ready = ready

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await commit_start(self.consumer, list(assigned))
        self.ready.set()


class KafkaRevocationListener:
    """``security``: how to reach the brokers, as every Vigil client does (TLS, SASL); an
    application builds it from the same ``VIGIL_KAFKA_*`` settings with
    ``KafkaSecurity.from_settings(Settings())`` (docs/security.md)."""

    def __init__(
        self,
        bootstrap: str,
        on_revocation: Callback,
        *,
        group_id: str,
        topic: str = "authz.revocations",
        principal: Iterable[str] = (),
        principal_type: str = "user",
        session_id: Iterable[str] = (),
        grant_id: Iterable[str] = (),
        from_beginning: bool = False,
        registry_url: str | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.on_revocation = on_revocation
        self.filter = RevocationFilter.of(principal, principal_type, session_id, grant_id)
        self.registry_url = registry_url
        self.topic = topic
        self.assigned = asyncio.Event()  # set once the group gave this member its partitions
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            fetch_max_wait_ms=100,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            **security.client_kwargs(),
        )
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Listen until `stop`; raises the callback's exception (the batch is not committed)."""
        consumer = self._consumer
        consumer.subscribe([self.topic], listener=_Assigned(consumer, self.assigned))
        await consumer.start()
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        revocation = decode_revocation(record, self.registry_url)
                        if revocation is not None and self.filter.matches(revocation):
                            await _call(self.on_revocation, revocation)
                if batch:
                    await consumer.commit(
                        {tp: records[-1].offset + 1 for tp, records in batch.items()}
                    )
        finally:
            await consumer.stop()
