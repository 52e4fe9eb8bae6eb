"""Kafka connection security (TLS, SASL) for every Vigil client, built in one place.

The ``VIGIL_KAFKA_*`` settings (validated in ``streams.settings``) become one ``KafkaSecurity``
per process. Every aiokafka client takes ``**security.client_kwargs()`` and faust's own clients
take ``security.faust_credentials()``, so the worker, ``produce``, ``tail``, ``policy push``, the
demo and the bench all connect the same way; ``tests/kafka/test_kafka_security_wiring.py``
fails when a client is constructed without them.
"""

from __future__ import annotations

import asyncio
import shlex
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context

from streams.settings import Settings

#: How long an OAUTHBEARER token command may run before the login fails.
TOKEN_COMMAND_TIMEOUT_S = 30.0


class KafkaSecurityError(ValueError):
    """The security settings point at something unusable (bad key password, empty token...)."""


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER token read from a file on every login, so a rotated file is picked up."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def token(self) -> str:
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except OSError as exc:
            raise KafkaSecurityError(f"cannot read OAuth token file {self.path}: {exc}") from None
        token = text.strip()
        if not token:
            raise KafkaSecurityError(f"OAuth token file {self.path} is empty")
        return token

    def __repr__(self) -> str:
        return f"FileTokenProvider({str(self.path)!r})"


class CommandTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER token printed by a command (run on every login; no shell, shell-style words).

    The command's arguments may carry a client secret, so neither ``repr`` nor errors show them.
    """

    def __init__(self, command: str, timeout: float = TOKEN_COMMAND_TIMEOUT_S) -> None:
        self._argv = shlex.split(command)
        if not self._argv:
            raise KafkaSecurityError("OAuth token command is empty")
        self.timeout = timeout

    @property
    def program(self) -> str:
        return self._argv[0]

    async def token(self) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise KafkaSecurityError(
                f"cannot run OAuth token command {self.program}: {exc}"
            ) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise KafkaSecurityError(
                f"OAuth token command {self.program} did not finish in {self.timeout:g}s"
            ) from None
        if proc.returncode != 0:
            raise KafkaSecurityError(
                f"OAuth token command {self.program} exited with {proc.returncode}"
            )
        token = out.decode("utf-8", "replace").strip()
        if not token:
            raise KafkaSecurityError(f"OAuth token command {self.program} printed nothing")
        return token

    def __repr__(self) -> str:
        return f"CommandTokenProvider(program={self.program!r}, args=<hidden>)"


def ssl_context_from(settings: Settings) -> ssl.SSLContext:
    """Verifying client context: the CA file (else the system CAs), the client certificate for
    mutual TLS, and the hostname check unless switched off."""
    s = settings
    password = s.kafka_ssl_key_password.get_secret_value() if s.kafka_ssl_key_password else None
    try:
        context = create_ssl_context(
            cafile=s.kafka_ssl_cafile,
            certfile=s.kafka_ssl_certfile,
            keyfile=s.kafka_ssl_keyfile,
            # without a password, an encrypted key fails here instead of OpenSSL prompting on a
            # terminal the worker does not have
            password=password if password is not None else _no_password,
        )
    except (ssl.SSLError, OSError) as exc:
        files = ", ".join(
            str(p) for p in (s.kafka_ssl_cafile, s.kafka_ssl_certfile, s.kafka_ssl_keyfile) if p
        )
        raise KafkaSecurityError(
            f"cannot load the TLS files ({files or 'system CAs'}): {exc}; "
            "check the files and VIGIL_KAFKA_SSL_KEY_PASSWORD"
        ) from None
    context.check_hostname = s.kafka_ssl_check_hostname
    return context


def _no_password() -> str:
    return ""


@dataclass(frozen=True)
class KafkaSecurity:
    """Resolved connection security, shared by every client of the process."""

    protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    token_provider: AbstractTokenProvider | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """Build the TLS context and token provider; raise ``KafkaSecurityError`` if unusable."""
        s = settings
        protocol = s.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return PLAINTEXT
        context = ssl_context_from(s) if protocol in ("SSL", "SASL_SSL") else None
        provider: AbstractTokenProvider | None = None
        if s.kafka_sasl_mechanism == "OAUTHBEARER":
            if s.kafka_sasl_oauth_token_file is not None:
                provider = FileTokenProvider(s.kafka_sasl_oauth_token_file)
            elif s.kafka_sasl_oauth_token_command is not None:
                provider = CommandTokenProvider(s.kafka_sasl_oauth_token_command)
        password = s.kafka_sasl_password
        return cls(
            protocol=protocol,
            ssl_context=context,
            sasl_mechanism=s.kafka_sasl_mechanism,
            sasl_username=s.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password is not None else None,
            token_provider=provider,
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaConsumer, AIOKafkaProducer and AIOKafkaAdminClient."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_mechanism == "OAUTHBEARER":
                kwargs["sasl_oauth_token_provider"] = self.token_provider
            else:
                kwargs["sasl_plain_username"] = self.sasl_username
                kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def faust_credentials(self) -> Any:
        """faust's ``broker_credentials`` for the same connection (None for PLAINTEXT)."""
        import faust  # lazy: only the worker needs faust

        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context)
        if self.sasl_mechanism == "OAUTHBEARER":
            return faust.OAuthCredentials(
                oauth_cb=self.token_provider, ssl_context=self.ssl_context
            )
        return faust.SASLCredentials(
            username=self.sasl_username,
            password=self.sasl_password,
            ssl_context=self.ssl_context,
            mechanism=self.sasl_mechanism,
        )


#: The embedded broker's (and a default install's) connection: no TLS, no SASL.
PLAINTEXT = KafkaSecurity()
