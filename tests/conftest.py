"""Session-wide fixtures: ONE embedded Tansu broker for the whole test run, unique topics per test.

Tansu is memory-only and cheap to start, but one broker per session keeps the suite fast; tests
stay independent by using topic names with a uuid suffix (``topic_factory``).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so tests can `from tests.kafka_helpers import ...` under any runner
    sys.path.insert(0, str(ROOT))

from streams.kafka.admin import ensure_topics  # noqa: E402
from streams.kafka.broker import EmbeddedBroker  # noqa: E402
from tests.kafka_helpers import unique_name  # noqa: E402
from tests.secure_kafka import SecureBroker, make_pki  # noqa: E402

TopicFactory = Callable[..., Awaitable[list[str]]]


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap address (``127.0.0.1:<port>``) of the session's embedded broker."""
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap


@pytest.fixture
def topic_factory(broker: str) -> TopicFactory:
    """``await topic_factory("signals.device", "authz.grants", partitions=2)`` creates fresh
    topics named ``<prefix>.<uuid>`` (so tests never see each other's records) and returns the
    names in the given order. ``compacted=("name-prefix", ...)`` creates those as compacted.
    """

    async def create(
        *prefixes: str, partitions: int = 1, compacted: tuple[str, ...] = ()
    ) -> list[str]:
        names = [unique_name(p) for p in prefixes]
        compact = [n for p, n in zip(prefixes, names, strict=True) if p in compacted]
        await ensure_topics(broker, names, partitions, compacted=compact)
        return names

    return create


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """Tansu behind a TLS/SASL proxy that it advertises (tests/secure_kafka.py); call
    ``secure_broker.proxy.configure(tls_context, sasl_users)`` to choose the security."""
    secured = SecureBroker(make_pki(tmp_path_factory.mktemp("pki")))
    secured.start()
    try:
        yield secured
    finally:
        secured.stop()
