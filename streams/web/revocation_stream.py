"""``GET /api/revocations/stream``: revocations as server-sent events, for PEPs without Kafka.

Query parameters (each may repeat; values of one parameter are alternatives, different
parameters must all match): ``principal`` (with ``principal_type``, default ``user``),
``session_id``, ``grant_id``. The stream sends, in this order:

* ``event: ready`` with the start cursor as its ``id`` (so a client that reconnects before any
  revocation arrived resumes from where it first connected);
* ``event: revocation`` per matching revocation, ``data`` its JSON, ``id`` the cursor after it
  (``streams.web.revocations``: partition:next-offset pairs, the same on every worker);
* ``: heartbeat`` comments while idle.

``Last-Event-ID`` resumes after that event on any worker, without loss or duplicates. A client
that does not read fast enough (``api_sse_buffer`` events waiting) is disconnected and counted;
it reconnects and resumes. At most ``api_sse_max_streams`` streams per worker (429 beyond).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import orjson
from aiohttp import web

from streams import metrics
from streams.web.revocations import (
    Cursor,
    CursorError,
    RevocationEvent,
    RevocationFeed,
    RevocationFilter,
    format_cursor,
    parse_cursor,
)

log = logging.getLogger(__name__)

FILTER_PARAMS = frozenset({"principal", "principal_type", "session_id", "grant_id"})
_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_FILTER_VALUES = 1000
CLIENT_CHECK_SECONDS = 1.0


class StreamRequestError(ValueError):
    """A stream request that cannot be served (400 with this message)."""


def stream_filter(query: dict[str, list[str]]) -> RevocationFilter:
    unknown = set(query) - FILTER_PARAMS
    if unknown:
        raise StreamRequestError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    if sum(len(v) for v in query.values()) > MAX_FILTER_VALUES:
        raise StreamRequestError(f"at most {MAX_FILTER_VALUES} filter values")
    types = query.get("principal_type", [])
    if len(types) > 1 or (types and not _TYPE.match(types[0])):
        raise StreamRequestError("principal_type must be given once, as a subject type")
    for name, values in query.items():
        if any(not v for v in values):
            raise StreamRequestError(f"{name} must not be empty")
    return RevocationFilter.of(
        query.get("principal", []),
        types[0] if types else "user",
        query.get("session_id", []),
        query.get("grant_id", []),
    )


class RevocationStreams:
    def __init__(
        self,
        feed: RevocationFeed,
        *,
        max_streams: int = 100,
        buffer: int = 1000,
        heartbeat_seconds: float = 15.0,
    ) -> None:
        self.feed = feed
        self.max_streams = max_streams
        self.buffer = buffer
        self.heartbeat_seconds = heartbeat_seconds
        # how often an idle stream looks whether its client is still there
        self._wake_seconds = min(heartbeat_seconds, CLIENT_CHECK_SECONDS)

    def ready(self) -> bool:
        return self.feed.ready.is_set()

    def parse(self, request: web.Request) -> tuple[RevocationFilter, Cursor | None]:
        """Raises ``StreamRequestError``."""
        query = {k: request.query.getall(k) for k in request.query}
        flt = stream_filter(query)
        last = request.headers.get("Last-Event-ID")
        try:
            cursor = parse_cursor(last) if last else None
        except CursorError as exc:
            raise StreamRequestError(str(exc)) from None
        return flt, cursor

    async def serve(
        self, request: web.Request, flt: RevocationFilter, cursor: Cursor | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        transport = request.transport

        def abort() -> None:
            if transport is not None:
                transport.abort()

        sub, positions, held, gaps = self.feed.subscribe(cursor, self.buffer, abort)

        async def send(event: RevocationEvent) -> None:
            if event.offset < positions.get(event.partition, 0):
                return  # delivered before (the client's cursor is past it)
            positions[event.partition] = event.offset + 1
            if flt.matches(event.revocation):
                await response.write(
                    b"id: %s\nevent: revocation\ndata: %s\n\n"
                    % (format_cursor(positions).encode(), event.data)
                )
                metrics.REVOCATION_STREAM_EVENTS.inc()

        try:
            ready = orjson.dumps({"cursor": format_cursor(positions)})
            await response.write(
                b"id: %s\nevent: ready\ndata: %s\n\n" % (format_cursor(positions).encode(), ready)
            )
            if gaps:
                async for event in self.feed.read_back(gaps):
                    await send(event)
            for event in held:
                await send(event)
            idle_since = time.monotonic()
            while not (sub.dropped or sub.closed):
                try:
                    queued = await asyncio.wait_for(sub.queue.get(), self._wake_seconds)
                except TimeoutError:
                    if transport is None or transport.is_closing():
                        break  # the client left: free its slot now, not at the next write
                    if time.monotonic() - idle_since >= self.heartbeat_seconds:
                        await response.write(b": heartbeat\n\n")
                        idle_since = time.monotonic()
                    continue
                idle_since = time.monotonic()
                if queued is None or sub.dropped:
                    break
                await send(queued)
        except (ConnectionResetError, ConnectionError):
            pass  # the client left, or was cut off for being slow
        except Exception:  # e.g. Kafka failed while reading back a gap: the client resumes
            log.exception("revocation stream ended by an error")
        finally:
            self.feed.unsubscribe(sub)
        return response
