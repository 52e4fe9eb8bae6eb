"""The one place that knows Tansu's broker bugs; everything else asks here for log-end offsets.

Tansu 0.6 answers ListOffsets(latest) with *base offset of the partition's last record batch + 1*
instead of the log end: after five 100-record batches (offsets 0-499) it says 401. Fetch
responses carry the correct high watermark (500). Anything that trusts ListOffsets (aiokafka's
``end_offsets()``, faust table recovery, lag metrics, "read to the end" loops) stops one batch
short. Real Kafka does not have the bug; the code below is exact on both.

Further measured Tansu behaviour that this module works around:

* A Fetch with ``max_wait_ms=0`` gets a response with *no partitions at all* (not even the high
  watermark), so the probe below waits up to ``PROBE_MAX_WAIT_MS`` and asks for ``min_bytes=1``
  at an offset that is known to hold a record, which returns at once.
* Per-partition ``max_bytes`` is ignored: a fetch returns whole batches from the fetch offset to
  the end. Probing at the last batch keeps that to one batch per partition.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError, for_code
from aiokafka.protocol.fetch import FetchRequest

#: Broker-side wait of the probe fetch. Never 0 (Tansu then returns an empty response); the probe
#: asks at an offset that holds data, so it normally returns immediately anyway.
PROBE_MAX_WAIT_MS = 500
PROBE_ATTEMPTS = 5
READ_UNCOMMITTED = 0

Handler = Callable[[ConsumerRecord[Any, Any]], Awaitable[None] | None]


async def end_offsets(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """True log-end offsets (high watermarks) of ``partitions``, on Tansu and on real Kafka.

    ListOffsets gives a lower bound ``L``. For every partition with ``L > 0`` one Fetch at
    ``L - 1`` (a record exists there on both brokers) returns the true high watermark in its
    header; the result is ``max(L, hw)``. ``L == 0`` means an empty partition on both brokers.

    Works with any started consumer, grouped or assigned, and leaves its assignment, positions
    and buffered records untouched: the probe goes through the consumer's network client as a
    separate request (``consumer._client``, aiokafka's private attribute; aiokafka is pinned
    below 0.15). Offsets are read-uncommitted high watermarks, not last stable offsets.
    """
    parts = list(dict.fromkeys(partitions))
    if not parts:
        return {}
    listed: dict[TopicPartition, int] = await consumer.end_offsets(parts)
    result = dict(listed)
    probe = {tp: off - 1 for tp, off in listed.items() if off > 0}
    if probe:
        for tp, hw in (await _probe_high_watermarks(consumer, probe)).items():
            result[tp] = max(result[tp], hw)
    return result


async def _probe_high_watermarks(
    consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Fetch once at ``offsets`` per partition leader and return the high watermark of each."""
    client = consumer._client
    pending = dict(offsets)
    found: dict[TopicPartition, int] = {}
    last_error: BaseException | None = None
    for attempt in range(PROBE_ATTEMPTS):
        if attempt:
            await client.force_metadata_update()
            await asyncio.sleep(0.1 * attempt)
        by_node: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for tp, offset in pending.items():
            node = client.cluster.leader_for_partition(tp)
            if node is None or node < 0:
                last_error = KafkaError(f"no leader known for {tp}")
                continue
            by_node[node][tp.topic].append((tp.partition, offset, 1))
        results = await asyncio.gather(
            *(
                client.send(
                    node,
                    FetchRequest(
                        PROBE_MAX_WAIT_MS, 1, 1 << 20, READ_UNCOMMITTED, list(topics.items())
                    ),
                )
                for node, topics in by_node.items()
            ),
            return_exceptions=True,
        )
        for response in results:
            if isinstance(response, BaseException):
                last_error = response
                continue
            for topic, partition_rows in response.topics:
                for partition, error_code, highwater, *_ in partition_rows:
                    tp = TopicPartition(topic, partition)
                    if tp not in pending:
                        continue
                    error = for_code(error_code)
                    if error_code == 0:
                        found[tp] = int(highwater)
                    elif error is OffsetOutOfRangeError:
                        # L-1 is below the log start: everything was deleted, ListOffsets is exact.
                        found[tp] = pending[tp] + 1
                    else:
                        last_error = error(f"probe fetch of {tp} at {pending[tp]}")
                        continue
                    del pending[tp]
        if not pending:
            return found
    raise KafkaError(
        f"cannot read the high watermark of {sorted(pending)} after {PROBE_ATTEMPTS} "
        f"attempts: {last_error!r}"
    )


async def read_to_end(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    handler: Handler,
    *,
    start: Mapping[TopicPartition, int] | None = None,
    timeout: float | None = None,
    max_records: int = 1000,
    progress: Callable[[dict[TopicPartition, int]], None] | None = None,
) -> dict[TopicPartition, int]:
    """Replay ``partitions`` from ``start`` (default: the beginning) to their *true* end.

    For a dedicated consumer that is not in a consumer group (e.g. changelog recovery): the
    consumer is assigned exactly ``partitions``, replacing any previous assignment. ``handler``
    (sync or async) gets every record in offset order per partition. The end is fixed when the
    call starts (``end_offsets`` above, so Tansu's short ListOffsets cannot stop it one batch
    early); records appended meanwhile may be delivered too if they share a fetch. Returns the
    position of each partition afterwards (>= its end), so the caller can continue from there.
    Raises ``TimeoutError`` if ``timeout`` seconds pass first. ``progress`` (optional) gets the
    records still to read per unfinished partition, at the start and after every fetch.
    """
    parts = list(dict.fromkeys(partitions))
    if not parts:
        return {}
    consumer.assign(parts)
    ends = await end_offsets(consumer, parts)
    if start is None:
        await consumer.seek_to_beginning(*parts)
    else:
        begins = await consumer.beginning_offsets([tp for tp in parts if tp not in start])
        for tp in parts:
            consumer.seek(tp, start[tp] if tp in start else begins[tp])
    positions = {tp: await consumer.position(tp) for tp in parts}
    remaining = {tp for tp in parts if positions[tp] < ends[tp]}
    consumer.pause(*(tp for tp in parts if tp not in remaining))
    if progress is not None:
        progress({tp: ends[tp] - positions[tp] for tp in remaining})
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while remaining:
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                behind = {tp: (positions[tp], ends[tp]) for tp in remaining}
                raise TimeoutError(f"read_to_end: not at end after {timeout}s: {behind}")
            batch = await consumer.getmany(
                *remaining, timeout_ms=int(wait * 1000), max_records=max_records
            )
            for records in batch.values():
                for record in records:
                    result = handler(record)
                    if inspect.isawaitable(result):
                        await result
            for tp in list(remaining):
                positions[tp] = await consumer.position(tp)
                if positions[tp] >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            if progress is not None:
                progress({tp: ends[tp] - positions[tp] for tp in remaining})
    finally:
        consumer.resume(*parts)
    return {tp: await consumer.position(tp) for tp in parts}
