"""``vigil``: the command-line entry point. Sub-commands live in ``streams.commands.<name>``.

Each module exposes ``command: click.Command``. Modules written elsewhere (worker, demo) are
registered only if they exist; one that exists but fails to import is replaced by a stub that
reports the error, so the other commands keep working.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

#: Sub-command modules under ``streams.commands``, in help order.
COMMAND_MODULES = (
    "broker",
    "produce",
    "tail",
    "worker",
    "health",
    "demo",
    "policy",
    "inventory",
    "ssf",
)


def _unavailable(name: str, error: BaseException) -> click.Command:
    """A stand-in command for a module that exists but does not import."""

    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'vigil {name}' is unavailable: {error}")

    stub.help = f"(unavailable: {type(error).__name__})"
    return stub


def load_commands(group: click.Group, names: tuple[str, ...] = COMMAND_MODULES) -> None:
    """Import each ``streams.commands.<name>`` and add its ``command`` to ``group``."""
    for name in names:
        module_name = f"streams.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not written (yet): no such command
            group.add_command(_unavailable(name, exc))
            continue
        except ImportError as exc:
            group.add_command(_unavailable(name, exc))
            continue
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            group.add_command(command, name)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vigil")
@click.option(
    "--log-level",
    envvar="VIGIL_LOG_LEVEL",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level of Vigil and its libraries (logs go to stderr).",
)
def vigil(log_level: str) -> None:
    """Vigil: continuous authorization on Kafka."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


load_commands(vigil)


def main() -> None:
    """Console-script entry point (``vigil = streams.cli:main``)."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    vigil(prog_name="vigil")


if __name__ == "__main__":
    main()
