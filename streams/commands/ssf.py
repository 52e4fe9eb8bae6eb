"""``vigil ssf status``: each configured transmitter's stream, as the transmitter reports it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click


async def _status(config_path: Path) -> list[dict[str, Any]]:
    import aiohttp

    from streams.ssf.config import load_ssf_config
    from streams.ssf.management import StreamClient

    config = load_ssf_config(config_path)
    rows: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for transmitter in config.transmitters:
            row: dict[str, Any] = {
                "transmitter": transmitter.name,
                "issuer": transmitter.issuer,
                "delivery": transmitter.delivery,
            }
            rows.append(row)
            if not transmitter.manage_stream:
                row["stream"] = "not managed (manage_stream: false)"
                continue
            client = StreamClient(transmitter, session)
            try:
                await client.discover()
                streams = await client.streams()
                if not streams:
                    row["stream"] = "none"
                    continue
                stream = streams[0]
                row["stream_id"] = stream.get("stream_id")
                row["delivery_method"] = stream.get("delivery", {}).get("method")
                row["endpoint_url"] = stream.get("delivery", {}).get("endpoint_url")
                row["events_delivered"] = len(stream.get("events_delivered") or [])
                status = await client.status(str(stream["stream_id"]))
                row["status"] = status.get("status", "unknown")
                if status.get("reason"):
                    row["reason"] = status["reason"]
            except Exception as exc:  # one transmitter down must not hide the others
                row["error"] = f"{type(exc).__name__}: {exc}"
    return rows


@click.group("ssf")
def command() -> None:
    """Shared Signals (docs/shared-signals.md)."""


@command.command("status")
@click.option(
    "--ssf-config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    envvar="VIGIL_SSF_CONFIG",
    show_envvar=True,
    required=True,
    help="The worker's Shared Signals YAML.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per transmitter.")
def status(ssf_config: Path, as_json: bool) -> None:
    """Each transmitter's stream: id, delivery, status, events delivered (exit 1 on an error)."""
    from streams.ssf.config import SsfConfigError

    try:
        rows = asyncio.run(_status(ssf_config))
    except SsfConfigError as exc:
        raise click.UsageError(str(exc)) from None
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, sort_keys=True))
        else:
            click.echo("  ".join(f"{k}={v}" for k, v in row.items() if k not in ("issuer",)))
    if any("error" in row for row in rows):
        raise SystemExit(1)
