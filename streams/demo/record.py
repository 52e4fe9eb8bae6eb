"""Record a real ``vigil demo`` run: an asciinema v2 cast and a Markdown transcript.

The recording in docs/ (``docs/demo.cast``, ``docs/demo-recording.md``) is made by this module,
never by hand: it runs ``vigil demo`` without a TTY (the plain, line-per-event view), takes each
line of its output (stderr progress and stdout view, in the order written) with the time it
arrived, and writes both files. Regenerate them with::

    .venv/bin/python -m streams.demo.record --duration 30

Play the cast with ``asciinema play docs/demo.cast`` (or any asciinema v2 player).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click

REPO_ROOT = Path(__file__).resolve().parents[2]
CAST_WIDTH = 200  # the plain view prints one event per line, however long
CAST_HEIGHT = 40


@dataclass(frozen=True, slots=True)
class Recording:
    command: list[str]
    started_at: int  # epoch seconds
    lines: list[tuple[float, str]]  # (seconds since start, line without newline)
    exit_code: int


def run_and_capture(command: list[str], cwd: Path = REPO_ROOT) -> Recording:
    """Run ``command`` with stdout and stderr on one pipe (no TTY); time every line."""
    env = {**os.environ, "COLUMNS": str(CAST_WIDTH), "PYTHONUNBUFFERED": "1"}
    started_at = int(time.time())
    began = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    lines = [(time.monotonic() - began, line.rstrip("\n")) for line in proc.stdout]
    return Recording(command, started_at, lines, proc.wait())


def cast_text(rec: Recording, title: str) -> str:
    """asciinema v2: a JSON header line, then one ``[time, "o", text]`` event per line."""
    header = {
        "version": 2,
        "width": CAST_WIDTH,
        "height": CAST_HEIGHT,
        "timestamp": rec.started_at,
        "title": title,
        "env": {"TERM": "dumb", "SHELL": "/bin/sh"},
    }
    out = [json.dumps(header)]
    out.extend(json.dumps([round(at, 6), "o", text + "\r\n"]) for at, text in rec.lines)
    return "\n".join(out) + "\n"


def transcript_text(rec: Recording, title: str, cast_name: str) -> str:
    """The same lines as a Markdown page, each with its offset from the start."""
    when = datetime.fromtimestamp(rec.started_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = "\n".join(f"+{at:7.3f}s  {text}" for at, text in rec.lines)
    return (
        "# Recording of `vigil demo`\n\n"
        f"Captured from a real run of `{title}` on {when} (exit code {rec.exit_code}), without "
        "a TTY, so the demo printed its plain view: one line per revocation and dead letter, a "
        "status line every few seconds, and a summary. Each line shows when it arrived (seconds "
        f"since the start). The same run as an asciinema v2 cast: [{cast_name}]({cast_name}) "
        f"(`asciinema play docs/{cast_name}`).\n\n"
        "Regenerate both files (they are never edited by hand):\n\n"
        "```sh\n.venv/bin/python -m streams.demo.record --duration 30\n```\n\n"
        "How to read a `REVOKED` line: the subject and grant that were revoked, the actions "
        "denied, the policy rule that denied them, the cause (the signal's event id, then in "
        "brackets its type and what it changed) and the latency from the signal's Kafka "
        "timestamp to the revocation being produced. A `DEAD-LETTER` line is input the "
        "simulator sent broken on purpose, with the reason the worker gave.\n\n"
        f"```text\n{body}\n```\n"
    )


@click.command()
@click.option("--duration", type=float, default=30.0, show_default=True, help="Seconds simulated.")
@click.option("--seed", type=int, default=7, show_default=True, help="Simulator seed.")
@click.option(
    "--cast",
    "cast_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=REPO_ROOT / "docs" / "demo.cast",
    show_default=True,
)
@click.option(
    "--transcript",
    "transcript_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=REPO_ROOT / "docs" / "demo-recording.md",
    show_default=True,
)
def main(duration: float, seed: int, cast_path: Path, transcript_path: Path) -> None:
    """Run ``vigil demo --duration S --seed N`` and write the cast and the transcript."""
    args = ["demo", "--duration", f"{duration:g}", "--seed", str(seed)]
    rec = run_and_capture([sys.executable, "-m", "streams.cli", *args])
    title = shlex.join(["vigil", *args])
    if rec.exit_code != 0:
        tail = "\n".join(text for _, text in rec.lines[-20:])
        raise click.ClickException(f"{title} exited with {rec.exit_code}:\n{tail}")
    cast_path.write_text(cast_text(rec, title))
    transcript_path.write_text(transcript_text(rec, title, cast_path.name))
    click.echo(f"{len(rec.lines)} lines: {cast_path}, {transcript_path}")


if __name__ == "__main__":
    main()
