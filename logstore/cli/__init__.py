"""The ``logstore`` command line: look inside logs, check them, and script them.

Uses only the public ``logstore`` API. Every error is one line on stderr and an
exit status (1: problem found or operation failed, 2: usage), never a traceback.
This module holds the group (``--debug``, ``--version``, the library's log lines
on stderr) and ``main``; each command is a module of its own, sharing ``common``.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from . import (
    common,
    compact,
    consume,
    inspect,
    mirror,
    produce,
    recover,
    serve,
    users,
    verify,
)


class _LineHandler(logging.Handler):
    """Each log record as one line on stderr, ``logstore: warning: <message>``.

    With ``--debug`` a record's traceback follows it; without, only the error's text.
    """

    def __init__(self, debug: bool) -> None:
        super().__init__(logging.DEBUG if debug else logging.WARNING)
        self.debug = debug

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            error = record.exc_info[1] if record.exc_info else None
            if error is not None and not self.debug:
                text = f"{text}: {common.describe(error)}"
            text = text.replace("\n", " ")
            if error is not None and self.debug and record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            click.echo(f"logstore: {record.levelname.lower()}: {text}", err=True)
        except Exception:  # logging must never break the command
            self.handleError(record)


def _show_logs(ctx: click.Context, debug: bool) -> None:
    """Route the library's log records to stderr for this command only."""
    package = logging.getLogger("logstore")
    handler = _LineHandler(debug)
    package.addHandler(handler)
    previous = package.level
    if debug:
        package.setLevel(logging.DEBUG)

    def restore() -> None:
        package.removeHandler(handler)
        package.setLevel(previous)

    ctx.call_on_close(restore)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(message=common.version_text())
@click.option(
    "--debug", is_flag=True, help="Show debug logs, and a traceback with an error's line."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Look inside, check and script logstore (Kafka-format) logs.

    Warnings the library logs (a torn tail cut, a file set aside) are shown
    on stderr, one line each.
    """
    _show_logs(ctx, debug)


cli.add_command(inspect.inspect)
cli.add_command(verify.verify)
cli.add_command(recover.recover)
cli.add_command(compact.compact)
cli.add_command(produce.produce)
cli.add_command(consume.consume)
cli.add_command(mirror.mirror)
cli.add_command(serve.serve)
cli.add_command(users.users)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run ``cli``; a usage error is one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="logstore", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except click.UsageError as exc:
        click.echo(f"logstore: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"logstore: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("logstore: aborted", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
