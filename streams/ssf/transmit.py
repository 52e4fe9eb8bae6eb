"""Vigil as a transmitter: each revocation on ``authz.revocations`` becomes a signed CAEP
``session-revoked`` SET per configured receiver, published to ``vigil.ssf-outbound`` and pushed
to the receiver (RFC 8935) with retries; a SET that cannot be delivered after the last try, or
that the receiver refuses (4xx), goes to ``signals.deadletter`` with the reason.

The workers share the revocations through one consumer group, so each revocation is handled by
one worker. An offset is committed after its SETs were delivered or dead-lettered (at least
once). The ``jti`` is a hash of the revocation id and the receiver, and ``iat`` the revocation
time, so a revocation handled twice gives the same SET and the receiver can drop it.
``txn`` is shared by the SETs of one cause (one signal's revocations carry one ``txn``).

A revocation caused by a ``credential-change`` signal also gives each receiver one CAEP
``credential-change`` SET for that signal (same ``txn``): once per cause and receiver however
many grants the cause revoked. The worker remembers the (``txn``, receiver) pairs it sent; after
a restart or a rebalance it may send one again, with the same ``jti`` (a hash of the cause and
the receiver), which the receiver drops.

Also serves ``GET /.well-known/ssf-configuration`` and ``GET /ssf/jwks`` on the API listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import metrics
from streams.codecs import OutputEncoder, decode_any
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.ssf.config import Receiver, SsfConfig
from streams.ssf.events import CAEP
from streams.ssf.signing import SigningKeys

log = logging.getLogger(__name__)
SESSION_REVOKED = CAEP + "session-revoked"
CREDENTIAL_CHANGE = CAEP + "credential-change"
CREDENTIAL_SENT_MEMORY = 65536
"""(txn, receiver) pairs whose credential-change SET was sent, remembered per worker."""
WELL_KNOWN_PATH = "/.well-known/ssf-configuration"
JWKS_PATH = "/ssf/jwks"
PUSH_DELIVERY = "urn:ietf:rfc:8935"
RETRY_MAX_SECONDS = 30.0


def _hash(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def revocation_claims(rev: dict[str, Any], receiver: Receiver, issuer: str) -> dict[str, Any]:
    """The SET claims telling ``receiver`` about one revocation (docs/shared-signals.md)."""
    _, subject_id = str(rev["subject"]).split(":", 1)
    session = rev.get("session_id")
    if session:
        sub_id: dict[str, Any] = {
            "format": "complex",
            "user": {"format": "iss_sub", "iss": issuer, "sub": subject_id},
            "session": {"format": "opaque", "id": session},
        }
    else:  # no session: the grant itself, as the token whose jti is the grant id
        sub_id = {"format": "jwt_id", "iss": issuer, "jti": rev["grant_id"]}
    kind, cause_id = _cause_of(rev)
    revoked_s = int(rev["revoked_at"]) // 1000
    denied = ", ".join(rev.get("denied_actions") or []) or "its actions"
    reason = (
        f"Vigil revoked grant {rev['grant_id']}: policy {rev.get('policy') or '-'} rule "
        f"{rev.get('rule') or '-'} denies {denied} (cause: {kind} {cause_id})"
    )
    return {
        "iss": issuer,
        "jti": _hash("jti", rev["revocation_id"], receiver.name),
        "iat": revoked_s,
        "aud": receiver.audience,
        "txn": cause_txn(rev),
        "sub_id": sub_id,
        "events": {
            SESSION_REVOKED: {
                "initiating_entity": "policy",
                "reason_admin": {"en": reason},
                "event_timestamp": revoked_s,
            }
        },
    }


def _cause_of(rev: dict[str, Any]) -> tuple[str, str]:
    cause = rev.get("cause") or {}
    return str(cause.get("kind", "")), cause.get("event_id") or rev["revocation_id"]


def cause_txn(rev: dict[str, Any]) -> str:
    """The ``txn`` of every SET a revocation's cause gives (one signal, one ``txn``)."""
    return _hash("txn", *_cause_of(rev))


