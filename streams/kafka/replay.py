"""Bulk replay of partitions to their end with raw Fetch requests (changelog restore).

A restore reads every record of its changelog partitions once and then stops; nothing follows
the topic afterwards. Measured on the embedded broker (docs/performance.md "Memory and restore"),
the consumer path (``read_to_end``: aiokafka's fetcher, a ``ConsumerRecord`` per record, one
partition after another) spent most of its wall time idle, waiting for one fetch at a time. Here:

* every partition has its own fetch loop, all running at once, so the broker serves one
  partition while the caller applies another's records;
* a response's record batches are parsed by aiokafka's C record reader and handed over as they
  are (objects with ``offset``, ``key``, ``value``): no ``ConsumerRecord``, no per-record
  deserializer calls, no position bookkeeping per record;
* the end of each partition is fixed at the start with ``end_offsets`` (the true high watermark,
  see ``streams.kafka.quirks``), so Tansu's short ListOffsets cannot stop it early.

Readers that keep following a topic after catching up use ``quirks.read_to_end`` instead: they
need the consumer positioned at the end. Batch CRCs are checked; control batches are skipped;
reads are read-uncommitted (the changelog is written without transactions).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CorruptRecordException, KafkaError, OffsetOutOfRangeError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from streams.kafka.quirks import READ_UNCOMMITTED, end_offsets

#: Bytes asked per partition and per response (real Kafka honours both; Tansu 0.6 ignores the
#: per-partition limit and answers a few MiB per request).
PARTITION_FETCH_BYTES = 8 * 1024 * 1024
RESPONSE_FETCH_BYTES = 32 * 1024 * 1024
#: Broker-side wait when a partition has nothing new yet (it has: the end is behind us).
FETCH_MAX_WAIT_MS = 100
#: Consecutive failed fetches of one partition (leader moves, broker hiccups) before giving up.
FETCH_ATTEMPTS = 8


class Record(Protocol):
    """One record as aiokafka's record reader yields it."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


#: Called with a partition and the records of one record batch of it, in offset order.
Apply = Callable[[TopicPartition, Sequence[Record]], None]


async def replay(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    apply: Apply,
    *,
    start: Mapping[TopicPartition, int] | None = None,
    progress: Callable[[dict[TopicPartition, int]], None] | None = None,
    timeout: float | None = None,
) -> dict[TopicPartition, int]:
    """Read ``partitions`` from ``start`` (default: the log start) to their end, concurrently.

    ``consumer`` is any started consumer: only its network client is used (its assignment and
    positions are left alone). ``apply`` runs synchronously for the records of each record
    batch, with a turn of the event loop after each. ``progress`` gets the records still to read per unfinished partition, at the start
    and after every response. Returns the position reached per partition (>= its end at the
    start). Raises ``KafkaError`` when a partition keeps failing, ``TimeoutError`` after
    ``timeout`` seconds.
    """
    parts = list(dict.fromkeys(partitions))
    if not parts:
        return {}
    ends = await end_offsets(consumer, parts)
    starts = dict(start or {})
    missing = [tp for tp in parts if tp not in starts]
    if missing:
        starts.update(await consumer.beginning_offsets(missing))
    positions = {tp: starts[tp] for tp in parts}

    def report() -> None:
        if progress is not None:
            progress({tp: ends[tp] - positions[tp] for tp in parts if positions[tp] < ends[tp]})

    async def one(tp: TopicPartition) -> None:
        failures = 0
        while positions[tp] < ends[tp]:
            try:
                batches, next_offset = await _fetch(consumer, tp, positions[tp])
            except OffsetOutOfRangeError:
                # below the log start (retention deleted it): go on from the first record kept
                first = (await consumer.beginning_offsets([tp]))[tp]
                if first <= positions[tp]:
                    raise
                positions[tp] = first
                continue
            except KafkaError:
                failures += 1
                if failures >= FETCH_ATTEMPTS:
                    raise
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1 * failures)
                continue
            failures = 0
            begin = positions[tp]
            for batch in batches:
                records = [r for r in batch if r.offset >= begin]
                if records:
                    apply(tp, records)
                # A response can hold a whole partition (Tansu ignores the byte limits): give the
                # event loop a turn after every batch (health checks, heartbeats, other loops).
                await asyncio.sleep(0)
            positions[tp] = max(positions[tp], next_offset)
            report()

    report()
    tasks = [asyncio.ensure_future(one(tp)) for tp in parts]
    try:
        done = asyncio.gather(*tasks)
        await (done if timeout is None else asyncio.wait_for(done, timeout))
    finally:
        for task in tasks:
            task.cancel()
    return positions


async def _fetch(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
) -> tuple[list[Any], int]:
    """One Fetch of ``tp`` at ``offset``: its data record batches (CRC checked, records not
    parsed yet; the first may start before ``offset``) and the offset to fetch next (past the
    last batch, control batches included)."""
    client = consumer._client
    node = client.cluster.leader_for_partition(tp)
    if node is None or node < 0:
        raise KafkaError(f"no leader known for {tp}")
    request = FetchRequest(
        FETCH_MAX_WAIT_MS,
        1,
        RESPONSE_FETCH_BYTES,
        READ_UNCOMMITTED,
        [(tp.topic, [(tp.partition, offset, PARTITION_FETCH_BYTES)])],
    )
    started = time.monotonic()
    response: Any = await client.send(node, request)
    batches: list[Any] = []
    next_offset = offset
    for _topic, rows in response.topics:
        for partition, error_code, _highwater, *data in rows:
            if partition != tp.partition:
                continue
            if error_code:
                raise for_code(error_code)(f"fetch of {tp} at {offset}")
            fetched = MemoryRecords(data[-1])
            while fetched.has_next():
                batch = fetched.next_batch()
                if batch is None:
                    break  # a partial batch at the end of the response: fetched again next time
                if not batch.validate_crc():
                    raise CorruptRecordException(f"invalid CRC in {tp} at {offset}")
                next_offset = max(next_offset, batch.next_offset)
                if not batch.is_control_batch:
                    batches.append(batch)
    if next_offset == offset and time.monotonic() - started < FETCH_MAX_WAIT_MS / 1000 / 2:
        await asyncio.sleep(FETCH_MAX_WAIT_MS / 1000)  # an empty answer at once: do not spin
    return batches, next_offset
