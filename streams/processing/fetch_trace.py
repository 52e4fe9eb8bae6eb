"""An opt-in timing trace of the worker's consumer and batch loop (``VIGIL_FETCH_TRACE``).

Answers "where does a record's time go before its batch starts": one JSON line per event, with
wall-clock seconds (``time.time()``, the clock producers stamp records with on one host):

- ``fetch``: one fetch request of the consumer: ``sent``, ``received`` (response parsed),
  ``data`` (it brought records);
- ``handover``: ``getmany`` returned ``n`` records at ``t``; ``ts_min``/``ts_max`` are their
  Kafka timestamps (ms), so ``t - ts_max/1000`` is the newest record's age when the loop got it;
- ``batch``: the pipeline started a batch of ``n`` records at ``start`` (their timestamps
  ``ts_min``/``ts_max``), its outputs were acknowledged at ``sent`` and the batch (changelog,
  RocksDB) ended at ``end``; ``held`` is how many fetched records stayed buffered (the merge
  waits for another input of the same partition number). Per record of the batch, in ms:
  ``age`` = hand-over − its timestamp (before the loop had it: producer, broker, fetch) and
  ``wait`` = batch start − hand-over (in the worker: merge, the previous batch);
  ``blocking`` lists the inputs that hold buffered records back (nothing buffered, but the
  consumer's position is below the last fetch high watermark, or either is unknown) as
  ``[topic, partition, position, high watermark]``.

Lines are buffered and written every ``FLUSH_EVERY`` events and at stop. Wrapping the fetch
request uses aiokafka's private ``Fetcher._proc_fetch_request``: if a newer aiokafka renames it,
the trace says so once and records the other events only. Off (the default), nothing here runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from streams.processing.records import InRecord

log = logging.getLogger(__name__)

FLUSH_EVERY = 50


class FetchTrace:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._lines: list[bytes] = []
        self._handed: dict[tuple[str, int, int], float] = {}  # record -> hand-over time

    def _add(self, event: dict[str, Any]) -> None:
        self._lines.append(orjson.dumps(event))
        if len(self._lines) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._file.write(b"\n".join(self._lines) + b"\n")
            self._file.flush()
            self._lines.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()

    def wrap_fetcher(self, consumer: Any) -> None:
        """Time every fetch request of ``consumer`` (a started ``AIOKafkaConsumer``)."""
        fetcher: Any = getattr(consumer, "_fetcher", None)
        original = getattr(fetcher, "_proc_fetch_request", None)
        if original is None:
            log.warning(
                "fetch trace: this aiokafka has no Fetcher._proc_fetch_request; "
                "fetch requests are not traced"
            )
            return

        async def traced(assignment: Any, node_id: Any, request: Any) -> Any:
            sent = time.time()
            data = await original(assignment, node_id, request)
            self._add({"e": "fetch", "sent": sent, "received": time.time(), "data": bool(data)})
            return data

        fetcher._proc_fetch_request = traced

    def handover(self, data: dict[Any, Sequence[Any]]) -> None:
        now = time.time()
        handed = self._handed
        for tp, messages in data.items():
            for m in messages:
                handed[(tp.topic, tp.partition, m.offset)] = now
        stamps = [m.timestamp for messages in data.values() for m in messages]
        if stamps:
            self._add(
                {
                    "e": "handover",
                    "t": time.time(),
                    "n": len(stamps),
                    "ts_min": min(stamps),
                    "ts_max": max(stamps),
                }
            )

    def batch(
        self,
        start: float,
        sent: float,
        records: Sequence[InRecord],
        held: int,
        blocking: Sequence[tuple[str, int, int | None, int | None]] = (),
    ) -> None:
        if not records:
            return
        stamps = [r.timestamp for r in records]
        handed = self._handed
        ages, waits = [], []
        for r in records:
            at = handed.pop((r.topic, r.partition, r.offset), None)
            if at is not None:
                ages.append(round(at * 1000 - r.timestamp, 1))
                waits.append(round((start - at) * 1000, 1))
        if len(handed) > 1_000_000:  # records dropped by a rebalance or rewind: forget them
            handed.clear()
        self._add(
            {
                "e": "batch",
                "start": start,
                "sent": sent,
                "end": time.time(),
                "n": len(stamps),
                "ts_min": min(stamps),
                "ts_max": max(stamps),
                "held": held,
                "age": ages,
                "wait": waits,
                "blocking": list(blocking),
            }
        )
