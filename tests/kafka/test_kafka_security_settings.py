"""``VIGIL_KAFKA_*`` settings: what each combination becomes, what is refused, what stays secret."""

from __future__ import annotations

import asyncio
import shlex
import ssl
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from pydantic import ValidationError

from streams.commands.common import load_settings
from streams.kafka.security import (
    PLAINTEXT,
    CommandTokenProvider,
    FileTokenProvider,
    KafkaSecurity,
    KafkaSecurityError,
)
from streams.settings import Settings
from tests.secure_kafka import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def refused(**values: Any) -> str:
    with pytest.raises(ValidationError) as err:
        Settings(**values)
    return str(err.value)


def test_default_is_plaintext_without_anything_else() -> None:
    sec = KafkaSecurity.from_settings(Settings())
    assert sec is PLAINTEXT
    assert sec.client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert sec.faust_credentials() is None


def test_env_names_are_the_kafka_ones(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    env = {
        "VIGIL_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "VIGIL_KAFKA_SSL_CAFILE": str(pki.ca),
        "VIGIL_KAFKA_SSL_CERTFILE": str(pki.client_cert),
        "VIGIL_KAFKA_SSL_KEYFILE": str(pki.client_key_encrypted),
        "VIGIL_KAFKA_SSL_KEY_PASSWORD": pki.key_password,
        "VIGIL_KAFKA_SSL_CHECK_HOSTNAME": "false",
        "VIGIL_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "VIGIL_KAFKA_SASL_USERNAME": "worker",
        "VIGIL_KAFKA_SASL_PASSWORD": "pw-123",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    kwargs = KafkaSecurity.from_settings(s).client_kwargs()
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker",
        "sasl_plain_password": "pw-123",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False


def test_tls_checks_hostnames_by_default(pki: Pki) -> None:
    sec = KafkaSecurity.from_settings(
        Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca)
    )
    assert sec.ssl_context is not None
    assert sec.ssl_context.check_hostname is True
    assert sec.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_secrets_never_show_in_repr_or_errors(pki: Pki) -> None:
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.client_key_encrypted,
        kafka_ssl_key_password=pki.key_password,
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="worker",
        kafka_sasl_password="pw-very-secret",
    )
    sec = KafkaSecurity.from_settings(s)
    shown = " ".join([repr(s), str(s), repr(sec), str(s.model_dump())])
    for secret in ("pw-very-secret", pki.key_password):
        assert secret not in shown
    oauth = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token_command="get-token --client-secret cs-very-secret",
    )
    provider = KafkaSecurity.from_settings(oauth).token_provider
    assert "cs-very-secret" not in repr(oauth) + repr(provider)
    # a refused combination names the setting, never its value
    message = refused(kafka_security_protocol="PLAINTEXT", kafka_sasl_password="pw-very-secret")
    assert "VIGIL_KAFKA_SASL_PASSWORD" in message
    assert "pw-very-secret" not in message
    with pytest.raises(click.UsageError) as usage:  # what `vigil ...` prints
        load_settings(kafka_security_protocol="PLAINTEXT", kafka_sasl_password="pw-very-secret")
    assert "VIGIL_KAFKA_SASL_PASSWORD" in usage.value.message
    assert "pw-very-secret" not in usage.value.message


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs VIGIL_KAFKA_SASL_MECHANISM"),
        ({"kafka_security_protocol": "SSL", "kafka_sasl_mechanism": "PLAIN"}, "has no SASL"),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"}, "has no SASL"),
        ({"kafka_ssl_check_hostname": False}, "does not use TLS"),
        ({"kafka_ssl_cafile": "CA"}, "does not use TLS"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
            "VIGIL_KAFKA_SSL_CAFILE=/nonexistent/ca.pem is not a readable file",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "KEY"},
            "KEYFILE set without VIGIL_KAFKA_SSL_CERTFILE",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-256"},
            "needs VIGIL_KAFKA_SASL_USERNAME and VIGIL_KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
            },
            "sends the password in clear text",
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_sasl_oauth_token_command": "t",
            },
            "sends the bearer token in clear text",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "exactly one of",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_sasl_oauth_token_command": "t",
                "kafka_sasl_password": "p",
            },
            "takes a token, not a password",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
                "kafka_sasl_oauth_token_command": "t",
            },
            "PLAIN does not use a token",
        ),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"},
            "kafka_sasl_mechanism",
        ),
    ],
)
def test_unsafe_or_incomplete_combinations_are_refused(
    pki: Pki, values: dict[str, Any], reason: str
) -> None:
    files = {"CA": str(pki.ca), "KEY": str(pki.client_key)}
    values = {k: files.get(v, v) if isinstance(v, str) else v for k, v in values.items()}
    assert reason in refused(**values)


@pytest.mark.parametrize(
    "values",
    [
        {
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-256",
            "kafka_sasl_username": "u",
            "kafka_sasl_password": "p",
        },
        {"kafka_security_protocol": "SSL"},  # system CAs
        {"kafka_security_protocol": "PLAINTEXT", "kafka_ssl_cafile": ""},  # empty env = unset
        {"kafka_security_protocol": "", "kafka_sasl_mechanism": ""},  # empty env = default
    ],
)
def test_sound_combinations_are_accepted(values: dict[str, Any]) -> None:
    KafkaSecurity.from_settings(Settings(**values))


def test_faust_gets_the_same_connection(pki: Pki, tmp_path: Path) -> None:
    import faust

    def creds(**values: Any) -> Any:
        return KafkaSecurity.from_settings(Settings(**values)).faust_credentials()

    ssl_only = creds(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca)
    assert isinstance(ssl_only, faust.SSLCredentials)
    scram = creds(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert isinstance(scram, faust.SASLCredentials)
    assert (scram.protocol.value, scram.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (scram.username, scram.password) == ("u", "p")
    token = tmp_path / "token"
    token.write_text("t")
    oauth = creds(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token_file=token,
    )
    assert isinstance(oauth, faust.OAuthCredentials)
    assert isinstance(oauth.oauth_cb, FileTokenProvider)
    assert oauth.protocol.value == "SASL_SSL"


async def test_token_file_problems_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  \n")
    with pytest.raises(KafkaSecurityError, match="is empty"):
        await FileTokenProvider(path).token()
    path.unlink()
    with pytest.raises(KafkaSecurityError, match="cannot read"):
        await FileTokenProvider(path).token()


async def test_token_command_problems_are_clear_and_hide_arguments() -> None:
    failing = shlex.join([sys.executable, "-c", "import sys; sys.exit(3)", "secret-arg"])
    with pytest.raises(KafkaSecurityError, match="exited with 3") as err:
        await CommandTokenProvider(failing).token()
    assert "secret-arg" not in str(err.value)
    with pytest.raises(KafkaSecurityError, match="printed nothing"):
        await CommandTokenProvider(shlex.join([sys.executable, "-c", "pass"])).token()
    with pytest.raises(KafkaSecurityError, match="cannot run"):
        await CommandTokenProvider("/nonexistent/token-tool").token()
    slow = shlex.join([sys.executable, "-c", "import time; time.sleep(30)"])
    with pytest.raises(KafkaSecurityError, match="did not finish"):
        await asyncio.wait_for(CommandTokenProvider(slow, timeout=0.5).token(), 20)
