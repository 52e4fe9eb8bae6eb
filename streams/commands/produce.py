"""``vigil produce TOPIC``: JSON lines on stdin → Kafka records keyed by subject.

The key is always derived from the record (``subject`` or ``principal`` → ``type:id``), so
hand-written input lands on the same partition as the worker's own traffic for that subject. A
line without a subject is refused: workers dead-letter unkeyed records (reason ``key-mismatch``).
The record timestamp is left to the producer client (the time of sending): workers merge their
input topics by it, and a line's own ``event_time`` may be far in the past.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from typing import IO, Any, Literal

import click
from aiokafka import AIOKafkaProducer

from streams.commands.common import (
    broker_option,
    err,
    kafka_security,
    load_settings,
    start_client,
)
from streams.kafka.acked import JSON_HEADERS
from streams.settings import Settings


def derive_key(record: Mapping[str, Any]) -> str | None:
    """``subject`` {type,id} → ``type:id``; else ``principal`` {type?,id} (type default ``user``)."""
    subject = record.get("subject")
    if isinstance(subject, Mapping) and subject.get("id") is not None and subject.get("type"):
        return f"{subject['type']}:{subject['id']}"
    if isinstance(subject, str) and ":" in subject:  # decisions/revocations carry the key itself
        return subject
    principal = record.get("principal")
    if isinstance(principal, Mapping) and principal.get("id") is not None:
        return f"{principal.get('type') or 'user'}:{principal['id']}"
    return None


def kind_for_topic(topic: str, settings: Settings) -> str:
    """The Avro record kind a topic carries: by configured name first, then by naming pattern.

    The pattern fallback (``signals.*``, ``authz.grants*``, ...) lets suffixed test topics and
    renamed deployments work without a flag.
    """
    exact = {
        settings.topic_deadletter: "DeadLetter",
        settings.topic_grants: "GrantEvent",
        settings.topic_decisions: "Decision",
        settings.topic_revocations: "Revocation",
        **dict.fromkeys(settings.signal_topics, "Signal"),
    }
    if topic in exact:
        return exact[topic]
    for prefix, kind in (
        ("signals.deadletter", "DeadLetter"),
        ("signals.", "Signal"),
        ("authz.grants", "GrantEvent"),
        ("authz.decisions", "Decision"),
        ("authz.revocations", "Revocation"),
    ):
        if topic.startswith(prefix):
            return kind
    raise click.UsageError(
        f"cannot tell which record kind topic {topic!r} carries; pass --kind "
        "(Signal, GrantEvent, Decision, Revocation, DeadLetter)"
    )


async def _read_line(stream: IO[bytes]) -> bytes:
    """Read one line without blocking the event loop (the producer sends in the background)."""
    return await asyncio.get_running_loop().run_in_executor(None, stream.readline)


async def produce_lines(
    stream: IO[bytes],
    topic: str,
    settings: Settings,
    fmt: Literal["json", "avro"],
    kind: str | None,
) -> tuple[int, int]:
    """Produce every JSON line of ``stream``; return ``(produced, errors)``. Bad lines are skipped."""
    encoder: Any = None
    if fmt == "avro":
        from streams.codecs import OutputEncoder  # lazy: codecs load every schema on import

        try:
            encoder = OutputEncoder(
                kind or kind_for_topic(topic, settings),  # type: ignore[arg-type]
                "avro",
                settings.schema_registry_url,
                topic,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        linger_ms=5,
        **kafka_security(settings).client_kwargs(),
    )
    await start_client(producer, settings)
    errors = 0
    pending: list[tuple[int, asyncio.Future[Any]]] = []
    try:
        lineno = 0
        while line := await _read_line(stream):
            lineno += 1
            text = line.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                err(f"line {lineno}: not JSON ({exc}); skipped")
                errors += 1
                continue
            if not isinstance(record, dict):
                err(f"line {lineno}: not a JSON object; skipped")
                errors += 1
                continue
            key = derive_key(record)
            if key is None:
                err(
                    f"line {lineno}: no subject key (a signal needs subject {{type, id}}, a grant "
                    "event a principal {id}); skipped"
                )
                errors += 1
                continue
            if encoder is None:
                value, headers = text, JSON_HEADERS
            else:
                try:
                    value, headers = encoder.encode(record), encoder.headers
                except Exception as exc:  # codecs.EncodeError, or a shape fastavro rejects
                    err(f"line {lineno}: cannot encode as Avro: {exc}; skipped")
                    errors += 1
                    continue
            future = await producer.send(
                topic,
                value,
                key=key.encode(),
                headers=headers,
            )
            pending.append((lineno, future))
        await producer.flush()
        produced = 0
        for lineno, future in pending:
            try:
                await future
                produced += 1
            except Exception as exc:
                err(f"line {lineno}: not produced: {exc}")
                errors += 1
        return produced, errors
    finally:
        await producer.stop()


@click.command("produce")
@broker_option
@click.argument("topic")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "avro"]),
    default="json",
    show_default=True,
    help="json: each line sent as-is with content-type application/json. avro: encoded with "
    "the topic's schema (signals.* → Signal, authz.grants → GrantEvent).",
)
@click.option(
    "--kind",
    type=click.Choice(["Signal", "GrantEvent", "Decision", "Revocation", "DeadLetter"]),
    default=None,
    help="Avro record kind, when the topic name does not tell.",
)
def command(broker: str | None, topic: str, fmt: Literal["json", "avro"], kind: str | None) -> None:
    """Produce JSON lines from stdin to TOPIC, keyed by subject (``type:id``).

    Lines that are not JSON objects are reported on stderr with their line number and skipped;
    the exit code is then 1, after every good line has been produced and flushed.
    """
    settings = load_settings(broker)
    produced, errors = asyncio.run(produce_lines(sys.stdin.buffer, topic, settings, fmt, kind))
    err(f"produced {produced} record(s) to {topic}" + (f", {errors} error(s)" if errors else ""))
    if errors:
        sys.exit(1)