def credential_change_claims(
    rev: dict[str, Any], receiver: Receiver, issuer: str
) -> dict[str, Any] | None:
    """The CAEP credential-change SET claims for the signal that caused ``rev``, or None when
    the cause is not a credential-change signal or lacks ``credential_type``/``change_type``
    (both REQUIRED by CAEP 1.0, so no SET can be made without them)."""
    cause = rev.get("cause") or {}
    credential_type = cause.get("credential_type")
    change_type = cause.get("change_type")
    if cause.get("signal_type") != "credential-change" or not credential_type or not change_type:
        return None
    kind, cause_id = _cause_of(rev)
    _, subject_id = str(rev["subject"]).split(":", 1)
    # Every claim depends on the cause alone, never on which of its revocations is handled
    # first, so a repeat (after a restart) is the same SET and receivers drop it as a duplicate.
    happened_s = int(rev.get("cause_event_time") or rev["revoked_at"]) // 1000
    return {
        "iss": issuer,
        "jti": _hash("jti-credential-change", kind, cause_id, receiver.name),
        "iat": happened_s,
        "aud": receiver.audience,
        "txn": cause_txn(rev),
        "sub_id": {"format": "iss_sub", "iss": issuer, "sub": subject_id},
        "events": {
            CREDENTIAL_CHANGE: {
                "credential_type": credential_type,
                "change_type": change_type,
                "initiating_entity": "policy",
                "reason_admin": {
                    "en": f"Vigil revoked grants of {rev['subject']} after credential change "
                    f"{cause_id} ({credential_type} {change_type})"
                },
                "event_timestamp": happened_s,
            }
        },
    }


