"""Outages of the worker's dependencies: capped exponential backoff and an honest degraded state.

A schema registry or broker that cannot be reached is not bad input and not a reason to exit:
the runner keeps the batch (nothing was persisted yet), waits, and tries it again. ``Outages``
decides how long to wait and remembers what is failing since when, for ``/healthz`` and the
``vigil_degraded`` / ``vigil_backoff_total`` metrics (docs/operations.md, "Outages").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from aiokafka.errors import KafkaError

from streams import metrics
from streams.codecs import TransientError

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: Final = (TransientError, KafkaError)
"""Failures that mean "a dependency is down, retry later" (never "drop the record")."""

FIRST_DELAY_S: Final = 0.5
MAX_DELAY_S: Final = 30.0
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
        self._current: dict[str, _Outage] = {}

    @property
    def degraded(self) -> bool:
        return bool(self._current)

    def failed(self, exc: BaseException) -> float:
        """Record a failed attempt; return the seconds to wait before the next one."""
        dependency = dependency_of(exc)
        detail = f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL]
        outage = self._current.get(dependency)
        if outage is None:
            outage = self._current[dependency] = _Outage(time.time(), 0, detail)
            metrics.DEGRADED.labels(dependency).set(1)
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
        for dependency, outage in self._current.items():
            metrics.DEGRADED.labels(dependency).set(0)
            log.warning(
                "%s is back after %.1fs and %d retries",
                dependency,
                time.time() - outage.since,
                outage.retries,
            )
        self._current.clear()

    def reasons(self) -> list[str]:
        """One sentence per failing dependency, for ``/healthz``."""
        return [
            f"{dependency.replace('_', ' ')} unavailable since "
            f"{datetime.fromtimestamp(o.since, tz=UTC).isoformat(timespec='seconds')} "
            f"({o.retries} retries; last error: {o.detail})"
            for dependency, o in sorted(self._current.items())
        ]
