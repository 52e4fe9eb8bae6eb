"""Kafka-fed lookup tables the SSF receiver needs, each read to its end at start and then
followed (so every worker sees what the others wrote):

* ``JtiLedger``: ``(iss, jti)`` -> digest of every SET accepted, on a compacted topic, so a
  redelivery gets the same answer and no second effect, also after a restart or on another
  worker;
* ``GrantLocator``: the active grants of every subject, from the state changelog, so that an
  event naming only a session, a device or a token (``jwt_id``) reaches the subjects holding
  such grants.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka.follow import TopicFollower
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.state.store import GRANT_PREFIX

log = logging.getLogger(__name__)


def ledger_key(iss: str, jti: str) -> bytes:
    return orjson.dumps([iss, jti])


class JtiLedger(TopicFollower):
    def __init__(self, *, bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT) -> None:
        super().__init__(bootstrap=bootstrap, topic=topic, security=security)
        self._digests: dict[bytes, str] = {}
        self._producer: AIOKafkaProducer | None = None

    def _apply(self, record: Any) -> None:
        if record.key is not None and record.value is not None:
            self._digests[record.key] = orjson.loads(record.value)["digest"]

    async def start(self, timeout: float = 30.0) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=0,
            **self.security.client_kwargs(),
        )
        await self._producer.start()
        await super().start(timeout)

    async def stop(self) -> None:
        await super().stop()
        if self._producer is not None:
            await self._producer.stop()

    def digest(self, iss: str, jti: str) -> str | None:
        return self._digests.get(ledger_key(iss, jti))

    async def record(self, iss: str, jti: str, digest: str, timeout_s: float = 5.0) -> None:
        """Write the entry and wait for the broker's acknowledgement."""
        assert self._producer is not None
        key = ledger_key(iss, jti)
        value = orjson.dumps({"digest": digest, "received_at": int(time.time() * 1000)})
        await asyncio.wait_for(
            self._producer.send_and_wait(self.topic, value, key=key), timeout=timeout_s
        )
        self._digests[key] = digest


class GrantLocator(TopicFollower):
    def __init__(self, *, bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT) -> None:
        super().__init__(bootstrap=bootstrap, topic=topic, security=security)
        # subject -> (grant ids, session ids, device ids) of its active grants, and the reverse
        self._held: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {}
        self._by: tuple[dict[str, set[str]], ...] = ({}, {}, {})

    def _apply(self, record: Any) -> None:
        key = record.key
        if key is None or not key.startswith(GRANT_PREFIX):
            return
        subject = key[len(GRANT_PREFIX) :].decode()
        grants = orjson.loads(record.value)["grants"] if record.value is not None else {}
        held = (
            frozenset(grants),
            frozenset(g["session_id"] for g in grants.values() if g.get("session_id")),
            frozenset(g["device_id"] for g in grants.values() if g.get("device_id")),
        )
        old = self._held.pop(subject, (frozenset(), frozenset(), frozenset()))
        for index, ids in zip(self._by, old, strict=True):
            for value in ids:
                index[value].discard(subject)
                if not index[value]:
                    del index[value]
        if any(held):
            self._held[subject] = held
            for index, ids in zip(self._by, held, strict=True):
                for value in ids:
                    index.setdefault(value, set()).add(subject)

    def subjects(
        self, grant_id: str | None, session_id: str | None, device_id: str | None
    ) -> set[str]:
        """Subjects holding a grant that matches every named value (None: any value)."""
        found: set[str] | None = None
        for index, value in zip(self._by, (grant_id, session_id, device_id), strict=True):
            if value is None:
                continue
            holders = index.get(value, set())
            found = set(holders) if found is None else found & holders
        return found or set()
