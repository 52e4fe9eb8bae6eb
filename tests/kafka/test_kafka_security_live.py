"""Vigil's Kafka clients over real TLS and the Kafka SASL exchange (tests/secure_kafka.py).

Every client here is built the way Vigil builds its own: ``Settings`` (the ``VIGIL_KAFKA_*``
values) → ``KafkaSecurity.from_settings`` → ``**client_kwargs()``. The broker advertises the
proxy, so a passing round trip means bootstrap, metadata, produce and fetch all went through
TLS (and SASL).
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka.admin import ensure_topics
from streams.kafka.security import KafkaSecurity, KafkaSecurityError
from streams.settings import Settings
from tests.kafka_helpers import unique_name
from tests.secure_kafka import SaslUsers, SecureBroker

pytestmark = pytest.mark.broker

USER, PASSWORD = "vigil-worker", "worker-password-1"


def security(secure: SecureBroker, **values: Any) -> KafkaSecurity:
    return KafkaSecurity.from_settings(Settings(broker=secure.bootstrap, **values))


def tls(secure: SecureBroker, **values: Any) -> KafkaSecurity:
    values = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": secure.pki.ca, **values}
    return security(secure, **values)


async def round_trip(secure: SecureBroker, sec: KafkaSecurity) -> None:
    """Create a topic, produce one record, read it back; every broker in metadata is the proxy."""
    topic = unique_name("secure")
    await ensure_topics(secure.bootstrap, [topic], 1, security=sec, timeout=15)
    producer = AIOKafkaProducer(bootstrap_servers=secure.bootstrap, **sec.client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over-tls", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=secure.bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **sec.client_kwargs(),
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        record = await asyncio.wait_for(consumer.getone(), 15)
        assert record.value == b"over-tls"
        brokers = consumer._client.cluster.brokers()
        assert brokers and {(b.host, b.port) for b in brokers} == {("127.0.0.1", secure.proxy_port)}
    finally:
        await consumer.stop()


async def eventually(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """The proxy counts a refusal in its own thread, possibly just after the client saw it."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def refused(secure: SecureBroker, sec: KafkaSecurity) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap, request_timeout_ms=5000, **sec.client_kwargs()
    )
    try:
        with pytest.raises(Exception):  # noqa: B017 - aiokafka wraps TLS/SASL errors variously
            await asyncio.wait_for(producer.start(), 20)
    finally:
        await producer.stop()


# -- TLS -------------------------------------------------------------------------------


async def test_tls_with_the_ca_file_carries_all_traffic(secure_broker: SecureBroker) -> None:
    secure_broker.proxy.configure(secure_broker.pki.server_context())
    await round_trip(secure_broker, tls(secure_broker))
    assert secure_broker.proxy.tls_handshakes >= 2  # bootstrap and the advertised broker


async def test_plaintext_client_cannot_use_the_tls_listener(secure_broker: SecureBroker) -> None:
    secure_broker.proxy.configure(secure_broker.pki.server_context())
    await refused(secure_broker, security(secure_broker))
    await eventually(lambda: secure_broker.proxy.tls_refused >= 1)


async def test_tls_refuses_a_broker_certificate_from_another_ca(
    secure_broker: SecureBroker,
) -> None:
    secure_broker.proxy.configure(secure_broker.pki.server_context())
    await refused(secure_broker, tls(secure_broker, kafka_ssl_cafile=secure_broker.pki.rogue_ca))
    assert secure_broker.proxy.tls_handshakes == 0


async def test_hostname_check_refuses_a_certificate_for_another_name(
    secure_broker: SecureBroker,
) -> None:
    secure_broker.proxy.configure(secure_broker.pki.server_context(other_name=True))
    await refused(secure_broker, tls(secure_broker))
    # the same certificate is accepted (still CA-verified) once the check is off
    await round_trip(secure_broker, tls(secure_broker, kafka_ssl_check_hostname=False))


async def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    secure_broker: SecureBroker,
) -> None:
    pki = secure_broker.pki
    secure_broker.proxy.configure(pki.server_context(require_client_cert=True))
    await refused(secure_broker, tls(secure_broker))  # no client certificate
    await refused(
        secure_broker,
        tls(
            secure_broker,
            kafka_ssl_certfile=pki.rogue_client_cert,
            kafka_ssl_keyfile=pki.rogue_client_key,
        ),
    )
    assert secure_broker.proxy.tls_handshakes == 0
    await round_trip(
        secure_broker,
        tls(secure_broker, kafka_ssl_certfile=pki.client_cert, kafka_ssl_keyfile=pki.client_key),
    )
    await round_trip(
        secure_broker,
        tls(
            secure_broker,
            kafka_ssl_certfile=pki.client_cert,
            kafka_ssl_keyfile=pki.client_key_encrypted,
            kafka_ssl_key_password=pki.key_password,
        ),
    )


