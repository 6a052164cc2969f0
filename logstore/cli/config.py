"""``logstore config``: a topic's settings in a broker root, shown or changed.

Shows every ``LogConfig`` field of the topic, ``(topic)`` marking its own
settings; ``--set FIELD=VALUE`` and ``--reset FIELD`` change them through
``Broker.alter_topic`` (validated as a whole, durable). A value is written
as the field's kind reads: an integer, a number, ``true``/``false``, a word,
or ``none`` where the field may be ``None``; what is shown reads back the same.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import click

import logstore

from . import common

_NONE = "none"


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(logstore.LogConfig)


def show(value: object) -> str:
    """A value as ``--set`` reads it."""
    if value is None:
        return _NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kinds(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [k for arg in typing.get_args(hint) for k in _kinds(arg)]
    return [hint]


def parse(field: str, text: str) -> object:
    """``text`` as a value of ``LogConfig`` field ``field``.

    Raises:
        click.BadParameter: an unknown field or a value of the wrong kind.
    """
    hints = _hints()
    if field not in hints:
        raise click.BadParameter(
            f"unknown setting {field!r} (LogConfig fields: {', '.join(sorted(hints))})",
            param_hint="--set",
        )
    kinds = _kinds(hints[field])
    if text.lower() == _NONE and type(None) in kinds:
        return None
    for kind in kinds:
        if kind is bool and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind is int:
            try:
                return int(text)
            except ValueError:
                pass
        if kind is float:
            try:
                return float(text)
            except ValueError:
                pass
    if any(k is str or typing.get_origin(k) is typing.Literal for k in kinds) or field == "archive":
        return text
    wanted = " or ".join(sorted({getattr(k, "__name__", str(k)) for k in kinds}))
    raise click.BadParameter(f"{field} must be {wanted}, not {text!r}", param_hint="--set")


def _pairs(values: tuple[str, ...]) -> dict[str, object]:
    changes: dict[str, object] = {}
    for item in values:
        field, sep, text = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not FIELD=VALUE", param_hint="--set")
        changes[field.strip()] = parse(field.strip(), text.strip())
    return changes


@click.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("topic")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="A setting of its own.")
@click.option("--reset", "resets", multiple=True, metavar="FIELD", help="Back to the default.")
@click.option("--dry-run", is_flag=True, help="Check the change, make none.")
@common.one_line_errors
def config(
    root: str, topic: str, sets: tuple[str, ...], resets: tuple[str, ...], dry_run: bool
) -> None:
    """Show or change the settings of TOPIC in the broker root ROOT (not while it is served).

    Prints every setting as FIELD=VALUE, `(topic)` after the topic's own;
    with --set or --reset, the settings after the change.
    """
    changes = _pairs(sets)
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        if changes or resets:
            try:
                current = broker.alter_topic(topic, changes, reset=resets, dry_run=dry_run)
            except (logstore.ConfigError, TypeError) as exc:
                raise click.UsageError(str(exc)) from None
        else:
            current = broker.topic(topic).config
        own = broker.topic_overrides(topic)
        if dry_run:
            own = {k: v for k, v in own.items() if k not in resets} | changes
    for field in dataclasses.fields(logstore.LogConfig):
        mark = "  (topic)" if field.name in own else ""
        click.echo(f"{field.name}={show(getattr(current, field.name))}{mark}")
