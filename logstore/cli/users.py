"""``logstore users``: the SASL users file of ``logstore serve --sasl-users``.

Writes credentials (SCRAM-SHA-256 salt, iterations, StoredKey, ServerKey),
never passwords; the password is read from stdin when it is not a terminal
(its first line), else prompted for twice without echo.
"""

from __future__ import annotations

import sys

import click

from logstore.server import add_user, load_users, remove_user

from . import common


@click.group()
def users() -> None:
    """Manage the users file that `logstore serve --sasl-users FILE` authenticates against."""


@users.command("add")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name")
@click.option(
    "--iterations",
    type=click.IntRange(min=4096),
    default=8192,
    show_default=True,
    help="PBKDF2 iterations of the SCRAM-SHA-256 credential.",
)
@common.one_line_errors
def add(file: str, name: str, iterations: int) -> None:
    """Add user NAME to FILE (made if missing), or give NAME a new password.

    The password is the first line of stdin, or prompted for on a terminal.
    """
    if sys.stdin.isatty():
        password = click.prompt(
            f"password for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    replaced = add_user(file, name, password, iterations=iterations)
    click.echo(f"{'updated' if replaced else 'added'} {name} in {file}", err=True)


@users.command("remove")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.argument("name")
@common.one_line_errors
def remove(file: str, name: str) -> None:
    """Remove user NAME from FILE (exit status 1 if it is not there)."""
    if not remove_user(file, name):
        raise click.ClickException(f"{file}: no user {name!r}")
    click.echo(f"removed {name} from {file}", err=True)


@users.command("list")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@common.one_line_errors
def list_users(file: str) -> None:
    """Print the user names in FILE, one a line (checking every line)."""
    for name in load_users(file):
        click.echo(name)