@pytest.mark.parametrize("password", [None, "not-the-password"])
def test_an_encrypted_key_without_its_password_fails_at_startup(
    secure_broker: SecureBroker, password: str | None
) -> None:
    pki = secure_broker.pki
    with pytest.raises(KafkaSecurityError, match="VIGIL_KAFKA_SSL_KEY_PASSWORD") as err:
        tls(
            secure_broker,
            kafka_ssl_certfile=pki.client_cert,
            kafka_ssl_keyfile=pki.client_key_encrypted,
            kafka_ssl_key_password=password,
        )
    assert pki.key_password not in str(err.value)


# -- SASL over TLS -----------------------------------------------------------------------


def sasl_ssl(secure: SecureBroker, mechanism: str, **values: Any) -> KafkaSecurity:
    return security(
        secure,
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=secure.pki.ca,
        kafka_sasl_mechanism=mechanism,
        **values,
    )


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
async def test_sasl_ssl_logs_in_with_the_right_password_only(
    secure_broker: SecureBroker, mechanism: str
) -> None:
    proxy = secure_broker.proxy
    proxy.configure(secure_broker.pki.server_context(), SaslUsers(passwords={USER: PASSWORD}))
    await round_trip(
        secure_broker,
        sasl_ssl(secure_broker, mechanism, kafka_sasl_username=USER, kafka_sasl_password=PASSWORD),
    )
    assert proxy.logins and {(x.mechanism, x.principal) for x in proxy.logins} == {
        (mechanism, USER)
    }
    await refused(
        secure_broker,
        sasl_ssl(secure_broker, mechanism, kafka_sasl_username=USER, kafka_sasl_password="wrong"),
    )
    await eventually(lambda: proxy.sasl_refused)


async def test_scram_over_sasl_plaintext(secure_broker: SecureBroker) -> None:
    """SCRAM never sends the password, so it is allowed without TLS."""
    proxy = secure_broker.proxy
    proxy.configure(None, SaslUsers(passwords={USER: PASSWORD}))
    sec = security(
        secure_broker,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password=PASSWORD,
    )
    await round_trip(secure_broker, sec)
    assert {x.principal for x in proxy.logins} == {USER}
    await refused(secure_broker, security(secure_broker))  # no SASL: refused before any request


async def test_oauthbearer_token_file_is_reread_so_rotation_works(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    proxy = secure_broker.proxy
    users = SaslUsers(tokens={"token-one", "token-two"})
    proxy.configure(secure_broker.pki.server_context(), users)
    token_file = tmp_path / "token"
    token_file.write_text("token-one\n")
    sec = sasl_ssl(secure_broker, "OAUTHBEARER", kafka_sasl_oauth_token_file=token_file)
    await round_trip(secure_broker, sec)
    assert {x.token for x in proxy.logins} == {"token-one"}

    token_file.write_text("token-two\n")  # rotated by the token agent; same KafkaSecurity
    proxy.configure(secure_broker.pki.server_context(), users)
    await round_trip(secure_broker, sec)
    assert {x.token for x in proxy.logins} == {"token-two"}

    token_file.write_text("expired-token\n")
    await refused(secure_broker, sec)
    await eventually(lambda: proxy.sasl_refused)


async def test_oauthbearer_token_command(secure_broker: SecureBroker) -> None:
    proxy = secure_broker.proxy
    proxy.configure(secure_broker.pki.server_context(), SaslUsers(tokens={"from-command"}))
    command = shlex.join([sys.executable, "-c", "print('from-command')"])
    sec = sasl_ssl(secure_broker, "OAUTHBEARER", kafka_sasl_oauth_token_command=command)
    await round_trip(secure_broker, sec)
    assert {x.token for x in proxy.logins} == {"from-command"}


# -- least privilege: no CREATE permission ------------------------------------------------


async def test_without_create_permission_existing_topics_are_used(
    secure_broker: SecureBroker,
) -> None:
    """An operator created the topics; the principal has no Kafka CREATE ACL: fine."""
    proxy = secure_broker.proxy
    proxy.configure(secure_broker.pki.server_context())
    sec = tls(secure_broker)
    topic, compacted = unique_name("precreated"), unique_name("precreated-compacted")
    await ensure_topics(secure_broker.bootstrap, [topic], 2, compacted=[compacted], security=sec)
    proxy.configure(secure_broker.pki.server_context(), deny_create=True)
    await ensure_topics(
        secure_broker.bootstrap, [topic], 2, compacted=[compacted], security=sec, timeout=15
    )
    assert sorted(proxy.denied_creates) == sorted([topic, compacted])
