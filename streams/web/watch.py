"""Watched checks (``vigil.watch``): the allowed actions of a check become a grant on
``authz.grants``, keyed by the subject, so the owner of the subject's partition holds and
re-evaluates it exactly as a grant a PEP issued there (docs/check-api.md).

Unlike the audit, this is part of the answer: the check is answered only after the grant events
are acknowledged by Kafka (``acks=all``); if that fails or times out, the caller gets 503 and
must not assume the grant is watched.
"""

from __future__ import annotations

from typing import Any

from streams.kafka.acked import AckedJsonProducer
from streams.kafka.security import PLAINTEXT, KafkaSecurity


class GrantPublisher(AckedJsonProducer):
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        security: KafkaSecurity = PLAINTEXT,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__(bootstrap=bootstrap, security=security, timeout_s=timeout_s)
        self.topic = topic

    async def publish(self, subject: str, grants: list[dict[str, Any]]) -> None:
        """Send the grant events and wait for their acknowledgement; raises on failure."""
        key = subject.encode()
        await self.send_all((self.topic, key, grant) for grant in grants)
