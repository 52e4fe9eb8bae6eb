"""A real ``vigil worker`` and the CLI on a secured cluster: mutual TLS plus SASL/SCRAM, and
no permission to create topics (an operator created them).

Everything Kafka-facing is configured only through ``VIGIL_KAFKA_*`` environment variables, the
way an operator would. The broker (tests/secure_kafka.py) refuses any connection without a client
certificate from the CA and a SCRAM login, and it advertises only the secured address, so the
worker's pipeline clients, its bundle watcher, its topic admin and faust's own producer and
consumer (the ``vigil.workers`` heartbeat) all have to use the settings to do their job.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.admin import ensure_topics
from streams.kafka.quirks import end_offsets
from streams.kafka.security import KafkaSecurity
from streams.settings import Settings
from tests.pipeline.worker_harness import PARTITIONS, ROOT, Worker
from tests.secure_kafka import SaslUsers, SecureBroker

pytestmark = pytest.mark.broker

USER, PASSWORD = "vigil-worker", "worker-password-1"


def secure_env(secure: SecureBroker) -> dict[str, str]:
    pki = secure.pki
    return {
        "VIGIL_BROKER": secure.bootstrap,
        "VIGIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "VIGIL_KAFKA_SSL_CAFILE": str(pki.ca),
        "VIGIL_KAFKA_SSL_CERTFILE": str(pki.client_cert),
        "VIGIL_KAFKA_SSL_KEYFILE": str(pki.client_key_encrypted),
        "VIGIL_KAFKA_SSL_KEY_PASSWORD": pki.key_password,
        "VIGIL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "VIGIL_KAFKA_SASL_USERNAME": USER,
        "VIGIL_KAFKA_SASL_PASSWORD": PASSWORD,
    }


class SecureWorker(Worker):
    """The pipeline harness, with the secured settings for the worker and for the test's own
    clients (a plaintext client cannot reach this broker at all)."""

    def __init__(self, secure: SecureBroker, data_dir: Path, users: SaslUsers) -> None:
        super().__init__(secure.bootstrap, data_dir)
        self.secure, self.users = secure, users
        self.secure_env = secure_env(secure)
        variables = {k.removeprefix("VIGIL_").lower(): v for k, v in self.secure_env.items()}
        self.security = KafkaSecurity.from_settings(Settings(**variables))

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.secure_env}

    async def create_topics(self) -> None:
        plain = [t for n, t in self.topics.items() if n not in ("changelog", "bundles")]
        changelog, bundles = self.topics["changelog"], self.topics["bundles"]
        await ensure_topics(
            self.bootstrap, plain, PARTITIONS, compacted=[changelog], security=self.security
        )
        await ensure_topics(self.bootstrap, [], 1, compacted=[bundles], security=self.security)
        # from now on, as in a least-privilege deployment: topics exist, nobody may CREATE
        self.secure.proxy.configure(
            self.secure.pki.server_context(require_client_cert=True), self.users, deny_create=True
        )

    async def wait_processed(self, timeout: float = 30.0) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, **self.security.client_kwargs()
        )
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in self.inputs for p in range(PARTITIONS)]
            ends = await end_offsets(consumer, tps)
            deadline = time.monotonic() + timeout
            while any([(await consumer.committed(tp) or 0) < ends[tp] for tp in tps]):
                assert time.monotonic() < deadline, f"worker behind\n{self.log()}"
                await asyncio.sleep(0.2)
        finally:
            await consumer.stop()

    def vigil(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = {**self.env(), "PYTHONPATH": str(ROOT)}  # the worker's topics and security
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
            cwd=ROOT,
        )

    def produce_line(self, topic: str, record: dict[str, Any]) -> None:
        result = self.vigil("produce", self.topics[topic], stdin=json.dumps(record) + "\n")
        assert result.returncode == 0, result.stderr


def device_signal(eid: str, user: str, status: str, at: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "device-compliance-change",
        "subject": {"type": "user", "id": user},
        "source": "mdm",
        "event_time": at,
        "attributes": {"device_id": "D1", "current_status": status},
    }


def grant(gid: str, user: str) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": user, "type": "user", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": f"doc-{gid}", "attr": {"owner": "someone"}},
        "actions": ["read", "write"],
        "session_id": "s1",
        "device_id": "D1",
        "issued_at": "2026-11-29T09:00:00Z",
        "expires_at": "2099-01-01T00:00:00Z",
    }


async def test_worker_produce_tail_and_policy_push_over_mtls_and_scram(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    proxy = secure_broker.proxy
    users = SaslUsers(passwords={USER: PASSWORD}, mechanisms=("SCRAM-SHA-512",))
    proxy.configure(secure_broker.pki.server_context(require_client_cert=True), users)
    worker = SecureWorker(secure_broker, tmp_path / "data", users)
    try:
        await worker.start(timeout=90)
        user = f"carol-{uuid.uuid4().hex[:6]}"
        worker.produce_line(
            "device", device_signal("c1", user, "compliant", "2026-11-29T08:00:00Z")
        )
        await worker.wait_processed()
        worker.produce_line("grants", grant(f"{user}-g1", user))
        await worker.wait_processed()
        bad = device_signal("bad", user, "not-compliant", "2026-11-29T11:00:00Z")
        worker.produce_line("device", bad)

        tail = worker.vigil(
            "tail",
            worker.topics["revocations"],
            "--from-beginning",
            "--max",
            "1",
            "--timeout",
            "60",
        )
        assert tail.returncode == 0, tail.stderr + worker.log()
        (revocation,) = [json.loads(line) for line in tail.stdout.splitlines() if line.strip()]
        assert revocation["grant_id"] == f"{user}-g1"
        assert revocation["cause"] == {
            "kind": "signal",
            "event_id": "bad",
            "signal_type": "device-compliance-change",
        }

        # faust's own clients: the heartbeat goes out and comes back through vigil.workers
        deadline = time.monotonic() + 30
        url = f"http://127.0.0.1:{worker.web_port}/workers"
        while True:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if json.loads(resp.read())["workers"]:
                    break
            assert time.monotonic() < deadline, "no heartbeat through faust\n" + worker.log()
            await asyncio.sleep(0.5)

        pushed = worker.vigil("policy", "push", "--skip-tests", str(ROOT / "policies"))
        assert pushed.returncode == 0, pushed.stderr
        assert "published" in pushed.stdout

        # every login was the worker's SCRAM user over mutual TLS; nothing got in otherwise
        assert proxy.logins and {(x.mechanism, x.principal) for x in proxy.logins} == {
            ("SCRAM-SHA-512", USER)
        }
        assert proxy.sasl_refused == [] and proxy.tls_refused == 0
        # the worker and `policy push` asked to create their topics and were refused: no matter
        assert worker.topics["changelog"] in proxy.denied_creates
        assert worker.topics["bundles"] in proxy.denied_creates
        assert PASSWORD not in worker.log() and secure_broker.pki.key_password not in worker.log()
    finally:
        worker.stop()
