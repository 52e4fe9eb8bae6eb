"""The Kafka side of the pipeline: a consumer-group loop that feeds ``Pipeline`` whole batches.

Order of effects per batch (invariant 2, nothing lost, replays idempotent):

1. decisions, revocations and dead letters are produced and acknowledged;
2. then the changed subject states go to the changelog and are acknowledged;
3. then state, input offsets and the changelog offset are written to RocksDB in one batch;
4. then, in the background every ``commit_interval_s``, the consumer offsets are committed (for
   lag tools and empty-data-dir restarts; a worker resumes from the positions in RocksDB).

A crash before 3 replays the batch over the old state: the same deterministic decision and
revocation ids come out again. A crash between 2 and 3 restores the new state from the
changelog, and the replayed events are then duplicates that change nothing.

An outage (schema registry or broker unreachable, see ``outage.py``) fails a batch before 3 as
well; the worker does not exit: it seeks back to the batch's first offsets, backs off, and
processes the same records again (the same ids again, so re-sent outputs are duplicates).

Partition numbers are the unit of ownership: input partition *p* of every input topic, changelog
partition *p* and the RocksDB store ``p<p>`` belong together (the range assignor keeps
same-numbered partitions of equally partitioned topics on one member).

Order (invariant 9): fetched records wait in a ``PartitionMerger`` per partition number, which
hands them out in offset order per topic and merged by Kafka timestamp across the topics
(``streams.processing.merge``). Only applied records count for offsets: a record still buffered
at a crash or a rebalance is fetched again from the stored position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from streams import metrics
from streams.bundles.watcher import BundleWatcher, Offer
from streams.kafka.lag import fetch_state, has_unfetched
from streams.kafka.replay import Record, replay
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.processing.fetch_trace import FetchTrace
from streams.processing.lag_metrics import LagGauges
from streams.processing.merge import PartitionMerger
from streams.processing.outage import TRANSIENT_ERRORS, Outages, probe_broker
from streams.processing.pipeline import Pipeline
from streams.processing.records import BatchResult, InRecord, OutRecord
from streams.processing.switch import GuardLimits, PendingSwitch
from streams.state.counting import StateCount
from streams.state.replica import partition_of
from streams.state.store import (
    CHANGELOG_OFFSET,
    GRANT_PREFIX,
    SIGNAL_PREFIX,
    PartitionStore,
    offset_key,
    open_store,
)

log = logging.getLogger(__name__)

#: Changelog records restored per RocksDB write (bounds the memory a restore holds; see _restore).
RESTORE_WRITE_RECORDS = 10_000
#: Subjects the background sweep handles between two yields to the event loop: the check API
#: runs on the same loop, and a check waits for at most one chunk (docs/performance.md).
SWEEP_CHUNK = 25
#: Chunks per sweep step with a yield after each; the rest of a larger budget goes in one piece.
SWEEP_YIELDS = 4
#: Keys whose partition ``KeyPartitions`` remembers (forgotten all at once beyond it): a few
#: batches' worth of subscription records, a few MB at most.
KEY_PARTITIONS_KEPT = 16_384


class KeyPartitions:
    """``partition_of`` remembered: murmur2 is pure Python (µs per key) and a pure function of
    the key bytes, and a grant's subscription records name the same few subjects again and
    again (each of a subject's grants subscribes to its device; each subscribe is answered)."""

    def __init__(self, kept: int = KEY_PARTITIONS_KEPT) -> None:
        self._kept = kept
        self._known: dict[int, dict[bytes, int]] = {}  # partition count -> {key: partition}

    def of(self, key: bytes, count: int) -> int:
        known = self._known.get(count)
        if known is None:
            known = self._known[count] = {}
        partition = known.get(key)
        if partition is None:
            if len(known) >= self._kept:
                known.clear()
            partition = known[key] = partition_of(key, count)
        return partition


class RunnerConfig:
    """Kafka client tuning for the hot path (see PLATFORM-NOTES: fetch wait is latency)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        input_topics: list[str],
        changelog_topic: str,
        data_dir: Path | None,
        max_batch: int = 2000,
        fetch_max_wait_ms: int = 10,
        linger_ms: int = 0,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        reevaluation_rate: int = 1000,
        commit_interval_s: float = 0.5,
        expiry_sweep_rate: int = 1000,
        guard: GuardLimits | None = None,
        security: KafkaSecurity = PLAINTEXT,
        max_task_idle_ms: int = 500,
        fetch_trace: Path | None = None,
    ) -> None:
        self.fetch_trace = fetch_trace  # a JSON-lines timing trace (streams.processing.fetch_trace)
        self.guard = guard or GuardLimits()
        self.security = security
        self.max_task_idle_ms = max_task_idle_ms
        self.expiry_sweep_rate = expiry_sweep_rate
        self.reevaluation_rate = reevaluation_rate
        self.commit_interval_s = commit_interval_s
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.input_topics = input_topics
        self.changelog_topic = changelog_topic
        self.data_dir = data_dir
        self.max_batch = max_batch
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.linger_ms = linger_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms

    def consumer_tuning(self) -> dict[str, Any]:
        """The group consumer's fetch and session settings (the bench's relay floor, bench/relay.py,
        uses the same: what it measures is what these settings allow)."""
        return {
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "max_partition_fetch_bytes": 4 * 1024 * 1024,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
        }

    def producer_tuning(self) -> dict[str, Any]:
        """The output producer's settings (also the relay floor's)."""
        return {
            "acks": "all",
            "linger_ms": self.linger_ms,
            "max_batch_size": 256 * 1024,
            "max_request_size": 4 * 1024 * 1024,
        }


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: PipelineRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.runner._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.runner._on_assigned(assigned)


class PipelineRunner:
    """Owns the consumer, the producer, the per-partition stores, and the batch loop."""

    def __init__(
        self, config: RunnerConfig, pipeline: Pipeline, watcher: BundleWatcher | None = None
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.stores: dict[int, PartitionStore] = {}
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set after the first assignment has been restored
        self.watcher = watcher
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committer: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        # partition -> last grant key re-evaluated (None: from the start); empty when idle
        self._scans: dict[int, bytes | None] = {}
        self._budget = 0.0
        self._budget_at = time.monotonic()
        # expiry sweep: partition -> last grant key swept; token bucket; partition turn
        self._sweep: dict[int, bytes | None] = {}
        self._sweep_budget = 0.0
        self._sweep_at = time.monotonic()
        self._sweep_turn = 0
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._restorer: AIOKafkaConsumer | None = None
        # partition number -> fetched records not applied yet (see streams.processing.merge)
        self._mergers: dict[int, PartitionMerger] = {}
        self._paused: set[TopicPartition] = set()  # paused because their buffer is full
        # next offset that may be buffered per input partition: a record below it was buffered
        # (or applied) already, whatever a fetch from before a seek or rebalance returns
        self._next_offset: dict[TopicPartition, int] = {}
        self._generation = 0  # bumped by every rebalance: a fetch from before it is dropped
        # Seconds spent waiting for fetches: the merges' idle clock. Time spent processing does
        # not count, or a slow batch of one partition would use up another's wait for its fetch.
        self._poll_clock = 0.0
        self.pending: PendingSwitch | None = None  # a bundle switch the guard evaluates or holds
        self.outages = Outages()
        self._fatal: Exception | None = None  # set by a rebalance callback; run() raises it
        # where each input partition's reading began at its assignment (None: the beginning)
        self._start_position: dict[TopicPartition, int | None] = {}
        self._subjects: dict[int, int] = {}  # partition -> subjects with signal state
        self._grants: dict[int, int] = {}  # partition -> active grants
        # partition -> count of its state as restored, still running (streams.state.counting)
        self._counting: dict[int, StateCount] = {}
        self._lag = LagGauges()
        self._partition_counts: dict[str, int] = {}  # topic -> partitions (records by key)
        self._key_partitions = KeyPartitions()
        self._trace: FetchTrace | None = None
        self._outputs_acked_at = 0.0  # when the last batch's outputs were acknowledged

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        if self.watcher is not None:
            start = await self.watcher.start()
            if start is not None:
                self._use_engine(start)
            else:
                await self.watcher.remember_directory(self.pipeline.engine.digest)
        metrics.POLICY_BUNDLE_INFO.labels(self.pipeline.engine.digest).set(1)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap,
            **cfg.producer_tuning(),
            **cfg.security.client_kwargs(),
        )
        await self.producer.start()
        self._restorer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            **cfg.security.client_kwargs(),
        )
        await self._restorer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **cfg.consumer_tuning(),
            partition_assignment_strategy=(RangePartitionAssignor,),
            **cfg.security.client_kwargs(),
        )
        self.consumer.subscribe(cfg.input_topics, listener=_Rebalance(self))
        await self.consumer.start()
        if cfg.fetch_trace is not None:
            self._trace = FetchTrace(cfg.fetch_trace)
            self._trace.wrap_fetcher(self.consumer)
        self._committer = asyncio.create_task(self._commit_periodically())
        self._prober = asyncio.create_task(probe_broker(self.consumer, self.outages))

    async def stop(self) -> None:
        self._stopping.set()
        if self.watcher is not None:
            await self.watcher.stop()
        for task in (self._committer, self._prober):
            if task is not None:
                task.cancel()
        async with self._lock:
            await self._commit_offsets()
            self._counting.clear()  # releases the snapshots before their stores close
            for client in (self.consumer, self._restorer, self.producer):
                if client is not None:
                    await client.stop()
            for store in self.stores.values():
                store.close()
            self.stores.clear()
            metrics.ASSIGNED_PARTITIONS.set(0)
            if self._trace is not None:
                self._trace.close()

    async def run(self) -> None:
        """Consume and process batches until ``stop()``; between batches, switch to a newer
        policy bundle and re-evaluate grants at the configured rate."""
        assert self.consumer is not None
        while not self._stopping.is_set():
            if self._fatal is not None:
                raise self._fatal
            polled = time.monotonic()
            data = await self.consumer.getmany(
                timeout_ms=self._poll_timeout_ms(), max_records=self.config.max_batch
            )
            self._poll_clock += time.monotonic() - polled
            if self._trace is not None and data:
                self._trace.handover(data)
            self._lag.update(self.consumer)
            # aiokafka returns records of the active assignment only; a rebalance before the
            # lock below makes them stale (positions are set again in _on_assigned)
            generation = self._generation
            if self._stopping.is_set():
                break
            backoff = 0.0
            async with self._lock:
                try:
                    if data and generation == self._generation:
                        self._buffer(data)
                    applied = await self._process() if self._mergers else 0
                    self._maybe_switch_bundle()
                    if self.pending is not None and self.pending.state == "evaluating":
                        self._guard_step()
                    if self._scans:
                        await self._reevaluation_step()
                    await self._expiry_step(yielding=not applied)
                    if self._counting:
                        self._count_step()
                except TRANSIENT_ERRORS as exc:  # an outage: same records again, after a pause
                    self._rewind()
                    self.pipeline.discard_metrics()
                    backoff = self.outages.failed(exc)
            if backoff:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)

    def _rewind(self) -> None:
        """Forget every buffered record and fetch again from the applied positions (stored
        with the state, else where reading began): a batch whose effects were not persisted is
        applied again after the outage. No broker call, so it works during the outage."""
        consumer = self.consumer
        assert consumer is not None
        owned = consumer.assignment()
        self._mergers.clear()
        paused = [tp for tp in self._paused if tp in owned]
        if paused:
            consumer.resume(*paused)
        self._paused.clear()
        for tp in owned:
            store = self.stores.get(tp.partition)
            if store is None:
                continue
            stored = store.get(offset_key(tp.topic))
            position = int(stored) if stored is not None else self._start_position.get(tp)
            # offset 0 before the log start resets to the earliest record (auto_offset_reset)
            self._next_offset[tp] = position or 0
            consumer.seek(tp, position or 0)

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.commit_interval_s)
            await self._commit_offsets()

    async def _commit_offsets(self) -> None:
        """Commit what has been persisted so far (best effort: a failure is retried later)."""
        if not self._uncommitted or self.consumer is None:
            return
        offsets, self._uncommitted = self._uncommitted, {}
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # rebalancing, broker hiccup: positions are safe in RocksDB
            log.warning("offset commit failed (%s); will retry", exc)
            for tp, offset in offsets.items():
                self._uncommitted.setdefault(tp, offset)

    # -- policy bundles -------------------------------------------------------------------

    @property
    def reevaluating(self) -> list[int]:
        """Partitions whose grants are still being re-evaluated after a bundle switch."""
        return sorted(self._scans)

    def _maybe_switch_bundle(self) -> None:
        """Take a newly offered bundle into the blast-radius guard; switch to a held one once
        an operator confirmed its digest."""
        if self.watcher is None:
            return
        offer = self.watcher.poll()
        if offer is not None:
            self._consider(offer)
        pending = self.pending
        held = pending is not None and pending.state == "held"
        if held and pending is not None and pending.offer.digest in self.watcher.confirmed:
            log.warning("held policy bundle %s confirmed; switching", pending.offer.digest)
            self._use_engine(pending.offer)

    def _consider(self, offer: Offer) -> None:
        assert self.watcher is not None
        if self.pending is not None:
            log.warning(
                "policy bundle %s replaces pending %s", offer.digest, self.pending.offer.digest
            )
            self._clear_pending()
        if offer.digest == self.pipeline.engine.digest:
            log.warning("policy bundle %s is the running one: nothing to switch", offer.digest)
            self.watcher.remember_running(offer)
            return
        if offer.digest in self.watcher.confirmed:
            self._use_engine(offer)
            return
        self.pending = PendingSwitch(offer, dict.fromkeys(self.stores))
        log.warning("policy bundle %s: counting the grants it would revoke", offer.digest)

    def _guard_step(self) -> None:
        """Dry-evaluate a chunk of owned grants with the pending bundle; at the end, switch or
        hold (``streams.processing.switch``)."""
        pending = self.pending
        assert pending is not None
        if not self.ready.is_set():
            return  # partitions not restored yet: nothing to count against
        if not pending.step(self.pipeline, self.stores, int(time.time() * 1000)):
            metrics.POLICY_BUNDLE_WOULD_REVOKE.set(pending.would_revoke)
            return
        metrics.POLICY_BUNDLE_WOULD_REVOKE.set(pending.would_revoke)
        if not self.config.guard.holds(pending.would_revoke, pending.active):
            self._use_engine(pending.offer)
            return
        pending.state = "held"
        metrics.POLICY_BUNDLE_HELD.set(1)
        log.error(
            "policy bundle %s HELD: it would revoke %d of %d active grants on this worker "
            "(limits: more than %d grants and more than %.0f%%); nothing revoked, bundle %s "
            "keeps running; confirm with `vigil policy confirm %s` or push another bundle. "
            "Top causes: %s",
            pending.offer.digest,
            pending.would_revoke,
            pending.active,
            self.config.guard.max_revoke_count,
            self.config.guard.max_revoke_share * 100,
            self.pipeline.engine.digest,
            pending.offer.digest,
            pending.report()["by_cause"][:5],
        )

    def _clear_pending(self) -> None:
        self.pending = None
        metrics.POLICY_BUNDLE_HELD.set(0)
        metrics.POLICY_BUNDLE_WOULD_REVOKE.set(0)

    def _use_engine(self, offer: Offer) -> None:
        self._clear_pending()
        engine, source = offer.engine, offer.source
        if self.watcher is not None:
            self.watcher.remember_running(offer)
        old = self.pipeline.engine.digest
        self.pipeline.set_engine(engine)
        metrics.POLICY_BUNDLE_SWITCHES.labels(source).inc()
        with contextlib.suppress(KeyError):
            metrics.POLICY_BUNDLE_INFO.remove(old)
        metrics.POLICY_BUNDLE_INFO.labels(engine.digest).set(1)
        log.warning("policy bundle %s -> %s (%s)", old, engine.digest, source)
        self._scans = dict.fromkeys(self.stores)  # every owned grant, from the start
        metrics.REEVALUATION_PENDING_PARTITIONS.set(len(self._scans))

    async def _expiry_step(self, yielding: bool = True) -> None:
        """Sweep the owned states round-robin at ``expiry_sweep_rate`` subjects/s: per
        partition, first the grant states, so a grant expires, and a grant whose policies read
        the clock is evaluated again, even when its subject sends nothing (``Pipeline.sweep``;
        events expire grants earlier); then, with a state retention, the signal states, whose
        device and session entries no grant named for the retention are pruned
        (``Pipeline.prune``). The budget gathers to at least 100 subjects. In a step that
        applied no records (``yielding``), its first 100 go in chunks of ``SWEEP_CHUNK`` with
        the event loop free between them (a check waits for one chunk, not for the budget);
        the rest of a larger budget, and the whole budget in a step that applied records, go
        in one piece: while signals flow, a yield would make the pipeline wait a whole round
        of queued checks, and an overloaded loop would starve the signals."""
        now = time.monotonic()
        rate = self.config.expiry_sweep_rate
        self._sweep_budget = min(float(rate), self._sweep_budget + (now - self._sweep_at) * rate)
        self._sweep_at = now
        if self._sweep_budget < 100:
            return  # sweep in budgets of at least 100 subjects
        for _ in range(SWEEP_YIELDS if yielding else 0):
            if self._sweep_budget < 1 or not self.stores or self._stopping.is_set():
                return
            await self._expiry_chunk(min(int(self._sweep_budget), SWEEP_CHUNK))
            await asyncio.sleep(0)
        if self._sweep_budget >= 1 and self.stores:
            await self._expiry_chunk(int(self._sweep_budget))

    async def _expiry_chunk(self, limit: int) -> None:
        """One chunk of the sweep: up to ``limit`` subjects of one partition."""
        partitions = sorted(self.stores)
        partition = partitions[self._sweep_turn % len(partitions)]
        store = self.stores[partition]
        last = self._sweep.get(partition)
        pruning = last is not None and last.startswith(SIGNAL_PREFIX)
        prefix = SIGNAL_PREFIX if pruning else GRANT_PREFIX
        after = None if last == SIGNAL_PREFIX else last
        keys = store.keys_after(prefix, after, limit)
        self._sweep_budget -= max(len(keys), 1)
        if not keys:
            if not pruning and self.pipeline.state_retention_ms > 0:
                self._sweep[partition] = SIGNAL_PREFIX  # grant states done: signal states next
                return
            self._sweep[partition] = None  # end of this partition: next one, from the start
            self._sweep_turn += 1
            return
        now_ms = int(time.time() * 1000)
        if pruning:
            result = self.pipeline.prune(keys, store, now_ms)
        else:
            result = self.pipeline.sweep(keys, store, now_ms)
        if result.changed_states or result.outputs:
            await self._commit_effects({partition: result})
        self._sweep[partition] = keys[-1]  # after the effects: an outage retries these keys

    async def _reevaluation_step(self) -> None:
        """Re-evaluate the next few subjects of one partition; the token bucket keeps the rate
        at ``reevaluation_rate`` subjects/s so a switch does not starve live signals."""
        now = time.monotonic()
        rate = self.config.reevaluation_rate
        self._budget = min(float(rate), self._budget + (now - self._budget_at) * rate)
        self._budget_at = now
        limit = int(self._budget)
        if limit < 1:
            await asyncio.sleep(min(0.05, 1.0 / rate))
            return
        partition = next(iter(self._scans))
        store = self.stores.get(partition)
        if store is None:
            del self._scans[partition]
            return
        keys = store.keys_after(GRANT_PREFIX, self._scans[partition], min(limit, 500))
        if not keys:
            del self._scans[partition]
            metrics.REEVALUATION_PENDING_PARTITIONS.set(len(self._scans))
            return
        self._budget -= len(keys)
        result = self.pipeline.reevaluate(keys, store, int(time.time() * 1000))
        await self._commit_effects({partition: result})
        self._scans[partition] = keys[-1]  # after the effects: an outage retries these keys

    # -- one batch ----------------------------------------------------------------------

    def _poll_timeout_ms(self) -> int:
        """How long the next fetch may wait: never past the moment a merge stops waiting for a
        lagging input, and not at all while re-evaluating or counting a pending bundle."""
        if self._scans or self._counting:
            return 0
        if self.pending is not None and self.pending.state == "evaluating":
            return 0
        clock = self._poll_clock
        waits = [w for m in self._mergers.values() if (w := m.wait_left(clock)) is not None]
        if waits:
            return min(100, int(min(waits) * 1000) + 1)
        return 100

    def _buffer(self, data: dict[TopicPartition, list[Any]]) -> None:
        """Queue fetched records per partition number, in offset order, without applying them."""
        for tp, messages in data.items():
            if tp.partition not in self.stores:
                continue  # revoked while fetched
            floor = self._next_offset.get(tp)
            if floor is not None and messages and messages[0].offset < floor:
                # a fetch from before the last seek: never buffer (apply) a record twice
                messages = [m for m in messages if m.offset >= floor]
                if not messages:
                    continue
            self._next_offset[tp] = messages[-1].offset + 1
            merger = self._mergers.get(tp.partition)
            if merger is None:
                # topic order = tie order: signals before grants at equal timestamps
                max_idle_s = self.config.max_task_idle_ms / 1000
                merger = self._mergers[tp.partition] = PartitionMerger(
                    self.config.input_topics, max_idle_s
                )
            merger.add(
                tp.topic,
                (
                    InRecord(
                        tp.topic,
                        tp.partition,
                        m.offset,
                        m.key,
                        m.value,
                        list(m.headers),
                        m.timestamp,
                    )
                    for m in messages
                ),
            )

    async def _process(self) -> int:
        """Apply what the merges release, one batch per partition number, then bound buffers;
        returns how many records were applied."""
        started = time.perf_counter()
        consumer = self.consumer
        assert consumer is not None
        wall = time.time()
        now_ms = int(wall * 1000)
        results: dict[int, BatchResult] = {}
        count = 0
        traced: list[InRecord] = []
        for partition, merger in self._mergers.items():
            gave_up = merger.gave_up
            records = merger.take(
                _unfetched(consumer, partition), self._poll_clock, self.config.max_batch
            )
            if merger.gave_up and not gave_up:
                metrics.MERGE_IDLE_EXPIRED.inc()
                log.warning(
                    "partition %d: an input still lags after max_task_idle_ms=%d; applying the "
                    "others without it (records may apply out of produced order)",
                    partition,
                    self.config.max_task_idle_ms,
                )
            if records:
                count += len(records)
                if self._trace is not None:
                    traced.extend(records)
                results[partition] = self.pipeline.process(records, self.stores[partition], now_ms)
        if results:
            await self._commit_effects(results)
            metrics.BATCH_RECORDS.observe(count)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            if self._trace is not None:
                held = sum(len(m) for m in self._mergers.values())
                self._trace.batch(wall, self._outputs_acked_at, traced, held, self._blocking())
        self._bound_buffers()
        return count

    def _blocking(self) -> list[tuple[str, int, int | None, int | None]]:
        """For the fetch trace: inputs with nothing buffered that hold back a merge with
        records, as (topic, partition, position, fetch high watermark)."""
        consumer = self.consumer
        assert consumer is not None
        out = []
        for partition, merger in self._mergers.items():
            if not len(merger):
                continue
            for topic, buf in merger.buffers.items():
                if buf or not has_unfetched(consumer, TopicPartition(topic, partition)):
                    continue
                out.append(
                    (topic, partition, *fetch_state(consumer, TopicPartition(topic, partition)))
                )
        return out

    def _bound_buffers(self) -> None:
        """Pause fetching a partition whose buffer holds a full batch (it waits on another
        topic's older records); resume it once the merge has taken from it."""
        assert self.consumer is not None
        limit = self.config.max_batch
        pause: list[TopicPartition] = []
        for partition, merger in self._mergers.items():
            for topic in merger.buffers:
                tp = TopicPartition(topic, partition)
                if merger.buffered(topic) >= limit and tp not in self._paused:
                    pause.append(tp)
        resume = [
            tp for tp in self._paused if self._mergers[tp.partition].buffered(tp.topic) < limit
        ]
        assigned = self.consumer.assignment()
        if pause:
            self.consumer.pause(*(tp for tp in pause if tp in assigned))
            self._paused.update(pause)
        if resume:
            self.consumer.resume(*(tp for tp in resume if tp in assigned))
            self._paused.difference_update(resume)

    async def _commit_effects(self, results: dict[int, BatchResult]) -> None:
        """Outputs, then changelog, then RocksDB, then consumer offsets (module docstring)."""
        await self._send_and_wait(
            (partition, out) for partition, res in results.items() for out in res.outputs
        )
        after_send = self._outputs_acked_at = time.time()
        since_event = metrics.SIGNAL_TO_REVOCATION_SECONDS.labels("event_time")
        since_arrival = metrics.SIGNAL_TO_REVOCATION_SECONDS.labels("arrival")
        changelog_offsets = await self._send_changelog(results)
        for partition, res in results.items():
            puts = dict(res.changed_states)
            for topic, offset in res.next_offsets.items():
                puts[offset_key(topic)] = str(offset).encode()
            if partition in changelog_offsets:
                puts[CHANGELOG_OFFSET] = str(changelog_offsets[partition]).encode()
            self.stores[partition].write(puts)
            for ts in res.signal_timestamps:
                metrics.SIGNAL_LAG_SECONDS.observe(max(0.0, after_send - ts / 1000))
            for event_time, arrival in res.revocation_causes:
                since_event.observe(max(0.0, after_send - event_time / 1000))
                if arrival >= 0:
                    since_arrival.observe(max(0.0, after_send - arrival / 1000))
            if res.new_subjects:
                self._subjects[partition] = self._subjects.get(partition, 0) + res.new_subjects
            if res.active_grants_delta:
                held = self._grants.get(partition, 0) + res.active_grants_delta
                self._grants[partition] = held
        offsets = {
            TopicPartition(topic, partition): offset
            for partition, res in results.items()
            for topic, offset in res.next_offsets.items()
        }
        # Positions live in RocksDB (written above, atomically with the state); the group's
        # committed offsets only serve lag tools and empty-data-dir restarts, so they are
        # committed in the background instead of costing a round trip per batch.
        self._uncommitted.update(offsets)
        self.pipeline.flush_metrics()
        self._set_state_gauges()
        self.outages.recovered()

    def _count_step(self) -> None:
        """Count one chunk of a restored partition's snapshot; at its end, add the count to the
        deltas committed since the restore (``streams.state.counting``)."""
        partition, count = next(iter(self._counting.items()))
        if not count.step():
            return
        del self._counting[partition]
        self._subjects[partition] = self._subjects.get(partition, 0) + count.subjects
        self._grants[partition] = self._grants.get(partition, 0) + count.grants
        self._set_state_gauges()

    def _set_state_gauges(self) -> None:
        """Subjects and active grants of the owned partitions: counted from a snapshot taken
        when a partition is restored (after it is ready), plus every batch committed since (so
        they follow partitions around)."""
        metrics.STATE_SUBJECTS.set(sum(self._subjects.values()))
        metrics.ACTIVE_GRANTS.set(sum(self._grants.values()))

    async def _send_and_wait(self, items: Iterable[tuple[int, OutRecord]]) -> None:
        """Produce records in per-partition batches and wait for every acknowledgement."""
        assert self.producer is not None
        producer = self.producer
        batches: dict[tuple[str, int], Any] = {}
        futures = []
        for partition, out in items:
            if out.by_key:  # for another subject's partition (docs/delegation.md)
                partition = await self._partition_by_key(out)
            slot = (out.topic, partition)
            batch = batches.get(slot)
            if batch is None:
                batch = batches[slot] = producer.create_batch()
            if batch.append(key=out.key, value=out.value, timestamp=None, headers=out.headers):
                continue
            futures.append(await producer.send_batch(batch, out.topic, partition=partition))
            batch = batches[slot] = producer.create_batch()
            batch.append(key=out.key, value=out.value, timestamp=None, headers=out.headers)
        for (topic, partition), batch in batches.items():
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        if futures:  # wait for all (no unretrieved failures), then raise the first failure
            for outcome in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome

    async def _partition_by_key(self, out: OutRecord) -> int:
        """The partition Kafka's default partitioner gives ``out.key`` on ``out.topic``: where
        the subject named by the key lives (same partition count as the inputs)."""
        assert self.producer is not None and out.key is not None
        count = self._partition_counts.get(out.topic)
        if count is None:
            count = len(await self.producer.partitions_for(out.topic))
            self._partition_counts[out.topic] = count
        return self._key_partitions.of(out.key, count)

    async def _send_changelog(self, results: dict[int, BatchResult]) -> dict[int, int]:
        """Send changed states to the changelog; return the next changelog offset per partition."""
        assert self.producer is not None
        topic = self.config.changelog_topic
        producer = self.producer
        sent: list[tuple[int, int, Any]] = []  # (partition, record count, future)

        async def send(partition: int, batch: Any) -> None:
            future = await producer.send_batch(batch, topic, partition=partition)
            sent.append((partition, batch.record_count(), future))

        for partition, res in results.items():
            if not res.changed_states:
                continue
            batch = producer.create_batch()
            for key, value in res.changed_states.items():
                if batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
                    await send(partition, batch)
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=[])
            await send(partition, batch)
        next_offsets: dict[int, int] = {}
        for partition, count, future in sent:
            meta = await future  # the batch's base offset
            next_offsets[partition] = max(next_offsets.get(partition, 0), meta.offset + count)
        return next_offsets

    # -- rebalancing ----------------------------------------------------------------------

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        metrics.REBALANCES.labels("revoked").inc()
        async with self._lock:
            self._generation += 1
            await self._commit_offsets()  # before the partitions leave this member
            gone = {tp.partition for tp in revoked}
            # Buffered records were not applied: the next owner fetches them from the stored
            # (applied) position, this worker included if the partition comes back.
            self._paused = {tp for tp in self._paused if tp.partition not in gone}
            self._next_offset = {
                tp: o for tp, o in self._next_offset.items() if tp.partition not in gone
            }
            # Not ours any more: a failed commit of them must not be retried forever.
            self._uncommitted = {
                tp: o for tp, o in self._uncommitted.items() if tp.partition not in gone
            }
            if self.pending is not None and self.pending.state == "evaluating":
                self.pending.restart(sorted(set(self.stores) - gone))
            for partition in gone:
                self._mergers.pop(partition, None)
                self._scans.pop(partition, None)
                self._sweep.pop(partition, None)
                self._subjects.pop(partition, None)
                self._grants.pop(partition, None)
                self._counting.pop(partition, None)  # its snapshot, before the store closes
                store = self.stores.pop(partition, None)
                if store is not None:
                    store.close()
            metrics.ASSIGNED_PARTITIONS.set(len(self.stores))
            self._set_state_gauges()
            self._lag.forget(revoked)

    async def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        metrics.REBALANCES.labels("assigned").inc()
        async with self._lock:
            self._generation += 1
            new = sorted({tp.partition for tp in assigned} - set(self.stores))
            if new:
                restored = await self._restore_or_fail(new)
                if restored is None:
                    return  # stopping, or a failure that run() raises next
                for partition, store in restored.items():
                    self.stores[partition] = store
                    # Grants judged by another bundle (a switch while this worker was down, or
                    # before the partition moved here) are found and re-evaluated by a scan.
                    self._scans.setdefault(partition, None)
            if self.pending is not None and self.pending.state == "evaluating":
                self.pending.restart(sorted(self.stores))
            await self._seek_applied(assigned)
            metrics.ASSIGNED_PARTITIONS.set(len(self.stores))
            self._set_state_gauges()
        self.ready.set()

    async def _seek_applied(self, assigned: list[TopicPartition]) -> None:
        """Set every assigned position explicitly, to the first record not applied yet: the
        offset stored with the state, else the group's committed offset, else the beginning.
        A fetch returned under this assignment before this callback ran is dropped by the run
        loop (its generation is older), so it must be fetched again from here."""
        consumer = self.consumer
        assert consumer is not None
        beginning = []
        for tp in assigned:
            stored = self.stores[tp.partition].get(offset_key(tp.topic))
            try:
                position = int(stored) if stored is not None else await consumer.committed(tp)
            except KafkaError as exc:  # another rebalance is under way: it seeks again
                log.warning("cannot read the committed offset of %s: %s", tp, exc)
                continue
            self._next_offset.pop(tp, None)  # buffers were dropped: from the new position on
            self._start_position[tp] = position
            if position is None:
                beginning.append(tp)
            else:
                self._next_offset[tp] = position
                consumer.seek(tp, position)
        if beginning:
            await consumer.seek_to_beginning(*beginning)

    async def _restore_or_fail(self, partitions: list[int]) -> dict[int, PartitionStore] | None:
        """Restore, backing off in place while the broker is down. Any other failure (a store
        that cannot be opened) stops the worker: a partition it owns without its state would
        skip that partition's records, unseen, until the next rebalance. None when stopping."""
        while not self._stopping.is_set():
            try:
                stores = await self._restore(partitions)
            except TRANSIENT_ERRORS as exc:
                delay = self.outages.failed(exc)
                log.warning(
                    "partitions %s: restore failed (%s); retrying in %.1fs", partitions, exc, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            except Exception as exc:
                log.critical("partitions %s: cannot restore their state: %r", partitions, exc)
                self._fatal = exc
                return None
            self.outages.recovered()
            return stores
        return None

    async def _restore(self, partitions: list[int]) -> dict[int, PartitionStore]:
        """Open the partitions' stores and bring them up to date from the changelog, all
        partitions at once (``streams.kafka.replay``: one fetch loop per partition)."""
        stores: dict[int, PartitionStore] = {}
        try:
            for partition in partitions:
                stores[partition] = open_store(self.config.data_dir, f"p{partition}")
            await self._restore_into(stores)
        except BaseException:
            for partition in stores:
                self._counting.pop(partition, None)
            for store in stores.values():
                store.close()  # a retry opens them again (RocksDB holds a lock per open store)
            raise
        return stores

    async def _restore_into(self, stores: dict[int, PartitionStore]) -> None:
        topic = self.config.changelog_topic
        start: dict[TopicPartition, int] = {}
        for partition, store in stores.items():
            stored = store.get(CHANGELOG_OFFSET)
            start[TopicPartition(topic, partition)] = int(stored) if stored is not None else 0
        pending: dict[int, dict[bytes, bytes | None]] = {p: {} for p in stores}
        restored = 0

        def apply(tp: TopicPartition, records: Sequence[Record]) -> None:
            # Written to RocksDB every RESTORE_WRITE_RECORDS records with the changelog position
            # reached, so memory stays bounded by one chunk per partition (not by the whole
            # state) and a restore that stops half-way resumes from there.
            nonlocal restored
            puts = pending[tp.partition]
            for record in records:
                key, value = record.key, record.value
                if key is not None:
                    # changelog keys are store keys; a tombstone (null value) deletes the key
                    puts[key] = value
                    restored += 1
                    if len(puts) >= RESTORE_WRITE_RECORDS:
                        puts[CHANGELOG_OFFSET] = str(record.offset + 1).encode()
                        stores[tp.partition].write(puts)
                        puts.clear()

        def progress(behind: dict[TopicPartition, int]) -> None:
            metrics.RESTORE_REMAINING.set(sum(behind.values()))

        assert self._restorer is not None
        began = time.perf_counter()
        try:
            positions = await replay(self._restorer, start, apply, start=start, progress=progress)
        finally:
            metrics.RESTORE_REMAINING.set(0)
        for tp, position in positions.items():
            puts = pending[tp.partition]
            puts[CHANGELOG_OFFSET] = str(position).encode()
            stores[tp.partition].write(puts)
        for partition, store in stores.items():
            # counted after ready, from this snapshot; later batches add their deltas to 0
            self._subjects[partition] = self._grants[partition] = 0
            self._counting[partition] = StateCount(store, store.snapshot())
        took = time.perf_counter() - began
        metrics.RESTORED_RECORDS.inc(restored)
        metrics.RESTORE_SECONDS.observe(took)
        log.info(
            "partitions %s: restored %d changelog records from offsets %s in %.2fs",
            sorted(stores),
            restored,
            {tp.partition: offset for tp, offset in start.items()},
            took,
        )


def _unfetched(consumer: AIOKafkaConsumer, partition: int) -> Callable[[str], bool]:
    """``has_more`` for the merge of one partition number: does this input lag behind?"""
    return lambda topic: has_unfetched(consumer, TopicPartition(topic, partition))
