"""``vigil worker``: run one pipeline worker (faust worker process + the batch pipeline)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from streams.commands.common import broker_option, load_settings


@click.command("worker")
@broker_option
@click.option(
    "--policies",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="VIGIL_POLICIES",
    show_envvar=True,
    default=None,
    help="Cerbos policy directory (default: policies).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="VIGIL_DATA_DIR",
    show_envvar=True,
    default=None,
    help="Local state directory (RocksDB); ':memory:' keeps state in memory only.",
)
@click.option(
    "--web-port",
    type=int,
    envvar="VIGIL_WEB_PORT",
    show_envvar=True,
    default=None,
    help="HTTP port for /metrics, /healthz, /_cerbos/health (default 6066).",
)
@click.option(
    "--loglevel",
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
    default="warn",
    show_default=True,
)
def command(
    broker: str | None,
    policies: Path | None,
    data_dir: Path | None,
    web_port: int | None,
    loglevel: str,
) -> None:
    """Consume signals and grants, keep subject state, publish decisions and revocations."""
    from faust import Worker

    from streams.app import create_app
    from streams.kafka.security import KafkaSecurityError
    from streams.policy import PolicyCompileError

    settings = load_settings(broker, policies=policies, data_dir=data_dir, web_port=web_port)
    try:
        app = create_app(settings)
    except PolicyCompileError as exc:
        click.echo(f"policy bundle in {settings.policies} does not compile:\n{exc}", err=True)
        sys.exit(2)
    except KafkaSecurityError as exc:
        raise click.UsageError(f"invalid Kafka security settings: {exc}") from None
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # faust's spinner handler leaves the root logger at DEBUG: that costs CPU on every record.
    logging.getLogger().setLevel(
        getattr(logging, loglevel.upper().replace("CRIT", "CRITICAL").replace("WARN", "WARNING"))
    )
    worker.execute_from_commandline()
