"""One SET in, its signals durably on the signal topics, one answer out (push and poll alike).

The answer is given only after Kafka acknowledged (``acks=all``) every signal and then the
ledger entry. A crash between the two leaves no ledger entry: the transmitter redelivers, the
signals are written again with the same deterministic ``event_id`` and the pipeline drops them
as duplicates, so there is still one effect.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from streams import metrics
from streams.kafka.acked import AckedJsonProducer
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.ssf.config import Transmitter
from streams.ssf.follow import JtiLedger
from streams.ssf.mapping import Locator, SignalOut, signals_for
from streams.ssf.verify import INVALID_REQUEST, SetRejected, SetVerifier, VerifiedSet

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    jti: str
    outcome: str  # accepted | duplicate | no-subject | stream-event
    signals: int = 0


class SignalWriter(AckedJsonProducer):
    """Writes signals as JSON (accepted on every signal topic) and waits for the acks."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: dict[str, str],
        security: KafkaSecurity = PLAINTEXT,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__(bootstrap=bootstrap, security=security, timeout_s=timeout_s)
        self.topics = topics  # role -> topic

    async def write(self, signals: list[SignalOut]) -> None:
        await self.send_all((self.topics[s.role], s.key.encode(), s.value) for s in signals)


class SetReceiver:
    def __init__(
        self,
        verifier: SetVerifier,
        ledger: JtiLedger,
        writer: SignalWriter,
        locator: Locator,
        max_future_skew_ms: int = 300_000,
    ) -> None:
        self.max_future_skew_ms = max_future_skew_ms
        self.verifier = verifier
        self.ledger = ledger
        self.writer = writer
        self.locator = locator
        self._locks: dict[tuple[str, str], list[Any]] = {}
        #: stream events (verification, stream-updated) by transmitter, for ``vigil ssf status``
        self.stream_events: dict[str, dict[str, dict[str, Any]]] = {}

    async def receive(
        self, token: bytes, delivery: str, transmitter: Transmitter | None = None
    ) -> Accepted:
        """Accept one SET (counted) or raise ``SetRejected`` (the caller counts it, with the
        refusals it finds itself). Any other exception means Kafka did not acknowledge: the
        caller answers 503 / does not ack."""
        result = await self._receive(token, transmitter)
        metrics.SSF_SETS.labels(delivery, result.outcome).inc()
        return result

    async def _receive(self, token: bytes, transmitter: Transmitter | None) -> Accepted:
        verified = await self.verifier.verify(token, transmitter)
        key = (verified.iss, verified.jti)
        entry = self._locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1  # holders and waiters: the lock goes when the last one is done
        try:
            async with entry[0]:
                return await self._apply(verified)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]

    async def _apply(self, verified: VerifiedSet) -> Accepted:
        seen = self.ledger.digest(verified.iss, verified.jti)
        if seen is not None:
            if seen == verified.digest:
                return Accepted(verified.jti, "duplicate")
            metrics.SSF_JTI_CONFLICTS.inc()
            log.error(
                "SSF ALERT: transmitter %s reused jti %r with a different payload; refused",
                verified.transmitter.name,
                verified.jti,
            )
            raise SetRejected(
                INVALID_REQUEST,
                f"jti {verified.jti!r} was already received with a different payload",
            )
        if verified.is_stream_event:
            payload = verified.event.model_dump(mode="json", exclude_none=True)
            self.stream_events.setdefault(verified.transmitter.name, {})[verified.event_name] = (
                payload
            )
            if verified.event_name == "stream-updated":
                log.warning(
                    "SSF: transmitter %s says our stream is %s (%s)",
                    verified.transmitter.name,
                    payload.get("status"),
                    payload.get("reason", "no reason given"),
                )
            await self.ledger.record(verified.iss, verified.jti, verified.digest)
            return Accepted(verified.jti, "stream-event")
        signals = signals_for(verified, self.locator, self.max_future_skew_ms)
        if signals:
            await self.writer.write(signals)
        await self.ledger.record(verified.iss, verified.jti, verified.digest)
        return Accepted(verified.jti, "accepted" if signals else "no-subject", len(signals))
