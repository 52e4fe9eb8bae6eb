"""``vigil health``: ask a worker's ``/healthz`` whether it is ready, optionally waiting for it.

A worker answers 503 until it has joined its group and restored its partitions' state (several
seconds after start); scripts that start one in the background run ``vigil health --wait`` before
producing, so their first records are not waiting on a worker that is still starting.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

import click

from streams.commands.common import err, load_settings, setting_option

POLL_SECONDS = 0.25


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """One GET of ``url``: (ready, what it said or why it could not)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return True, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read().decode('utf-8', 'replace')}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"no answer ({reason})"


@click.command("health")
@setting_option(
    "--web-port",
    type=int,
    help="The worker's HTTP port (default 6066).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The worker's host.")
@click.option("--wait", is_flag=True, help="Poll until the worker is ready (or --timeout).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds --wait polls before giving up.",
)
def command(web_port: int | None, host: str, wait: bool, timeout: float) -> None:
    """Exit 0 if the worker's /healthz says ready (its JSON on stdout), else 1 with the reason.

    With --wait, poll /healthz every 0.25 s until it is ready or --timeout seconds have passed."""
    port = web_port if web_port is not None else load_settings().web_port
    url = f"http://{host}:{port}/healthz"
    deadline = time.monotonic() + timeout
    while True:
        ready, said = probe(url, timeout=max(1.0, min(5.0, timeout)))
        if ready:
            try:
                click.echo(json.dumps(json.loads(said), separators=(",", ":")))
            except ValueError:
                click.echo(said)
            return
        if not wait or time.monotonic() >= deadline:
            waited = f" after {timeout:g} s" if wait else ""
            err(f"worker at {url} is not ready{waited}: {said}")
            sys.exit(1)
        time.sleep(POLL_SECONDS)
