"""``vigil broker``: the embedded Tansu broker in the foreground, for the demo and local work.

Memory storage only: stopping it loses every topic and record.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType

import click

from streams.commands.common import broker_option, err, load_settings
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.security import PLAINTEXT
from streams.settings import parse_bootstrap


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGINT → KeyboardInterrupt, so ``kill`` stops Tansu too instead of orphaning
    it. SIGINT is set explicitly: a process started in the background of a non-interactive shell
    (``vigil broker &`` in a script or CI job) inherits SIGINT ignored, and Ctrl-C / ``kill -INT``
    would otherwise do nothing."""
    raise KeyboardInterrupt


@click.command("broker")
@broker_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port on 127.0.0.1 (default: the port of --broker, i.e. 9092; 0 = any free port).",
)
@click.option(
    "--create-topics/--no-create-topics",
    default=True,
    show_default=True,
    help="Create Vigil's topics (with explicit configs) once the broker is up.",
)
@click.option("--partitions", type=click.IntRange(min=1), default=None, help="For created topics.")
@click.option("--verbose", is_flag=True, help="Show Tansu's own log output.")
def command(
    broker: str | None,
    port: int | None,
    create_topics: bool,
    partitions: int | None,
    verbose: bool,
) -> None:
    """Run the embedded Kafka-protocol broker (Tansu) until Ctrl-C.

    Prints the bootstrap address on stdout, alone on its line, once clients can connect.
    """
    settings = load_settings(broker, partitions=partitions)
    if port is None:
        port = parse_bootstrap(settings.broker)[0][1]
    embedded = EmbeddedBroker(port or None, quiet=not verbose)
    try:
        bootstrap = embedded.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(f"cannot start the broker: {exc}") from None
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if create_topics:
            asyncio.run(
                ensure_topics(
                    bootstrap,
                    [t for t in settings.all_topics if t not in settings.compacted_topics],
                    settings.partitions,
                    compacted=settings.compacted_topics,
                    security=PLAINTEXT,  # the embedded broker has no TLS/SASL listener
                )
            )
            err(f"created {len(settings.all_topics)} topics, {settings.partitions} partitions each")
        click.echo(bootstrap)
        sys.stdout.flush()
        err(f"Tansu broker on {bootstrap} (memory storage); Ctrl-C stops it")
        code = embedded.wait()
        err(f"broker exited with code {code}")
        sys.exit(code or 1)
    except KeyboardInterrupt:
        err("stopping the broker")
    finally:
        embedded.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
