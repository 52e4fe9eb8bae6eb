"""``POST /ssf/push`` (RFC 8935) on the worker's API listener.

202 with an empty body once the SET's signals are acknowledged by Kafka; 400 with
``{"err", "description"}`` and an RFC 8935 code when the SET is refused; 503 (retry later) when
Kafka did not acknowledge in time. The transmitter is the one whose ``issuer`` is the SET's
``iss``; its ``push_authorization``, when set, must be the request's ``Authorization`` header.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from streams import metrics
from streams.ssf.receiver import SetReceiver
from streams.ssf.verify import (
    ACCESS_DENIED,
    AUTHENTICATION_FAILED,
    INVALID_REQUEST,
    MAX_SET_BYTES,
    SetRejected,
    peek_claims,
)

log = logging.getLogger(__name__)
PUSH_PATH = "/ssf/push"
SET_MEDIA_TYPE = "application/secevent+jwt"


def refusal(exc: SetRejected) -> web.Response:
    return web.Response(body=orjson.dumps(exc.body()), status=400, content_type="application/json")


class PushEndpoint:
    def __init__(self, receiver: SetReceiver, ready: Callable[[], bool]) -> None:
        self.receiver = receiver
        self.ready = ready

    def routes(
        self,
    ) -> dict[str, tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        return {PUSH_PATH: ("ssf_push", self.handle)}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        try:
            return await self._accept(request)
        except SetRejected as exc:
            metrics.SSF_SETS.labels("push", exc.err).inc()
            log.info("SSF push: SET refused: %s", exc)
            return refusal(exc)
        except Exception:  # Kafka did not acknowledge (or a bug): not accepted, retry later
            log.exception("SSF push: SET not recorded")
            return web.Response(
                body=orjson.dumps({"err": "temporarily_unavailable", "description": "retry"}),
                status=503,
                content_type="application/json",
            )

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != SET_MEDIA_TYPE:
            raise SetRejected(
                INVALID_REQUEST,
                f"Content-Type must be {SET_MEDIA_TYPE}, not {request.content_type!r}",
            )
        body = await request.content.read(MAX_SET_BYTES + 1)
        if len(body) > MAX_SET_BYTES:
            raise SetRejected(INVALID_REQUEST, f"SET larger than {MAX_SET_BYTES} bytes")
        _, claims = peek_claims(body)
        transmitter = self.receiver.verifier.transmitter(claims)
        expected = transmitter.push_authorization
        if expected is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise SetRejected(
                    AUTHENTICATION_FAILED, "missing or wrong Authorization for this transmitter"
                )
        if transmitter.delivery != "push":
            raise SetRejected(
                ACCESS_DENIED, f"transmitter {transmitter.name!r} is configured for poll delivery"
            )
        if not self.ready():
            return web.Response(status=503, headers={"Retry-After": "1"})
        await self.receiver.receive(body, "push", transmitter)
        return web.Response(status=202)
