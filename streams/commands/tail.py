"""``vigil tail TOPIC``: print a topic's records as JSON lines (Avro or JSON in, JSON out).

No consumer group: partitions are assigned directly, so tailing never rebalances or commits for
the workers' group. "Start at the end" uses ``quirks.end_offsets``; on Tansu the plain
ListOffsets answer would replay the last batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.commands.common import (
    broker_option,
    bytes_to_text,
    dumps_line,
    err,
    kafka_security,
    load_settings,
    start_client,
    write_stdout_line,
)
from streams.kafka.quirks import end_offsets
from streams.settings import Settings

POLL_MS = 200


def render(
    record: ConsumerRecord[bytes, bytes], meta: bool, registry_url: str | None
) -> str | None:
    """One output line for ``record``, or None (after a note on stderr) if it cannot be decoded."""
    from streams.codecs import DecodeError, decode_any  # lazy: loads every schema on import

    headers = list(record.headers or ())
    kind: str | None = None
    error: str | None = None
    value: Any
    try:
        if record.value is None:
            raise DecodeError("tombstone (null value)")
        kind, value = decode_any(record.value, headers, registry_url)
    except DecodeError as exc:
        error = str(exc)
        err(f"{record.topic}[{record.partition}]@{record.offset}: cannot decode: {error}")
        if not meta:
            return None
        value = None if record.value is None else bytes_to_text(record.value)
    if not meta:
        return dumps_line(value)
    wrapped: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": None if record.key is None else bytes_to_text(record.key),
        "headers": {name: bytes_to_text(bytes(v)) for name, v in headers},
        "kind": kind,
        "value": value,
    }
    if error is not None:
        wrapped["error"] = error
    return dumps_line(wrapped)


async def _partitions(
    consumer: AIOKafkaConsumer, topic: str, deadline: float | None
) -> list[TopicPartition] | None:
    """The topic's partitions, waiting for the topic to appear (None if the deadline passes)."""
    told = False
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if deadline is not None and time.monotonic() >= deadline:
            return None
        if not told:
            err(f"waiting for topic {topic} to exist")
            told = True
        await asyncio.sleep(0.5)
        await consumer._client.force_metadata_update()


async def tail_topic(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    timeout: float | None = None,
    max_messages: int | None = None,
    partition: int | None = None,
    meta: bool = False,
) -> int:
    """Print records until ``max_messages`` or ``timeout`` idle seconds; return how many printed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **kafka_security(settings).client_kwargs(),
    )
    await start_client(consumer, settings)
    printed = 0
    try:
        idle_deadline = None if timeout is None else time.monotonic() + timeout
        tps = await _partitions(consumer, topic, idle_deadline)
        if tps is None:
            raise click.ClickException(f"topic {topic} does not exist (waited {timeout}s)")
        if partition is not None:
            tps = [tp for tp in tps if tp.partition == partition]
            if not tps:
                raise click.UsageError(f"topic {topic} has no partition {partition}")
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp, offset in (await end_offsets(consumer, tps)).items():
                consumer.seek(tp, offset)
            for tp in tps:  # resolve positions now, so "ready" below really means ready
                await consumer.position(tp)
        start = "the beginning" if from_beginning else "the end"
        err(f"tailing {topic} ({len(tps)} partition(s)) from {start}")
        while max_messages is None or printed < max_messages:
            wait = POLL_MS / 1000
            if idle_deadline is not None:
                wait = min(wait, idle_deadline - time.monotonic())
                if wait <= 0:
                    break
            limit = None if max_messages is None else max_messages - printed
            batch = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=limit)
            records = [r for rs in batch.values() for r in rs]  # offset order per partition
            for record in records:
                line = render(record, meta, settings.schema_registry_url)
                if line is not None:
                    if not write_stdout_line(line):
                        return printed  # reader went away (| head)
                    printed += 1
            if records and timeout is not None:
                idle_deadline = time.monotonic() + timeout
        return printed
    finally:
        await consumer.stop()


@click.command("tail")
@broker_option
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the end.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds without a new record (default: run until Ctrl-C).",
)
@click.option(
    "--max", "max_messages", type=click.IntRange(min=1), default=None, help="Stop after N."
)
@click.option("--partition", type=click.IntRange(min=0), default=None, help="Only this partition.")
@click.option(
    "--meta",
    is_flag=True,
    help="Wrap each value with topic, partition, offset, timestamp, key, headers and kind.",
)
def command(
    broker: str | None,
    topic: str,
    from_beginning: bool,
    timeout: float | None,
    max_messages: int | None,
    partition: int | None,
    meta: bool,
) -> None:
    """Print TOPIC's records as JSON, one per line (pipe into ``jq``).

    Values are decoded from Avro or JSON; bytes fields (a dead letter's original ``value``) are
    printed as text if they are UTF-8, else base64. Undecodable records are reported on stderr
    (and printed raw with --meta).
    """
    settings = load_settings(broker)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            tail_topic(
                settings,
                topic,
                from_beginning=from_beginning,
                timeout=timeout,
                max_messages=max_messages,
                partition=partition,
                meta=meta,
            )
        )
