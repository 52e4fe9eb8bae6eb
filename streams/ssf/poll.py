"""Poll delivery (RFC 8936): ask a transmitter for SETs, acknowledge each one only after its
signals are durably written, report refused ones in ``setErrs``.

One long-poll request at a time (``returnImmediately: false``); acknowledgements and errors ride
on the next request and are kept until a request carrying them succeeds. A failed request is
retried with exponential backoff (0.5 s doubling to 30 s). A SET that could not be written
(Kafka did not acknowledge) is neither acknowledged nor refused: the transmitter sends it again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from streams import metrics
from streams.ssf.config import Transmitter
from streams.ssf.receiver import SetReceiver
from streams.ssf.verify import INVALID_REQUEST, SetRejected, peek_claims

log = logging.getLogger(__name__)
LONG_POLL_TIMEOUT_S = 60.0
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0


class Poller:
    def __init__(self, transmitter: Transmitter, receiver: SetReceiver) -> None:
        assert transmitter.poll_endpoint is not None
        self.transmitter = transmitter
        self.receiver = receiver
        self.acks: list[str] = []
        self.errors: dict[str, dict[str, str]] = {}

    def request_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "maxEvents": self.transmitter.poll_max_events,
            "returnImmediately": False,
        }
        if self.acks:
            body["ack"] = list(self.acks)
        if self.errors:
            body["setErrs"] = dict(self.errors)
        return body

    async def handle_sets(self, sets: dict[str, Any]) -> None:
        """Receive each SET; queue its ack or its error for the next request."""
        for jti, token in sets.items():
            try:
                if not isinstance(token, str):
                    raise SetRejected(INVALID_REQUEST, "the SET is not a string")
                raw = token.encode()
                _, claims = peek_claims(raw)
                if claims.get("jti") != jti:
                    raise SetRejected(INVALID_REQUEST, f"sets key {jti!r} is not the SET's jti")
                await self.receiver.receive(raw, "poll", self.transmitter)
            except SetRejected as exc:
                metrics.SSF_SETS.labels("poll", exc.err).inc()
                log.info("SSF poll %s: SET %r refused: %s", self.transmitter.name, jti, exc)
                self.errors[jti] = exc.body()
                continue
            except Exception:  # not written: no ack, the transmitter redelivers it
                log.exception("SSF poll %s: SET %r not recorded", self.transmitter.name, jti)
                continue
            self.acks.append(jti)

    async def poll_once(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """One request; on success the acks and errors it carried are done."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.transmitter.poll_authorization:
            headers["Authorization"] = self.transmitter.poll_authorization
        body = self.request_body()
        assert self.transmitter.poll_endpoint is not None
        async with session.post(self.transmitter.poll_endpoint, json=body, headers=headers) as resp:
            if resp.status != 200:
                raise OSError(f"poll {self.transmitter.poll_endpoint}: HTTP {resp.status}")
            answer = await resp.json(content_type=None)
        if not isinstance(answer, dict) or not isinstance(answer.get("sets", {}), dict):
            raise ValueError("poll response is not {'sets': {...}, 'moreAvailable': ...}")
        sent_acks, sent_errs = body.get("ack", []), body.get("setErrs", {})
        self.acks = [a for a in self.acks if a not in sent_acks]
        for jti in sent_errs:
            self.errors.pop(jti, None)
        return answer

    async def run(self) -> None:
        backoff = BACKOFF_START_S
        timeout = aiohttp.ClientTimeout(total=LONG_POLL_TIMEOUT_S + 10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    answer = await self.poll_once(session)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    metrics.SSF_POLLS.labels("error").inc()
                    log.warning(
                        "SSF poll %s failed (%s); retrying in %.1f s",
                        self.transmitter.name,
                        exc,
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                metrics.SSF_POLLS.labels("ok").inc()
                backoff = BACKOFF_START_S
                sets = answer.get("sets") or {}
                await self.handle_sets(sets)
                if not sets and not answer.get("moreAvailable") and not self.acks:
                    await asyncio.sleep(self.transmitter.poll_interval_seconds)
