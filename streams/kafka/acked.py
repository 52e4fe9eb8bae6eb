"""A producer for records that are part of an answer: JSON values sent with ``acks=all`` and
awaited, so the caller answers only once Kafka holds them (a watched check's grants, the
signals of an accepted Security Event Token)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka.security import PLAINTEXT, KafkaSecurity

#: The header that tells the worker's decoder a value is JSON (not framed Avro).
JSON_HEADERS = [("content-type", b"application/json")]


class AckedJsonProducer:
    def __init__(
        self, *, bootstrap: str, security: KafkaSecurity = PLAINTEXT, timeout_s: float = 5.0
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=0,
            **self.security.client_kwargs(),
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send_all(self, records: Iterable[tuple[str, bytes, Any]]) -> None:
        """Send ``(topic, key, value)`` records as JSON and wait until every one is
        acknowledged; raises on failure or after ``timeout_s``."""
        assert self._producer is not None
        producer = self._producer

        async def send() -> None:
            futures = [
                await producer.send(topic, orjson.dumps(value), key=key, headers=JSON_HEADERS)
                for topic, key, value in records
            ]
            await asyncio.gather(*futures)

        await asyncio.wait_for(send(), timeout=self.timeout_s)
