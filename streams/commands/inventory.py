"""``vigil inventory``: what the policies cover, who owns it, which signals gate it, and the gaps.

The inventory itself is `streams.policy.inventory` (from the compiled bundle); ``--grants``
adds the live state read from Kafka by `streams.processing.live_state`. This module only
renders it: a table (default), JSON (``-o json``) or Markdown (``-o markdown``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from streams.commands.common import (
    broker_option,
    kafka_security,
    load_settings,
    policy_directory,
    write_stdout_line,
)
from streams.models.live_state import LiveState
from streams.policy.inventory import Inventory, build_inventory
from streams.policy.model import PolicyCompileError


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Plain columns; a cell's lines (``\\n``) continue on the following lines."""
    split = [[cell.split("\n") for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in split:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in cell))

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    for row in split:
        height = max(len(cell) for cell in row)
        for k in range(height):
            out.append(line([cell[k] if k < len(cell) else "" for cell in row]))
    return out


def _action_rows(inv: Inventory, sep: str) -> list[list[str]]:
    rows = []
    for a in inv.actions:
        signals = list(a.signals) + (["(unresolved)"] if a.unresolved else [])
        depth = "" if a.max_delegation_depth is None else str(a.max_delegation_depth)
        rows.append(
            [
                a.kind,
                a.action,
                a.owner or "(none)",
                sep.join(a.allowed_roles) or "(none)",
                sep.join(signals) or "-",
                depth or "-",
            ]
        )
    return rows


ACTION_HEADERS = ["KIND", "ACTION", "OWNER", "ALLOWED ROLES", "GATING SIGNALS", "MAX DEPTH"]
POLICY_HEADERS = ["FILE", "POLICY", "NAME", "OWNER"]
GAP_HEADERS = ["GAP", "SUBJECT", "DETAIL"]


def render_table(inv: Inventory) -> list[str]:
    out = _table(ACTION_HEADERS, _action_rows(inv, "\n"))
    out += [
        "",
        *_table(
            POLICY_HEADERS, [[p.file, p.kind, p.name, p.owner or "(none)"] for p in inv.policies]
        ),
    ]
    gaps = [[g.kind, g.subject, g.detail] for g in inv.gaps]
    out += ["", *(_table(GAP_HEADERS, gaps) if gaps else ["No gaps found."])]
    out += ["", _live_note(inv)]
    return out


def _live_note(inv: Inventory) -> str:
    if inv.live_counts is None:
        return "Live gaps not checked: run with --grants to read the grants, checks and signals."
    c = inv.live_counts
    return (
        f"Live state read: {c['grants']} active grant(s), signal state of {c['subjects']} "
        f"subject(s), {c['checks']} check decision(s)."
    )


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(inv: Inventory) -> list[str]:
    out = [f"# Capability inventory ({inv.digest})", "", "## Actions", ""]
    rows = [
        [f"`{c}`" if i == 4 and c != "-" else c for i, c in enumerate(r)]
        for r in _action_rows(inv, ", ")
    ]
    rows = [[r[0], r[1], r[2], r[3], r[4].replace(", ", "`, `"), r[5]] for r in rows]
    out += _md_table(ACTION_HEADERS, rows)
    out += ["", "## Policies", ""]
    out += _md_table(
        POLICY_HEADERS, [[p.file, p.kind, p.name, p.owner or "(none)"] for p in inv.policies]
    )
    out += ["", "## Gaps", ""]
    gaps = [[g.kind, g.subject, g.detail] for g in inv.gaps]
    out += _md_table(GAP_HEADERS, gaps) if gaps else ["No gaps found."]
    out += ["", _live_note(inv)]
    return out


@click.command("inventory")
@click.option(
    "--policies",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Policy directory (default: ./policies, else the checkout's policies/).",
)
@click.option(
    "--grants",
    is_flag=True,
    help="Also read the live state from Kafka (the state changelog: active grants and signal "
    "dimensions; the decisions topic: checks) and report the live gaps.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "markdown"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="With --grants: seconds to wait for the decisions topic to exist.",
)
@broker_option
def command(
    directory: Path | None, grants: bool, output: str, timeout: float, broker: str | None
) -> None:
    """List every resource kind and action the policies cover, its owner, the signals that
    gate it, and the gaps (policies without owner; with --grants also actions without policy,
    signals never sent, delegations deeper than allowed)."""
    directory = policy_directory(directory)
    live: LiveState | None = None
    if grants:
        from streams.processing.live_state import read_live_state

        settings = load_settings(broker)
        try:
            live = asyncio.run(
                read_live_state(
                    bootstrap=settings.bootstrap_servers,
                    changelog_topic=settings.topic_changelog,
                    decisions_topic=settings.topic_decisions,
                    registry_url=settings.schema_registry_url,
                    security=kafka_security(settings),
                    timeout=timeout,
                )
            )
        except Exception as exc:
            raise click.ClickException(
                f"cannot read the live state from {settings.bootstrap_servers}: {exc}"
            ) from None
    try:
        inv = build_inventory(directory, live)
    except PolicyCompileError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        raise click.exceptions.Exit(1) from None
    if output == "json":
        write_stdout_line(json.dumps(inv.to_json(), indent=2, ensure_ascii=False))
        return
    lines = render_markdown(inv) if output == "markdown" else render_table(inv)
    write_stdout_line("\n".join(lines))
