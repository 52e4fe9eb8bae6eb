"""A per-worker view of a whole topic: every partition, read without a consumer group to its end
(then ``ready``) and followed from there, one record at a time. The signal replica of the check
API and the Shared Signals lookup tables are built on it; each worker keeps its own copy, so any
worker can answer for any subject."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.quirks import read_to_end
from streams.kafka.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

#: Records applied per step of the follow loop before the event loop is free again: the check
#: API shares the loop, and a changelog burst must not hold it (docs/performance.md).
FOLLOW_BATCH = 250


class TopicFollower:
    """Subclasses implement ``_apply(record)``; ``following`` is False while catching up."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        security: KafkaSecurity = PLAINTEXT,
        fetch_max_wait_ms: int = 10,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.ready = asyncio.Event()  # set once every partition was read to its end
        self.following = False
        self.partitions = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def _apply(self, record: Any) -> None:
        raise NotImplementedError

    def _applied_batch(self, records: int) -> None:
        """After each followed fetch (e.g. to set a gauge once per batch, not per record)."""

    def _new_consumer(self, fetch_max_wait_ms: int | None = None) -> AIOKafkaConsumer:
        """A group-less consumer of this topic's cluster (also for one-off reads back)."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms or self.fetch_max_wait_ms,
            **self.security.client_kwargs(),
        )

    async def _start_offsets(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int] | None:
        """Where catching up begins per partition; None: at the beginning."""
        return None

    def _catching_up(self, remaining: dict[TopicPartition, int]) -> None:
        """While catching up: at the start and after each fetch (``remaining``: records still
        to read per unfinished partition), e.g. to write what the fetch brought in one batch."""

    def _caught_up(self, positions: dict[TopicPartition, int]) -> None:
        """Called once every partition was read to its end (``positions``: next offsets)."""

    async def start(self, timeout: float = 30.0) -> None:
        """Assign every partition (waiting up to ``timeout`` for the topic to have some), read
        them to their end, set ``ready`` and keep following in the background."""
        consumer = self._consumer = self._new_consumer()
        await consumer.start()
        deadline = time.monotonic() + timeout
        found = consumer.partitions_for_topic(self.topic)
        while not found:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {self.topic} has no partitions")
            await consumer.force_metadata_update()
            found = consumer.partitions_for_topic(self.topic)
            if not found:
                await asyncio.sleep(0.2)
        self.partitions = len(found)
        tps = [TopicPartition(self.topic, p) for p in sorted(found)]
        consumer.assign(tps)
        start = await self._start_offsets(consumer, tps)
        positions = await read_to_end(
            consumer, tps, self._apply_safely, start=start, progress=self._catching_up
        )
        self._caught_up(positions)
        self.following = True
        self.ready.set()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def _apply_safely(self, record: Any) -> None:
        try:
            self._apply(record)
        except Exception:  # one unreadable record must not stop the view
            log.exception("%s: record at offset %d unreadable", self.topic, record.offset)

    async def _follow(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000, max_records=FOLLOW_BATCH)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker hiccup: the consumer reconnects by itself
                log.warning("%s: fetch failed (%s); retrying", self.topic, exc)
                await asyncio.sleep(0.5)
                continue
            count = 0
            for records in batch.values():
                for record in records:
                    self._apply_safely(record)
                count += len(records)
            if count:
                self._applied_batch(count)
                # getmany returns at once while records are buffered: free the loop between
                await asyncio.sleep(0)
