"""``vigil worker``: run one pipeline worker (faust worker process + the batch pipeline)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from streams.commands.common import broker_option, err, load_settings, setting_option
from streams.commands.policy import engine_options

#: How long a starting worker waits for its Kafka broker (started alongside it, e.g. in a script).
BROKER_WAIT_SECONDS = 30.0


def wait_for_kafka(broker: str, timeout: float = BROKER_WAIT_SECONDS) -> None:
    """Return once one bootstrap server accepts TCP connections; a usage error after ``timeout``.

    A broker started in the background a moment earlier is not listening yet; without this wait
    the worker would fail on its first request instead of starting a second later."""
    from streams.kafka.broker import wait_for_port
    from streams.settings import parse_bootstrap

    servers = parse_bootstrap(broker)
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        for host, port in servers:
            try:
                wait_for_port(host, port, timeout=0.0)
                return
            except TimeoutError:
                pass
        if time.monotonic() >= deadline:
            raise click.ClickException(f"no Kafka broker answers at {broker} after {timeout:g} s")
        if not announced:
            err(f"vigil worker: waiting up to {timeout:g} s for Kafka at {broker}")
            announced = True
        time.sleep(0.2)


@click.command("worker")
@broker_option
@setting_option(
    "--policies",
    type=click.Path(path_type=Path, file_okay=False),
    help="Cerbos policy directory (default: ./policies, else the checkout's policies/).",
)
@setting_option(
    "--risk-model",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Risk model YAML (default: ./risk/model.yaml, else the checkout's; a file given here "
    "must exist).",
)
@setting_option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Local state directory (RocksDB); ':memory:' keeps state in memory only.",
)
@setting_option(
    "--web-port",
    type=int,
    help="HTTP port for /metrics, /healthz, /_cerbos/health (default 6066).",
)
@setting_option(
    "--web-host",
    help="Address the worker's HTTP listener (/metrics, /healthz) binds to (default 127.0.0.1; "
    "0.0.0.0 for a remote Prometheus or Kubernetes probes).",
)
@setting_option(
    "--bundle-public-keys",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Ed25519 public keys; accept only policy bundles signed by one of them.",
)
@setting_option(
    "--api-port",
    type=int,
    help="Port of the Cerbos-compatible check API (default 3592; 0 turns it off).",
)
@setting_option(
    "--api-host",
    help="Address the check API binds to (default 127.0.0.1).",
)
@setting_option(
    "--api-tokens",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML file of bearer tokens for the check API (docs/check-api.md); unset: no auth.",
)
@setting_option(
    "--webhooks",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML file of webhook targets that receive revocations (docs/check-api.md).",
)
@setting_option(
    "--aux-data-config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="YAML file with Cerbos' auxData block: key sets that verify auxData.jwt tokens of "
    "checks and plans (docs/configuration.md); unset: requests with a token are refused.",
)
@setting_option(
    "--ssf-config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Shared Signals YAML: transmitters whose SETs we accept (docs/shared-signals.md).",
)
@engine_options
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes to run on this host, all in the same consumer group (one per core "
    "uses every core). Process i gets <data-dir>/process-<i>, --web-port + i and --api-port + i; "
    "SIGTERM/SIGINT stop them all (docs/operations.md).",
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
    risk_model: Path | None,
    data_dir: Path | None,
    web_port: int | None,
    web_host: str | None,
    bundle_public_keys: Path | None,
    api_port: int | None,
    api_host: str | None,
    api_tokens: Path | None,
    webhooks: Path | None,
    aux_data_config: Path | None,
    ssf_config: Path | None,
    processes: int,
    loglevel: str,
    **engine: Any,
) -> None:
    """Consume signals and grants, keep subject state, publish decisions and revocations."""
    from faust import Worker

    from streams.app import create_app
    from streams.bundles.signing import KeyFileError
    from streams.defaults import MissingFileError, with_resolved_files
    from streams.kafka.security import KafkaSecurityError
    from streams.policy import PolicyCompileError
    from streams.policy.api import UnsupportedOption
    from streams.policy.auxdata import AuxDataConfigError
    from streams.ssf.config import SsfConfigError
    from streams.ssf.signing import SigningKeyError
    from streams.web.tokens import TokenFileError
    from streams.web.webhooks import WebhookFileError

    settings = load_settings(
        broker,
        policies=policies,
        risk_model=risk_model,
        data_dir=data_dir,
        web_port=web_port,
        web_host=web_host,
        bundle_public_keys=bundle_public_keys,
        api_port=api_port,
        api_host=api_host,
        api_tokens=api_tokens,
        webhooks=webhooks,
        aux_data_config=aux_data_config,
        ssf_config=ssf_config,
        globals=engine["globals_"],
        default_policy_version=engine["default_policy_version"],
        # flags: only an explicit flag overrides VIGIL_LENIENT_SCOPE_SEARCH etc.
        lenient_scope_search=engine["lenient_scope_search"] or None,
        strict_evaluation=engine["strict_evaluation"] or None,
        schema_enforcement=engine["schema_enforcement"],
    )
    if settings.ssf_config is not None and not settings.api_port:
        raise click.UsageError("--ssf-config needs the API listener (--api-port is 0)")
    try:
        settings, files = with_resolved_files(settings)
    except MissingFileError as exc:
        raise click.UsageError(str(exc)) from None
    if processes > 1:  # settings and files are checked once, here; each child checks again
        from streams.commands.supervise import child_args, executable, supervise

        err(f"vigil worker: {processes} processes in group {settings.group_id}")
        sys.exit(
            supervise(
                [
                    [
                        *executable(),
                        *child_args(
                            sys.argv[1:], i, settings.data_dir, settings.web_port, settings.api_port
                        ),
                    ]
                    for i in range(processes)
                ]
            )
        )
    err(f"vigil worker: {files.describe()}; web port {settings.web_port}")
    try:
        app = create_app(settings)
    except PolicyCompileError as exc:
        click.echo(f"policy bundle in {settings.policies} does not compile:\n{exc}", err=True)
        sys.exit(2)
    except KeyFileError as exc:
        click.echo(f"--bundle-public-keys: {exc}", err=True)
        sys.exit(2)
    except KafkaSecurityError as exc:
        raise click.UsageError(f"invalid Kafka security settings: {exc}") from None
    except (SsfConfigError, SigningKeyError) as exc:
        raise click.UsageError(f"--ssf-config: {exc}") from None
    except (TokenFileError, UnsupportedOption, OSError) as exc:  # token file, API TLS files
        raise click.UsageError(f"invalid check API or engine settings: {exc}") from None
    except WebhookFileError as exc:
        raise click.UsageError(f"--webhooks: {exc}") from None
    except AuxDataConfigError as exc:
        raise click.UsageError(f"--aux-data-config: {exc}") from None
    # Settings and files are checked (above) before waiting: a typo fails at once, not in 30 s.
    if settings.kafka_security_protocol == "PLAINTEXT":
        # a bare TCP probe of a TLS listener would look like a failed handshake in its logs
        wait_for_kafka(settings.broker)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    if not sys.stdout.isatty():
        worker.spinner = None  # faust writes cursor escapes to stdout even into a pipe or file
    # faust's spinner handler leaves the root logger at DEBUG: that costs CPU on every record.
    logging.getLogger().setLevel(
        getattr(logging, loglevel.upper().replace("CRIT", "CRITICAL").replace("WARN", "WARNING"))
    )
    worker.execute_from_commandline()
