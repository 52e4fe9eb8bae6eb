"""``vigil policy push DIR``: compile and test a bundle, then publish it to every worker; and the
operator's tools for bundles in a running fleet (keygen, confirm, status)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from streams.commands.common import broker_option, kafka_security, load_settings, policy_directory

_SIGN_KEY = click.option(
    "--sign-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    envvar="VIGIL_BUNDLE_SIGN_KEY",
    show_envvar=True,
    default=None,
    help="Ed25519 private key (PEM or OpenSSH) to sign the record with.",
)
_OUTPUT = click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)


def _signer(sign_key: Path | None) -> Any:
    from streams.bundles.signing import KeyFileError, load_private_key

    if sign_key is None:
        return None
    try:
        return load_private_key(sign_key)
    except KeyFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--sign-key") from None


@click.command("push")
@broker_option
@click.argument(
    "directory", type=click.Path(path_type=Path, file_okay=False, exists=True), required=False
)
@click.option("--skip-tests", is_flag=True, help="Publish without running the bundle's tests.")
@_SIGN_KEY
@click.option(
    "--dry-run",
    is_flag=True,
    help="Publish nothing: print the active grants (from the state changelog) the bundle would "
    "revoke, grouped by policy, action and cause.",
)
@_OUTPUT
def push(
    broker: str | None,
    directory: Path | None,
    skip_tests: bool,
    sign_key: Path | None,
    dry_run: bool,
    output: str,
) -> None:
    """Publish DIR as the policy bundle of every worker (compacted topic vigil.policy-bundles).

    The bundle must compile and its Cerbos-format tests (*_test.yaml) must pass; workers then
    count the grants it would revoke (blast-radius guard), switch or hold, and re-evaluate every
    active grant (cause policy-change). Without DIR: the default policies (./policies, else
    the checkout's policies/).
    """
    from streams.bundles.bundle import Bundle, BundleError
    from streams.bundles.publish import push_bundle
    from streams.bundles.signing import sign
    from streams.policy import PolicyCompileError

    settings = load_settings(broker)
    directory = policy_directory(directory)
    security = kafka_security(settings)
    private = _signer(sign_key)
    try:
        bundle = Bundle.from_directory(directory)
    except PolicyCompileError as exc:
        click.echo(f"{directory}: does not compile; nothing published\n{exc}", err=True)
        sys.exit(1)
    except BundleError as exc:
        click.echo(f"{directory}: {exc}; nothing published", err=True)
        sys.exit(1)
    if not skip_tests:
        from streams.policy.testsuite import format_human, run_suites

        report = run_suites(directory)
        if not report.ok:
            click.echo(format_human(report), err=True)
            click.echo(f"{directory}: policy tests fail; nothing published", err=True)
            sys.exit(1)
    if dry_run:
        _print_dry_run(settings, directory, bundle, output, security)
        return
    if private is not None:
        kid, signature = sign(private, bundle.signed_bytes())
        bundle = Bundle(
            bundle.digest, bundle.files, bundle.pushed_at, bundle.source, None, kid, signature
        )
    offset = asyncio.run(
        push_bundle(settings.bootstrap_servers, settings.topic_bundles, bundle, security=security)
    )
    signed = f", signed by {bundle.key_id}" if bundle.key_id else ", unsigned"
    click.echo(
        f"published {bundle.digest} ({len(bundle.files)} files{signed}) to "
        f"{settings.topic_bundles} at offset {offset}"
    )


def _print_dry_run(settings: Any, directory: Path, bundle: Any, output: str, security: Any) -> None:
    from streams.app import build_pipeline
    from streams.defaults import MissingFileError, with_resolved_files
    from streams.processing.dryrun import dry_run, read_changelog

    assert bundle.engine is not None
    try:  # the risk model the workers use (./risk/model.yaml, else the checkout's)
        resolved, _ = with_resolved_files(
            settings.model_copy(update={"policies": directory, "output_format": "json"})
        )
    except MissingFileError as exc:
        raise click.UsageError(str(exc)) from None
    pipeline = build_pipeline(resolved)
    stores = asyncio.run(
        read_changelog(settings.bootstrap_servers, settings.topic_changelog, security=security)
    )
    result = dry_run(pipeline, bundle.engine, stores, int(time.time() * 1000))
    report = result.report()
    if output == "json":
        click.echo(json.dumps(report))
        return
    click.echo(
        f"dry run of {report['digest']}: would revoke {report['would_revoke']} of "
        f"{report['active_grants']} active grants (nothing published)"
    )
    if report["groups"]:
        click.echo(f"{'GRANTS':>6}  {'POLICY':<32} {'ACTION':<16} CAUSE")
    for group in report["groups"]:
        click.echo(
            f"{group['grants']:>6}  {group['policy']:<32} {group['action']:<16} {group['cause']}"
        )
        click.echo(
            f"        {', '.join(group['grant_ids'][:20])}"
            + (" ..." if len(group["grant_ids"]) > 20 else "")
        )


@click.command("keygen")
@click.argument("private_key", type=click.Path(path_type=Path, dir_okay=False))
def keygen(private_key: Path) -> None:
    """Write a new Ed25519 key pair: PRIVATE_KEY (PEM, mode 0600) and PRIVATE_KEY.pub.

    Give the private key to `vigil policy push --sign-key`, the public key (or a file with
    several, for rotation) to `vigil worker --bundle-public-keys`."""
    from streams.bundles.signing import generate_keypair, load_public_keys

    if private_key.exists():
        raise click.BadParameter(f"{private_key} exists; not overwritten", param_hint="PRIVATE_KEY")
    public = generate_keypair(private_key)
    (kid,) = load_public_keys(public)
    click.echo(f"wrote {private_key} and {public} (key id {kid})")


@click.command("confirm")
@broker_option
@click.argument("digest")
@_SIGN_KEY
def confirm(broker: str | None, digest: str, sign_key: Path | None) -> None:
    """Let workers switch to the held bundle DIGEST although it revokes more grants than the
    blast-radius guard allows. (To roll back instead, push the previous bundle again.)"""
    from streams.bundles.bundle import BundleError, Confirmation, check_digest
    from streams.bundles.publish import push_bundle
    from streams.bundles.signing import sign

    settings = load_settings(broker)
    try:
        check_digest(digest)
    except BundleError as exc:
        raise click.BadParameter(str(exc), param_hint="DIGEST") from None
    private = _signer(sign_key)
    record = Confirmation(digest, int(time.time() * 1000), f"{socket.gethostname()}")
    if private is not None:
        kid, signature = sign(private, record.signed_bytes())
        record = Confirmation(record.digest, record.confirmed_at, record.source, kid, signature)
    offset = asyncio.run(
        push_bundle(
            settings.bootstrap_servers,
            settings.topic_bundles,
            record,
            security=kafka_security(settings),
        )
    )
    click.echo(f"confirmed {digest} on {settings.topic_bundles} at offset {offset}")


@click.command("status")
@broker_option
@click.option(
    "--max-age", type=float, default=30.0, show_default=True, help="Ignore heartbeats older (s)."
)
@_OUTPUT
def status(broker: str | None, max_age: float, output: str) -> None:
    """The newest bundle on the bundle topic, then each worker's running bundle and any pending
    (evaluating or held) bundle, from the workers' heartbeats (topic vigil.workers) of this
    consumer group."""
    from streams.app import WORKERS_TOPIC
    from streams.bundles.status import read_bundle_topic, read_heartbeats

    settings = load_settings(broker)
    security = kafka_security(settings)
    beats = asyncio.run(
        read_heartbeats(settings.bootstrap_servers, WORKERS_TOPIC, security=security)
    )
    topic = asyncio.run(
        read_bundle_topic(settings.bootstrap_servers, settings.topic_bundles, security=security)
    )
    now = time.time() * 1000
    workers = [
        b
        for b in beats.values()
        if b.get("group_id") == settings.group_id and now - b.get("at", 0) <= max_age * 1000
    ]
    if output == "json":
        click.echo(json.dumps({"topic": topic, "workers": workers}))
        return
    newest = topic["newest_bundle"]
    if newest is None:
        click.echo(f"{settings.topic_bundles}: no bundle pushed")
    else:
        signed = f"signed by {newest['key_id']}" if newest["key_id"] else "unsigned"
        confirmed = ", confirmed" if newest["digest"] in topic["confirmed"] else ""
        click.echo(
            f"{settings.topic_bundles}: newest bundle {newest['digest']} ({signed}{confirmed}) "
            f"from {newest['source']}"
        )
    if not workers:
        click.echo(f"no heartbeat from a worker of group {settings.group_id} in {max_age:g}s")
        return
    for beat in sorted(workers, key=lambda b: str(b["worker_id"])):
        click.echo(f"{beat['worker_id']}: running {beat['policy_digest']}")
        pending = beat.get("pending_bundle")
        if pending:
            click.echo(
                f"  {pending['state'].upper()} {pending['digest']}: would revoke "
                f"{pending['would_revoke']} of {pending['active_grants']} active grants"
            )
            for group in pending.get("by_cause", []):
                click.echo(
                    f"    {group['grants']:>6}  {group['policy']}  {group['action']}  "
                    f"{group['cause']}"
                )
