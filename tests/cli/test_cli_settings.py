"""``Settings`` parsing (broker forms, env vars) and the CLI plumbing that needs no broker."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from streams.cli import load_commands, vigil
from streams.commands.common import bytes_to_text, dumps_line, json_default
from streams.commands.produce import derive_key, kind_for_topic
from streams.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read VIGIL_*; a developer's shell must not change these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("kafka://broker:19092", "broker:19092"),
        ("tcp://a:1/", "a:1"),
        ("a:1,b:2", "a:1,b:2"),
        ("kafka://a:1, kafka://b:2", "a:1,b:2"),
        ("kafka://a:1;b:2", "a:1,b:2"),
        ("localhost", "localhost:9092"),
        ("[::1]:9093", "[::1]:9093"),
    ],
)
def test_broker_forms(given: str, expected: str) -> None:
    assert Settings(broker=given).bootstrap_servers == expected


@pytest.mark.parametrize("bad", ["", "a:notaport", "a:0", "a:70000", ":9092", "::1:9092"])
def test_bad_broker_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        Settings(broker=bad)


def test_defaults() -> None:
    s = Settings()
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.faust_broker == "kafka://127.0.0.1:9092"
    assert s.policies == Path("policies") and s.data_dir == Path(".vigil/data")
    assert (s.web_port, s.partitions, s.output_format, s.group_id) == (6066, 4, "avro", "vigil")
    assert s.schema_registry_url is None
    assert s.signal_topics == [
        "signals.identity",
        "signals.device",
        "signals.network",
        "signals.risk",
    ]
    assert s.all_topics == [
        "signals.identity",
        "signals.device",
        "signals.network",
        "signals.risk",
        "authz.grants",
        "vigil.subscriptions",
        "authz.decisions",
        "authz.revocations",
        "signals.deadletter",
        "vigil.state-changelog",
        "vigil.policy-bundles",
    ]
    assert s.compacted_topics == ["vigil.state-changelog", "vigil.policy-bundles"]


def test_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_BROKER", "kafka://k1:9092,kafka://k2:9092")
    monkeypatch.setenv("VIGIL_PARTITIONS", "12")
    monkeypatch.setenv("VIGIL_OUTPUT_FORMAT", "json")
    monkeypatch.setenv("VIGIL_TOPIC_DEVICE", "edr.device")
    monkeypatch.setenv("VIGIL_SCHEMA_REGISTRY_URL", "http://registry:8081/")
    monkeypatch.setenv("VIGIL_DATA_DIR", "/var/lib/vigil")
    s = Settings()
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.partitions == 12 and s.output_format == "json"
    assert "edr.device" in s.signal_topics and "edr.device" in s.all_topics
    assert s.schema_registry_url == "http://registry:8081"
    assert s.data_dir == Path("/var/lib/vigil")
    monkeypatch.setenv("VIGIL_OUTPUT_FORMAT", "xml")
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.setenv("VIGIL_OUTPUT_FORMAT", "json")
    monkeypatch.setenv("VIGIL_SCHEMA_REGISTRY_URL", "")
    assert Settings().schema_registry_url is None


def test_derive_key() -> None:
    assert derive_key({"subject": {"type": "user", "id": "alice"}}) == "user:alice"
    assert derive_key({"principal": {"id": "bob"}}) == "user:bob"
    assert derive_key({"principal": {"id": "rb", "type": "agent"}}) == "agent:rb"
    assert derive_key({"subject": "user:alice"}) == "user:alice"
    assert derive_key({"key": "ignored"}) is None


def test_kind_for_topic() -> None:
    s = Settings(topic_device="edr.device")
    assert kind_for_topic("edr.device", s) == "Signal"
    assert kind_for_topic("signals.risk.abc123", s) == "Signal"
    assert kind_for_topic("signals.deadletter", s) == "DeadLetter"
    assert kind_for_topic("authz.grants.x", s) == "GrantEvent"
    with pytest.raises(click.UsageError):
        kind_for_topic("other", s)


def test_json_output_of_bytes() -> None:
    assert bytes_to_text(b"caf\xc3\xa9") == "café"
    assert bytes_to_text(b"\xff\x00") == "/wA="
    assert dumps_line({"value": b"\xff\x00", "key": b"user:a", "s": {1}}) == (
        '{"value":"/wA=","key":"user:a","s":[1]}'
    )
    with pytest.raises(TypeError):
        json_default(object())


def test_every_command_has_broker_option_and_bad_broker_is_usage_error() -> None:
    runner = CliRunner()
    for name in ("broker", "produce", "tail"):
        command = vigil.commands[name]
        assert any(p.name == "broker" for p in command.params), name
    result = runner.invoke(vigil, ["tail", "t", "--broker", "a:notaport"])
    assert result.exit_code == 2 and "invalid settings" in result.output


def test_missing_command_modules_are_skipped_and_broken_ones_reported() -> None:
    group = click.Group("g")
    load_commands(group, ("tail", "does_not_exist"))
    assert list(group.commands) == ["tail"]
    result = CliRunner().invoke(vigil, ["--help"])
    assert result.exit_code == 0 and "produce" in result.output


def test_worker_web_host_flag_and_env_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--web-host``/``VIGIL_WEB_HOST`` (an empty host is refused before anything starts; the
    binding itself is checked by tests/deploy/test_prometheus_live.py)."""
    assert Settings().web_host == "127.0.0.1"
    result = CliRunner().invoke(vigil, ["worker", "--web-host", ""])
    assert result.exit_code == 2 and "web_host" in result.output, result.output
    monkeypatch.setenv("VIGIL_WEB_HOST", "")
    result = CliRunner().invoke(vigil, ["worker"])
    assert result.exit_code == 2 and "web_host" in result.output, result.output
    monkeypatch.setenv("VIGIL_WEB_HOST", "0.0.0.0")
    assert Settings().web_host == "0.0.0.0"
