"""Revocation records on a real topic, and a plain SSE reader for the revocation stream tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from streams.codecs import OutputEncoder

ENCODER = OutputEncoder("Revocation")


def revocation(grant_id: str, subject: str = "user:alice", session_id: str | None = None) -> dict:
    return {
        "revocation_id": f"r-{grant_id}",
        "grant_id": grant_id,
        "subject": subject,
        "session_id": session_id,
        "device_id": None,
        "decision_id": None,
        "cause": {"kind": "signal", "event_id": "e1"},
        "denied_actions": ["read"],
        "policy": None,
        "rule": None,
        "policy_digest": None,
        "previous_policy_digest": None,
        "revoked_at": 1764500000000,
        "cause_event_time": None,
    }


async def produce(bootstrap: str, topic: str, *items: tuple[int, dict[str, Any]]) -> None:
    """``(partition, revocation)`` pairs, Avro-encoded as the pipeline writes them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, rev in items:
            await producer.send_and_wait(
                topic,
                ENCODER.encode(rev),
                key=rev["subject"].encode(),
                partition=partition,
                headers=ENCODER.headers,
            )
    finally:
        await producer.stop()


class SseReader:
    """An open stream: ``await next_event()`` -> (event, id, data) skipping heartbeats."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next_event(self, timeout: float = 15.0) -> tuple[str, str, Any]:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):  # overall: heartbeats do not extend it
            return await self._next(fields)

    async def _next(self, fields: dict[str, str]) -> tuple[str, str, Any]:
        while True:
            raw = await self.response.content.readline()
            if not raw:
                raise EOFError("stream closed")
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                self.comments.append(line)
                continue
            if not line:
                if fields:
                    data = fields.get("data")
                    return fields["event"], fields["id"], orjson.loads(data) if data else None
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    async def revocations(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        """The next ``count`` revocation events as (id, revocation)."""
        out = []
        while len(out) < count:
            event, eid, data = await self.next_event()
            if event == "revocation":
                out.append((eid, data))
        return out


@asynccontextmanager
async def stream(
    url: str,
    *,
    params: list[tuple[str, str]] | None = None,
    last_event_id: str | None = None,
    token: str | None = None,
) -> AsyncIterator[SseReader]:
    headers = {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{url}/api/revocations/stream", params=params or [], headers=headers
        ) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream"
        yield SseReader(response)
