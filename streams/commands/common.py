"""Pieces every ``vigil`` sub-command shares: the ``--broker`` option, settings, JSON output.

Each command module exposes ``command: click.Command``; ``streams.cli`` registers it.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError

from streams.settings import Settings

if TYPE_CHECKING:
    from streams.kafka.security import KafkaSecurity

F = TypeVar("F", bound=Callable[..., Any])


def broker_option(func: F) -> F:
    """``--broker`` (env ``VIGIL_BROKER``); every command takes it so scripts can pass it anywhere."""
    option = click.option(
        "--broker",
        "broker",
        envvar="VIGIL_BROKER",
        show_envvar=True,
        default=None,
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (host:port, kafka://host:port, comma list). "
        "Default: 127.0.0.1:9092.",
    )
    return option(func)


def setting_option(flag: str, **kwargs: Any) -> Callable[[F], F]:
    """A worker setting as a flag: ``--web-port`` reads ``VIGIL_WEB_PORT`` too (shown in
    ``--help``); unset, the ``Settings`` default applies."""
    envvar = "VIGIL_" + flag.removeprefix("--").upper().replace("-", "_")
    return click.option(flag, envvar=envvar, show_envvar=True, default=None, **kwargs)


def load_settings(broker: str | None = None, **overrides: Any) -> Settings:
    """``Settings`` from the environment, with command-line values on top.

    A malformed value becomes a click usage error (exit 2, one line) instead of a traceback.
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    if broker:
        values["broker"] = broker
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise click.UsageError(f"invalid settings: {problems}") from None


def policy_directory(directory: Path | None) -> Path:
    """DIRECTORY as given, or the default (``./policies``, else the checkout's ``policies/``)."""
    from streams.defaults import MissingFileError, resolve_policies

    if directory is not None:
        return directory
    try:
        resolved, note = resolve_policies(None, explicit=False)
    except MissingFileError as exc:
        raise click.UsageError(str(exc)) from None
    if note:
        click.echo(f"policies: {resolved} ({note})", err=True)
    return resolved


def kafka_security(settings: Settings) -> KafkaSecurity:
    """The TLS/SASL connection of every Kafka client of a command; unusable files or tokens
    become a usage error (exit 2) before anything connects."""
    from streams.kafka.security import KafkaSecurity, KafkaSecurityError

    try:
        return KafkaSecurity.from_settings(settings)
    except KafkaSecurityError as exc:
        raise click.UsageError(f"invalid Kafka security settings: {exc}") from None


async def start_client(client: Any, settings: Settings) -> None:
    """Start an aiokafka producer or consumer; an unreachable broker is a one-line CLI error."""
    try:
        await client.start()
    except Exception as exc:
        await client.stop()
        raise click.ClickException(
            f"cannot connect to {settings.bootstrap_servers}: {exc}"
        ) from None


def bytes_to_text(value: bytes) -> str:
    """Bytes as UTF-8 text when they are text, else base64 (dead-letter payloads, binary keys)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for what decoded records may hold besides plain JSON types."""
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes_to_text(bytes(obj))
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps_line(obj: Any) -> str:
    """One compact JSON line (no newline), UTF-8 kept readable, for ``jq``-friendly output."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=json_default)


def err(message: str) -> None:
    """A line on stderr; stdout is reserved for data."""
    click.echo(message, err=True)


def write_stdout_line(line: str) -> bool:
    """Write one line to stdout and flush it; False once the reader has gone (``| head``)."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        return False
    return True
