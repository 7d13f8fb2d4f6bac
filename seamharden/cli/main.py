"""The ``seamharden`` command: a click group whose subcommands live in sibling modules.

Importing this module and ``--help``/``--version`` stay light (no torch, no transformers);
each command imports its library code when it runs (``seamharden.cli.commands``).
User errors (``UserError``, click usage errors) end with one line on stderr and a
distinct exit code; anything else is an internal error and keeps its traceback.
"""

from __future__ import annotations

import sys

import click

from seamharden import __version__
from seamharden.errors import ExitCode, UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seamharden")
def cli() -> None:
    """Make an open-weight causal LM self-destructive under harmful fine-tuning, prove it, publish it."""


def _register() -> None:
    from seamharden.cli import commands

    for command in commands.ALL:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    _register()
    try:
        result = cli.main(args=argv, prog_name="seamharden", standalone_mode=False)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("error: aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as err:
        click.echo(f"error: {err.format_message()}", err=True)
        sys.exit(ExitCode.USAGE)
    sys.exit(result if isinstance(result, int) else ExitCode.OK)
