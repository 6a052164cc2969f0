"""The server's settings file (TOML): the keyword options of ``Server``, and topic defaults.

Top-level keys are the keyword parameters of the server class's
``__init__``, found by introspection, so an option added there (TLS, SASL)
can be set in the file without a change here; each value is checked against
the parameter's annotation. The ``[topic_defaults]`` table is the broker's
default ``LogConfig`` (its field names, e.g. ``retention_ms``). Every
refusal is one ``SettingsError`` naming the file and the key. Knows no
protocol and no command line.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Sequence
from typing import Any

from .. import ConfigError, LogConfig

#: The table of the broker's default ``LogConfig``.
TOPIC_DEFAULTS = "topic_defaults"
#: Parameters a file cannot set: the root is the command's argument, ``config`` the table.
_NOT_IN_FILE = {"self", "root", "config"}


class SettingsError(ConfigError):
    """A settings file that cannot be used: the message names the file and the key."""


def options_of(server_class: type[Any]) -> dict[str, Any]:
    """The keyword parameters of ``server_class.__init__``: name -> annotation.

    An annotation that cannot be resolved (a name imported only for type
    checking) stays its text.
    """
    init = server_class.__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an unresolvable annotation: keep the text of each
        hints = {}
    return {
        name: hints.get(name, param.annotation)
        for name, param in inspect.signature(init).parameters.items()
        if name not in _NOT_IN_FILE
        and param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)
    }


def _accepts(hint: Any, value: object) -> bool:
    """Whether a TOML value fits the annotation ``hint`` (TOML has no null: never ``None``)."""
    if isinstance(hint, str):  # unresolved: judge by the names it mentions
        names = {n.strip() for n in hint.replace("[", "|").replace("]", "|").split("|")}
        return any(_accepts(t, value) for t in (str, int, float, bool) if t.__name__ in names)
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str or hint is os.PathLike or origin is os.PathLike:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) and isinstance(value, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return all(_accepts(args[0], v) for v in value) if args else True
    return False


def _shown(hint: Any) -> str:
    return hint if isinstance(hint, str) else getattr(hint, "__name__", None) or str(hint)


def load(path: str | os.PathLike[str], server_class: type[Any]) -> dict[str, Any]:
    """The keyword options for ``server_class`` (and ``config``, a ``LogConfig``) in ``path``.

    Raises:
        SettingsError: not TOML, an unknown key, or a value of the wrong kind or range.
        OSError: the file cannot be read.
    """
    where = os.fspath(path)
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]  # mypy checks as 3.10
    except ImportError:  # pragma: no cover - the serve extra needs Python >= 3.11 anyway
        raise SettingsError(f"{where}: a settings file needs Python >= 3.11 (tomllib)") from None

    with open(where, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{where}: not valid TOML: {exc}") from None
    known = options_of(server_class)
    options: dict[str, Any] = {}
    for key, value in data.items():
        if key == TOPIC_DEFAULTS:
            options["config"] = _topic_defaults(where, value)
            continue
        if key not in known:
            choices = ", ".join(sorted([*known, f"[{TOPIC_DEFAULTS}]"]))
            raise SettingsError(f"{where}: unknown key {key!r} (known: {choices})")
        if not _accepts(known[key], value):
            raise SettingsError(
                f"{where}: {key} must be {_shown(known[key])}, not {value!r} "
                f"({type(value).__name__})"
            )
        options[key] = value
    return options


def _topic_defaults(where: str, table: object) -> LogConfig:
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: {TOPIC_DEFAULTS} must be a table ([{TOPIC_DEFAULTS}])")
    fields = {f.name for f in dataclasses.fields(LogConfig)}
    for key in table:
        if key not in fields:
            raise SettingsError(
                f"{where}: [{TOPIC_DEFAULTS}] unknown key {key!r} "
                f"(LogConfig fields: {', '.join(sorted(fields))})"
            )
    try:
        return LogConfig(**table)
    except (ConfigError, TypeError) as exc:
        raise SettingsError(f"{where}: [{TOPIC_DEFAULTS}] {exc}") from None
