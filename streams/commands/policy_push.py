"""``vigil policy push DIR``: compile and test a bundle, then publish it to every worker."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from streams.commands.common import broker_option, kafka_security, load_settings, policy_directory


@click.command("push")
@broker_option
@click.argument(
    "directory", type=click.Path(path_type=Path, file_okay=False, exists=True), required=False
)
@click.option("--skip-tests", is_flag=True, help="Publish without running the bundle's tests.")
def push(broker: str | None, directory: Path | None, skip_tests: bool) -> None:
    """Publish DIR as the policy bundle of every worker (compacted topic vigil.policy-bundles).

    The bundle must compile and its Cerbos-format tests (*_test.yaml) must pass; workers then
    switch to it and re-evaluate every active grant (cause policy-change). Without DIR: the
    default policies (./policies, else the checkout's policies/).
    """

    from streams.bundles.bundle import Bundle
    from streams.bundles.publish import push_bundle
    from streams.policy import PolicyCompileError

    settings = load_settings(broker)
    directory = policy_directory(directory)
    security = kafka_security(settings)
    try:
        bundle = Bundle.from_directory(directory)
    except PolicyCompileError as exc:
        click.echo(f"{directory}: does not compile; nothing published\n{exc}", err=True)
        sys.exit(1)
    if not skip_tests:
        from streams.policy.testsuite import format_human, run_suites

        report = run_suites(directory)
        if not report.ok:
            click.echo(format_human(report), err=True)
            click.echo(f"{directory}: policy tests fail; nothing published", err=True)
            sys.exit(1)
    offset = asyncio.run(
        push_bundle(settings.bootstrap_servers, settings.topic_bundles, bundle, security=security)
    )
    click.echo(
        f"published {bundle.digest} ({len(bundle.files)} files) to "
        f"{settings.topic_bundles} at offset {offset}"
    )
