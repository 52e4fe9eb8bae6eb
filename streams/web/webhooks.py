"""Revocations pushed to configured HTTPS endpoints (``--webhooks FILE``, ``VIGIL_WEBHOOKS``).

The file is YAML, parsed strictly (an unknown field or a bad value refuses the whole file at
startup, invariant 8)::

    webhooks:
      - name: session-store            # metric label and consumer group suffix
        url: https://pep.example/vigil/revocations
        secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw   # Standard Webhooks secret
        filter:                         # optional; same meaning as the SSE query parameters
          principal: [alice]
          principal_type: user
          session_id: []
          grant_id: []
        timeout_seconds: 5              # per attempt
        max_attempts: 5                 # then the revocation is dead-lettered
        backoff_seconds: 1              # before the 2nd attempt; doubles, up to max_backoff
        max_backoff_seconds: 30

Who delivers: each target has its own consumer group on ``authz.revocations``
(``<group_id>.webhook.<name>``) in which every worker is a member, so Kafka gives each partition
to exactly one worker, and a crashed worker's partitions move to another. Offsets are committed
after every revocation of a fetched batch is delivered or dead-lettered: at least once, with
duplicates only after a crash or rebalance (receivers deduplicate by ``webhook-id``, the
revocation id, which is the same for a replayed revocation). A new group starts at the end of
the topic (no flood of old revocations). Targets are independent: a failing one delays only its
own deliveries. The body is the revocation's JSON (as ``vigil tail`` prints it), signed as
`streams.web.signature` describes; order between revocations is not guaranteed.

After ``max_attempts`` the revocation goes to the dead-letter topic (a DeadLetter record, error
``webhook``, with the reason and the original revocation bytes, topic, partition and offset)
and ``vigil_webhook_deadletters_total{target}`` counts it. Nothing here is awaited by the
pipeline: deliveries run in their own tasks with their own clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams import metrics
from streams.codecs import OutputEncoder
from streams.kafka.group import commit_start
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.web.revocations import RevocationFilter, decode_revocation
from streams.web.signature import secret_key, sign

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 1000
#: aiokafka's max_poll_interval: the longest retry schedule of a batch must stay well below it
MAX_POLL_INTERVAL_MS = 600_000
MAX_SCHEDULE_SECONDS = 300


class WebhookFileError(ValueError):
    """The webhook file cannot be used as given (message names the file and the problem)."""


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal: list[str] = Field(default_factory=list)
    principal_type: str = Field(default="user", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    session_id: list[str] = Field(default_factory=list)
    grant_id: list[str] = Field(default_factory=list)

    _as_list = field_validator("principal", "session_id", "grant_id", mode="before")(_listed)

    def compile(self) -> RevocationFilter:
        return RevocationFilter.of(
            self.principal, self.principal_type, self.session_id, self.grant_id
        )


class WebhookTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    url: str = Field(pattern=r"^https?://[^\s]+$")
    secret: str = Field(repr=False)
    filter: _Filter = Field(default_factory=_Filter)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_seconds: float = Field(default=1.0, gt=0, le=60)
    max_backoff_seconds: float = Field(default=30.0, gt=0, le=300)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        secret_key(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _bounded_schedule(self) -> WebhookTarget:
        if self.schedule_seconds() > MAX_SCHEDULE_SECONDS:
            raise ValueError(
                f"max_attempts x (timeout + backoff) exceeds {MAX_SCHEDULE_SECONDS}s: "
                "a revocation would wait too long for its dead letter"
            )
        return self

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))

    def schedule_seconds(self) -> float:
        """The longest time one revocation can spend on its attempts and waits."""
        waits = sum(self.backoff(a) for a in range(1, self.max_attempts))
        return self.max_attempts * self.timeout_seconds + waits


class _WebhookFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhooks: list[WebhookTarget] = Field(min_length=1)


def load_webhooks(path: Path) -> list[WebhookTarget]:
    try:
        parsed = _WebhookFile.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise WebhookFileError(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise WebhookFileError(f"{path}: {problems}") from None
    names = [t.name for t in parsed.webhooks]
    if len(set(names)) != len(names):
        raise WebhookFileError(f"{path}: webhook names must be unique")
    return parsed.webhooks


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: AIOKafkaConsumer, target: str) -> None:
        self.consumer = consumer
        self.target = target

    async def on_partitions_revoked(self, revoked: Any) -> None:
        metrics.WEBHOOK_ASSIGNED_PARTITIONS.labels(self.target).set(0)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        assigned = list(assigned)
        await commit_start(self.consumer, assigned)
        metrics.WEBHOOK_ASSIGNED_PARTITIONS.labels(self.target).set(len(assigned))


class WebhookDispatcher:
    """One consumer-group member per target on this worker, and their delivery loops."""

    def __init__(
        self,
        targets: list[WebhookTarget],
        *,
        bootstrap: str,
        group_id: str,
        revocations_topic: str,
        deadletter_topic: str,
        output_format: str = "avro",
        registry_url: str | None = None,
        security: KafkaSecurity = PLAINTEXT,
        concurrency: int = 16,
    ) -> None:
        self.targets = targets
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.revocations_topic = revocations_topic
        self.deadletter_topic = deadletter_topic
        self.registry_url = registry_url
        self.security = security
        fmt: Any = output_format
        self._deadletter_enc = OutputEncoder(
            "DeadLetter", fmt, registry_url=registry_url, topic=deadletter_topic
        )
        self._limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumers: list[AIOKafkaConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", **self.security.client_kwargs()
        )
        await self._producer.start()
        for target in self.targets:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=f"{self.group_id}.webhook.{target.name}",
                enable_auto_commit=False,
                auto_offset_reset="latest",
                fetch_max_wait_ms=10,
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
                max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
                **self.security.client_kwargs(),
            )
            consumer.subscribe(
                [self.revocations_topic], listener=_Assignment(consumer, target.name)
            )
            await consumer.start()
            self._consumers.append(consumer)
            self._tasks.append(asyncio.create_task(self._run(target, consumer)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in self._consumers:
            await consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._session is not None:
            await self._session.close()

    async def _run(self, target: WebhookTarget, consumer: AIOKafkaConsumer) -> None:
        flt = target.filter.compile()
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000, max_records=100)
                if not batch:
                    continue
                await asyncio.gather(
                    *(
                        self._handle(target, flt, record)
                        for records in batch.values()
                        for record in records
                    )
                )
                await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker outage, rebalance: fetch again from the commit
                log.warning(
                    "webhook %s: %s; fetching again from the committed offsets", target.name, exc
                )
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    for tp in consumer.assignment():
                        committed = await consumer.committed(tp)
                        if committed is not None:
                            consumer.seek(tp, committed)

    async def _handle(
        self, target: WebhookTarget, flt: RevocationFilter, record: ConsumerRecord[Any, Any]
    ) -> None:
        revocation = decode_revocation(record, self.registry_url)
        if revocation is None:
            if record.value is not None:
                await self._dead_letter(target, record, "not a decodable revocation")
            return
        if not flt.matches(revocation):
            return
        async with self._limit:
            problem = await self._deliver(target, revocation)
        if problem is not None:
            await self._dead_letter(
                target,
                record,
                f"webhook {target.name}: {problem} after {target.max_attempts} attempts",
            )

    async def _deliver(self, target: WebhookTarget, revocation: dict[str, Any]) -> str | None:
        """Try until accepted (2xx) or out of attempts; return the last problem, or None."""
        assert self._session is not None
        body = orjson.dumps(revocation)
        msg_id = str(revocation.get("revocation_id") or revocation["grant_id"])
        problem = "not attempted"
        for attempt in range(1, target.max_attempts + 1):
            headers = {"content-type": "application/json", **sign(target.secret, msg_id, body)}
            try:
                async with self._session.post(
                    target.url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=target.timeout_seconds),
                    allow_redirects=False,
                ) as response:
                    if 200 <= response.status < 300:
                        metrics.WEBHOOK_DELIVERIES.labels(target.name, "delivered").inc()
                        return None
                    problem = f"HTTP {response.status}"
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"[:200]
            metrics.WEBHOOK_DELIVERIES.labels(target.name, "failed").inc()
            if attempt < target.max_attempts:
                await asyncio.sleep(target.backoff(attempt))
        return problem

    async def _dead_letter(
        self, target: WebhookTarget, record: ConsumerRecord[Any, Any], reason: str
    ) -> None:
        """Raises if the dead letter cannot be produced: the batch is then fetched again."""
        assert self._producer is not None
        value = self._deadletter_enc.encode(
            {
                "reason": reason[:MAX_REASON_CHARS],
                "error": "webhook",
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": record.key,
                "value": record.value or b"",
                "received_at": int(time.time() * 1000),
            }
        )
        await self._producer.send_and_wait(
            self.deadletter_topic, value, key=record.key, headers=self._deadletter_enc.headers
        )
        metrics.WEBHOOK_DEADLETTERS.labels(target.name).inc()
        log.error("%s (dead-lettered)", reason)
