"""Watched checks (``vigil.watch``): the allowed actions of a check become a grant on
``authz.grants``, keyed by the subject, so the owner of the subject's partition holds and
re-evaluates it exactly as a grant a PEP issued there (docs/check-api.md).

Unlike the audit, this is part of the answer: the check is answered only after the grant events
are acknowledged by Kafka (``acks=all``); if that fails or times out, the caller gets 503 and
must not assume the grant is watched.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka.security import PLAINTEXT, KafkaSecurity

JSON_HEADERS = [("content-type", b"application/json")]


class GrantPublisher:
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        security: KafkaSecurity = PLAINTEXT,
        timeout_s: float = 5.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
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

    async def publish(self, subject: str, grants: list[dict[str, Any]]) -> None:
        """Send the grant events and wait for their acknowledgement; raises on failure."""
        assert self._producer is not None
        producer = self._producer
        key = subject.encode()

        async def send_all() -> None:
            futures = [
                await producer.send(self.topic, orjson.dumps(grant), key=key, headers=JSON_HEADERS)
                for grant in grants
            ]
            await asyncio.gather(*futures)

        await asyncio.wait_for(send_all(), timeout=self.timeout_s)