class RevocationTransmitter:
    def __init__(
        self,
        config: SsfConfig,
        keys: SigningKeys,
        *,
        bootstrap: str,
        group_id: str,
        revocations_topic: str,
        outbound_topic: str,
        deadletter_topic: str,
        output_format: str = "avro",
        registry_url: str | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.config = config
        self.keys = keys
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.revocations_topic = revocations_topic
        self.outbound_topic = outbound_topic
        self.deadletter_topic = deadletter_topic
        self.registry_url = registry_url
        self.security = security
        fmt: Any = output_format
        self._deadletter = OutputEncoder(
            "DeadLetter", fmt, registry_url=registry_url, topic=deadletter_topic
        )
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._credential_sent: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- HTTP: discovery and keys ----------------------------------------------------------

    def routes(
        self,
    ) -> dict[str, tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        return {
            WELL_KNOWN_PATH: ("ssf_configuration", self._configuration),
            JWKS_PATH: ("ssf_jwks", self._jwks),
        }

    def metadata(self) -> dict[str, Any]:
        """SSF 1.0 transmitter configuration metadata (push delivery only)."""
        issuer = self.config.our_issuer
        return {
            "spec_version": "1_0",
            "issuer": issuer,
            "jwks_uri": issuer.rstrip("/") + JWKS_PATH,
            "delivery_methods_supported": [PUSH_DELIVERY],
        }

    async def _configuration(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return web.Response(status=405, headers={"Allow": "GET"})
        return web.json_response(self.metadata())

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return web.Response(status=405, headers={"Allow": "GET"})
        return web.json_response(self.keys.public_jwks())

    # -- the loop ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=0,
            **self.security.client_kwargs(),
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            self.revocations_topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            fetch_max_wait_ms=50,
            **self.security.client_kwargs(),
        )
        await self._consumer.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._session is not None:
            await self._session.close()
        if self._producer is not None:
            await self._producer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000, max_records=100)
                for tp, records in batch.items():
                    for record in records:
                        await self.handle(record.value, list(record.headers or ()))
                    await consumer.commit({tp: records[-1].offset + 1})
            except asyncio.CancelledError:
                raise
            except Exception:  # Kafka trouble: nothing committed, the batch comes again
                log.exception("SSF transmitter: batch failed; retrying")
                await asyncio.sleep(1.0)

    async def handle(self, value: bytes | None, headers: list[Any]) -> None:
        """Every receiver's SETs for one revocation record: published, then delivered."""
        if not value:
            return
        try:
            _, rev = decode_any(value, headers, self.registry_url)
            sets = self._sets(rev)
        except Exception as exc:  # our own output, unreadable: say so, never crash the loop
            metrics.SSF_OUTBOUND.labels("-", "unreadable").inc()
            log.error("SSF transmitter: revocation record unreadable: %r", exc)
            return
        assert self._producer is not None
        futures = [
            await self._producer.send(
                self.outbound_topic,
                orjson.dumps(
                    {
                        "receiver": r.name,
                        "revocation_id": rev["revocation_id"],
                        "event": event,
                        "set": t.decode(),
                    }
                ),
                key=str(rev["subject"]).encode(),
                headers=[("content-type", b"application/json")],
            )
            for r, event, t in sets
        ]
        await asyncio.gather(*futures)
        await asyncio.gather(*(self.deliver(r, t) for r, _, t in sets))
        for r, event, _ in sets:  # delivered or dead-lettered: done for this cause
            if event == "credential-change":
                self._remember_credential_sent((cause_txn(rev), r.name))

    def _sets(self, rev: dict[str, Any]) -> list[tuple[Receiver, str, bytes]]:
        """(receiver, event name, signed SET): session-revoked for every receiver, and the
        cause's credential-change SET for each receiver that has not had it yet."""
        issuer = self.config.our_issuer
        txn = cause_txn(rev)
        out = []
        for r in self.config.receivers:
            out.append((r, "session-revoked", self.keys.sign(revocation_claims(rev, r, issuer))))
            if (txn, r.name) in self._credential_sent:
                continue
            claims = credential_change_claims(rev, r, issuer)
            if claims is not None:
                out.append((r, "credential-change", self.keys.sign(claims)))
        return out

    def _remember_credential_sent(self, pair: tuple[str, str]) -> None:
        sent = self._credential_sent
        sent[pair] = None
        sent.move_to_end(pair)
        while len(sent) > CREDENTIAL_SENT_MEMORY:
            sent.popitem(last=False)

    async def deliver(self, receiver: Receiver, token: bytes) -> bool:
        """Push with retries and exponential backoff; dead-letter after the last try or on a
        refusal. True when the receiver accepted it."""
        assert self._session is not None
        headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
        if receiver.authorization:
            headers["Authorization"] = receiver.authorization
        delay = receiver.retry_initial_seconds
        why = ""
        for attempt in range(1, receiver.max_attempts + 1):
            try:
                async with self._session.post(
                    receiver.endpoint, data=token, headers=headers
                ) as resp:
                    body = await resp.read()
                    if 200 <= resp.status < 300:
                        metrics.SSF_OUTBOUND.labels(receiver.name, "delivered").inc()
                        return True
                    why = f"HTTP {resp.status} {body[:500].decode(errors='replace')}"
                    if 400 <= resp.status < 500 and resp.status != 429:
                        break  # refused: retrying the same SET cannot help
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            if attempt < receiver.max_attempts:
                metrics.SSF_OUTBOUND.labels(receiver.name, "retried").inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
        await self._dead_letter(receiver, token, why)
        return False

    async def _dead_letter(self, receiver: Receiver, token: bytes, why: str) -> None:
        metrics.SSF_OUTBOUND.labels(receiver.name, "dead-lettered").inc()
        log.error("SSF transmitter: SET for %s dead-lettered: %s", receiver.name, why)
        assert self._producer is not None
        value = self._deadletter.encode(
            {
                "reason": f"SET not delivered to receiver {receiver.name} ({receiver.endpoint}): {why}",
                "error": "ssf-delivery",
                "topic": self.outbound_topic,
                "partition": -1,
                "offset": -1,
                "key": receiver.name.encode(),
                "value": token,
                "received_at": int(time.time() * 1000),
            }
        )
        await self._producer.send_and_wait(
            self.deadletter_topic,
            value,
            key=receiver.name.encode(),
            headers=self._deadletter.headers,
        )
