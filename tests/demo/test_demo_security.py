"""The demo's own broker is plaintext: TLS/SASL settings meant for a cluster must not reach the
demo's worker, and must reach it when the demo runs against an external broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.demo.run import WorkerProcess


@pytest.mark.parametrize(("embedded", "kept"), [(True, False), (False, True)])
def test_worker_gets_kafka_security_only_for_an_external_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, embedded: bool, kept: bool
) -> None:
    monkeypatch.setenv("VIGIL_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("VIGIL_KAFKA_SSL_CAFILE", "/etc/ca.pem")
    worker = WorkerProcess("127.0.0.1:9092", tmp_path, tmp_path, embedded_broker=embedded)
    env = worker.environment()
    assert ("VIGIL_KAFKA_SECURITY_PROTOCOL" in env) is kept
    assert ("VIGIL_KAFKA_SSL_CAFILE" in env) is kept
    assert env["VIGIL_BROKER"] == "127.0.0.1:9092"
