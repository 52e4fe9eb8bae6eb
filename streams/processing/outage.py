"""Outages of the worker's dependencies: capped exponential backoff and an honest degraded state.

A schema registry or broker that cannot be reached is not bad input and not a reason to exit:
the runner keeps the batch (nothing was persisted yet), waits, and tries it again. ``Outages``
decides how long to wait and remembers what is failing since when, for ``/healthz`` and the
``vigil_degraded`` / ``vigil_backoff_total`` metrics (docs/operations.md, "Outages").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka.errors import KafkaError

from streams import metrics
from streams.codecs import TransientError

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: Final = (TransientError, KafkaError)
"""Failures that mean "a dependency is down, retry later" (never "drop the record")."""

FIRST_DELAY_S: Final = 0.5
MAX_DELAY_S: Final = 30.0
BROKER_PROBE_S: Final = 5.0
_MAX_DETAIL: Final = 300


def dependency_of(exc: BaseException) -> str:
    """Bounded name of what failed: ``schema_registry`` or ``broker``."""
    if isinstance(exc, TransientError):
        return exc.dependency
    return "broker"


@dataclass(slots=True)
class _Outage:
    since: float  # wall clock, seconds
    retries: int
    detail: str


class Outages:
    """What is failing since when, and how long to back off before the next attempt."""

    def __init__(self, first_delay_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S):
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self._current: dict[str, _Outage] = {}  # from failed batches, until one goes through
        self._unreachable: dict[str, _Outage] = {}  # from probes, until a probe succeeds

    @property
    def degraded(self) -> bool:
        return bool(self._current or self._unreachable)

    def _gauge(self, dependency: str) -> None:
        down = dependency in self._current or dependency in self._unreachable
        metrics.DEGRADED.labels(dependency).set(1 if down else 0)

    def failed(self, exc: BaseException) -> float:
        """Record a failed attempt; return the seconds to wait before the next one."""
        dependency = dependency_of(exc)
        detail = f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL]
        outage = self._current.get(dependency)
        if outage is None:
            outage = self._current[dependency] = _Outage(time.time(), 0, detail)
            self._gauge(dependency)
        outage.retries += 1
        outage.detail = detail
        metrics.BACKOFFS.labels(dependency).inc()
        delay = min(self.max_delay_s, self.first_delay_s * 2 ** min(outage.retries - 1, 30))
        log.warning(
            "%s unavailable (%s); retrying the same batch in %.1fs (attempt %d)",
            dependency,
            detail,
            delay,
            outage.retries,
        )
        return delay

    def recovered(self) -> None:
        """A batch went through end to end: every dependency it needed is back."""
        if not self._current:
            return
        current, self._current = self._current, {}
        for dependency, outage in current.items():
            self._gauge(dependency)
            log.warning(
                "%s is back after %.1fs and %d retries",
                dependency,
                time.time() - outage.since,
                outage.retries,
            )

    def probe_failed(self, dependency: str, exc: BaseException) -> None:
        """A health probe could not reach ``dependency`` (the worker may be idle)."""
        detail = f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL]
        outage = self._unreachable.get(dependency)
        if outage is None:
            self._unreachable[dependency] = _Outage(time.time(), 0, detail)
            self._gauge(dependency)
            log.warning("%s unreachable (%s)", dependency, detail)
        else:
            outage.detail = detail

    def probe_succeeded(self, dependency: str) -> None:
        if self._unreachable.pop(dependency, None) is not None:
            self._gauge(dependency)
            log.warning("%s reachable again", dependency)

    def reasons(self) -> list[str]:
        """One sentence per failing dependency, for ``/healthz``."""
        failing = [
            f"{dependency.replace('_', ' ')} unavailable since {_iso(o.since)} "
            f"({o.retries} retries; last error: {o.detail})"
            for dependency, o in sorted(self._current.items())
        ]
        return failing + [
            f"{dependency.replace('_', ' ')} unreachable since {_iso(o.since)} "
            f"(last error: {o.detail})"
            for dependency, o in sorted(self._unreachable.items())
            if dependency not in self._current
        ]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds")


async def probe_broker(consumer: Any, outages: Outages, interval_s: float = BROKER_PROBE_S) -> None:
    """Ask the broker for cluster metadata every ``interval_s`` so that ``/healthz`` tells an
    unreachable broker even while no batch is failing (an idle worker, or one waiting for
    records that cannot be fetched). Runs until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.wait_for(consumer.topics(), interval_s)
        except (KafkaError, TimeoutError) as exc:
            outages.probe_failed("broker", exc)
        else:
            outages.probe_succeeded("broker")
