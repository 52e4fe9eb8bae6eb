"""Commands find their policy directory and risk model from any directory, and say which; a file
the user named that does not exist is an error, never a silent fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.cli import vigil
from streams.defaults import CHECKOUT_ROOT, MissingFileError, resolve_files
from streams.settings import Settings


@pytest.fixture(autouse=True)
def fresh_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory and no VIGIL_* from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_fall_back_to_the_checkout_outside_it() -> None:
    files = resolve_files(Settings())
    assert files.policies == CHECKOUT_ROOT / "policies"
    assert files.risk_model == CHECKOUT_ROOT / "risk" / "model.yaml"
    assert "using the checkout's" in files.describe()


def test_defaults_in_the_current_directory_win(fresh_dir: Path) -> None:
    (fresh_dir / "policies").mkdir()
    (fresh_dir / "risk").mkdir()
    (fresh_dir / "risk" / "model.yaml").write_text("{}\n")
    files = resolve_files(Settings())
    assert files.policies == fresh_dir / "policies"
    assert files.risk_model == fresh_dir / "risk" / "model.yaml"
    assert "checkout" not in files.describe()


@pytest.mark.parametrize("how", ["keyword", "env"])
def test_a_configured_risk_model_that_does_not_exist_is_an_error(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "env":
        monkeypatch.setenv("VIGIL_RISK_MODEL", "nowhere/model.yaml")
        settings = Settings()
    else:
        settings = Settings(risk_model=Path("nowhere/model.yaml"))
    with pytest.raises(MissingFileError, match="risk model file nowhere/model.yaml"):
        resolve_files(settings)


def test_a_configured_policy_directory_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(MissingFileError, match="policy directory nowhere"):
        resolve_files(Settings(policies=Path("nowhere")))


def test_worker_refuses_a_missing_risk_model_before_connecting() -> None:
    result = CliRunner().invoke(
        vigil, ["worker", "--broker", "127.0.0.1:1", "--risk-model", "missing.yaml"]
    )
    assert result.exit_code == 2
    assert "risk model file missing.yaml does not exist" in result.output


def test_policy_commands_without_a_directory_use_the_default() -> None:
    result = CliRunner().invoke(vigil, ["policy", "compile", "--skip-tests"])
    assert result.exit_code == 0, result.output
    assert f"from {CHECKOUT_ROOT / 'policies'}" in result.output
    assert "using the checkout's" in result.output


def test_policy_eval_explains_a_request_without_signals() -> None:
    bare = (
        '{"principal":{"id":"alice","roles":["employee"],"attr":{}},'
        '"resources":[{"resource":{"kind":"document","id":"d1","attr":{}},"actions":["read"]}]}'
    )
    with_signals = bare.replace('"attr":{}}', '"attr":{"signals":{}}}', 1)
    result = CliRunner().invoke(vigil, ["policy", "eval"], input=with_signals + "\n")
    assert result.exit_code == 0 and "no principal.attr.signals" not in result.stderr
    result = CliRunner().invoke(vigil, ["policy", "eval"], input=bare + "\n" + bare + "\n")
    assert result.exit_code == 0
    assert result.stderr.count("note: request 1 has no principal.attr.signals") == 1
    assert result.stdout.count("EFFECT_DENY") == 2


def test_worker_waits_for_a_broker_that_starts_late() -> None:
    import socket
    import threading

    from streams.commands.worker import wait_for_kafka
    from streams.kafka.broker import free_port

    port = free_port()
    listening = threading.Event()

    def listen_later() -> None:
        with socket.create_server(("127.0.0.1", port)) as server:
            listening.set()
            server.settimeout(30)
            conn, _ = server.accept()
            conn.close()

    wait_thread = threading.Timer(0.5, listen_later)
    wait_thread.start()
    assert not listening.is_set()
    wait_for_kafka(f"127.0.0.1:{port}", timeout=60)
    assert listening.is_set()
    wait_thread.join()


def test_worker_gives_up_on_a_broker_that_never_answers() -> None:
    import click

    from streams.commands.worker import wait_for_kafka
    from streams.kafka.broker import free_port

    with pytest.raises(click.ClickException, match="no Kafka broker answers at"):
        wait_for_kafka(f"127.0.0.1:{free_port()}", timeout=0.3)
