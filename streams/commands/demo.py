"""``vigil demo`` (what ``make demo`` runs): the whole pipeline on one machine, live.

Starts an embedded broker (unless ``--broker`` names one), a worker process, a seeded simulator
of users and agents, and a live view of decisions, revocations and dead letters. The moving
parts live in ``streams.demo``; this module only turns options into a ``DemoConfig``.
"""

from __future__ import annotations

import sys

import click

from streams.commands.common import broker_option, kafka_security, load_settings


@click.command("demo")
@broker_option
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Simulate for S seconds once the worker is ready, then stop (default: until Ctrl-C).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=50.0,
    show_default=True,
    metavar="N",
    help="Signals per second.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Simulator seed.")
def command(broker: str | None, duration: float | None, rate: float, seed: int) -> None:
    """Run broker, worker, signal simulator and a live view of what gets revoked and why.

    Without --broker an embedded broker is started on a free port and thrown away afterwards.
    Ctrl-C (or --duration) stops everything in order and removes the temporary state.
    """
    from streams.demo.run import DemoConfig, default_policies, default_risk_model, run
    from streams.kafka.security import PLAINTEXT

    settings = load_settings(broker)
    config = DemoConfig(
        settings=settings,
        external_broker=broker is not None,
        duration=duration,
        rate=rate,
        seed=seed,
        policies=default_policies(settings),
        risk_model=default_risk_model(settings),
        # the embedded broker (no --broker) is plaintext whatever VIGIL_KAFKA_* say
        security=kafka_security(settings) if broker is not None else PLAINTEXT,
    )
    sys.exit(run(config))
