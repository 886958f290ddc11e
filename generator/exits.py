"""How the command line reports a failure: the message on stderr, the error's exit code.

The group (generator/cli.py) and its subcommands (generator/commands.py) both report through
fail, so that every command says an error the same way. The library raises; each of its errors
names the exit code it means (``exit_code``: 2 for a refused input, else 1), and only this module
turns it into the process's exit.
"""

from __future__ import annotations

from typing import NoReturn

import click


def fail(exc: Exception) -> NoReturn:
    """An error as every command reports it: the message on stderr, its exit code (1 by default)."""
    click.echo(f"Error: {exc}", err=True)
    raise SystemExit(getattr(exc, "exit_code", 1)) from None
