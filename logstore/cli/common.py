"""What every ``logstore`` command shares: one-line errors, the version line, output helpers.

Knows click and the public ``logstore`` names; knows no command.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

import logstore
from logstore import diagnostics

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(func: F) -> F:
    """Turn any failure into one line on stderr and exit status 1 (2 for a path of the wrong kind)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except logstore.NotALogError as exc:  # the wrong kind of path: a usage error
            click.echo(f"logstore: {describe(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("logstore: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        except Exception as exc:  # the CLI boundary: never a traceback (unless --debug)
            if debugging():
                traceback.print_exc()
            click.echo(f"logstore: {describe(exc)}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def describe(exc: BaseException) -> str:
    """An error as one line: an ``OSError`` names its file, any other gives its message."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")


def debugging() -> bool:
    """Whether the command line asked for ``--debug``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def version_text() -> str:
    return f"logstore {logstore.__version__} (codec: {logstore.__speedups__})"


def print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """Callback of a command's own ``--version`` flag (``logstore inspect --version``)."""
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


def stderr_is_terminal() -> bool:
    """Whether a progress bar on stderr has someone to watch it."""
    return sys.stderr.isatty()


def json_bytes(data: bytes | None) -> Any:
    """Bytes in JSON output: ``{"utf8": text}`` when they decode, else ``{"hex": ...}``."""
    if data is None:
        return None
    try:
        return {"utf8": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"hex": data.hex()}


def count_codecs(unchecked: list[diagnostics.Unchecked]) -> dict[str, int]:
    """Unchecked batches per codec not installed, for a one-line summary."""
    counts: dict[str, int] = {}
    for u in unchecked:
        counts[u.codec] = counts.get(u.codec, 0) + 1
    return counts
