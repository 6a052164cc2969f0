"""Kafka's names of topic settings and logstore's ``LogConfig`` fields, both ways.

Owns the table of every topic setting the server reports: its Kafka name,
the broker setting it defaults to (Kafka's synonym), its type as
DescribeConfigs reports it, how a ``LogConfig`` shows as its value, and how
a value given by a client becomes ``LogConfig`` fields. Kafka writes "no
limit" as -1 where logstore has ``None``; the fsync policy is Kafka's
``flush.messages``/``flush.ms`` pair (``1``: every batch, ``always``; both
Long.MAX: ``never``; else ``interval``). Settings logstore has no field for
but Kafka clients expect are reported read-only with what logstore does.
Knows no protocol message and no broker.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from .. import LogConfig

#: Kafka's "never" for a count or a time (Long.MAX_VALUE).
LONG_MAX = (1 << 63) - 1
#: The largest flush.ms kept as an interval: above it, a time-based fsync never comes.
_MAX_INTERVAL_MS = (1 << 31) - 1
_FSYNC_FIELDS = ("fsync", "fsync_interval_ms", "fsync_interval_messages")
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(LogConfig)}


class ConfigType(enum.IntEnum):
    """DescribeConfigs' ``config_type``."""

    BOOLEAN = 1
    STRING = 2
    INT = 3
    LONG = 5
    DOUBLE = 6
    LIST = 7


class Source(enum.IntEnum):
    """DescribeConfigs' ``config_source``."""

    DYNAMIC_TOPIC_CONFIG = 1
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class BadValue(ValueError):
    """A value a client gave that no ``LogConfig`` field can take."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One topic setting as Kafka names it."""

    name: str
    broker_name: str
    type: ConfigType
    doc: str
    #: The ``LogConfig`` fields it shows (none: read-only, a fixed value).
    fields: tuple[str, ...]
    show: Callable[[LogConfig], str]
    #: Its value -> the fields it sets; ``None``: read-only.
    parse: Callable[[str], dict[str, Any]] | None = None

    @property
    def read_only(self) -> bool:
        return self.parse is None


def _long(text: str, name: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BadValue(f"{name} must be an integer, not {text!r}") from None


def _plain(name: str, field: str, kind: ConfigType, broker: str, doc: str) -> Setting:
    """A setting that is one ``LogConfig`` field, -1 standing for ``None`` where it may be."""
    nullable = str(_FIELD_TYPES[field]).endswith("| None")

    def show(config: LogConfig) -> str:
        value = getattr(config, field)
        return "-1" if value is None else str(value)

    def parse(text: str) -> dict[str, Any]:
        if kind is ConfigType.DOUBLE:
            try:
                return {field: float(text)}
            except ValueError:
                raise BadValue(f"{name} must be a number, not {text!r}") from None
        value = _long(text, name)
        return {field: None if nullable and value == -1 else value}

    return Setting(name, broker, kind, doc, (field,), show, parse)


def _fixed(name: str, value: str, kind: ConfigType, broker: str, doc: str) -> Setting:
    return Setting(name, broker, kind, doc, (), lambda _config: value)


def _show_policy(config: LogConfig) -> str:
    return config.cleanup_policy


def _parse_policy(text: str) -> dict[str, Any]:
    parts = {p.strip() for p in text.split(",") if p.strip()}
    if not parts or parts - {"compact", "delete"}:
        raise BadValue(f"cleanup.policy must be delete, compact or both, not {text!r}")
    return {"cleanup_policy": ",".join(sorted(parts))}


def show_flush_messages(config: LogConfig) -> str:
    if config.fsync == "always":
        return "1"
    if config.fsync == "interval" and config.fsync_interval_messages is not None:
        return str(config.fsync_interval_messages)
    return str(LONG_MAX)


def show_flush_ms(config: LogConfig) -> str:
    if config.fsync == "always":
        return "0"
    if config.fsync == "interval":
        return str(config.fsync_interval_ms)
    return str(LONG_MAX)


def fsync_fields(messages: int, ms: int) -> dict[str, Any]:
    """The fsync policy Kafka's ``flush.messages`` and ``flush.ms`` describe."""
    if messages < 1 or ms < 0:
        raise BadValue(f"flush.messages must be >= 1 and flush.ms >= 0, got {messages} and {ms}")
    if messages == 1 or ms == 0:
        return {"fsync": "always"}
    if messages == LONG_MAX and ms == LONG_MAX:
        return {"fsync": "never"}
    return {
        "fsync": "interval",
        "fsync_interval_messages": None if messages == LONG_MAX else messages,
        "fsync_interval_ms": min(ms, _MAX_INTERVAL_MS),
    }


_RETENTION_DOC = "-1: no limit"
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "cleanup.policy",
            "log.cleanup.policy",
            ConfigType.LIST,
            "delete, compact, or both (compact,delete)",
            ("cleanup_policy",),
            _show_policy,
            _parse_policy,
        ),
        _fixed(
            "compression.type",
            "producer",
            ConfigType.STRING,
            "compression.type",
            "batches are kept as the producer compressed them",
        ),
        _plain(
            "delete.retention.ms",
            "delete_retention_ms",
            ConfigType.LONG,
            "log.cleaner.delete.retention.ms",
            "how long a compacted topic keeps tombstones",
        ),
        Setting(
            "flush.messages",
            "log.flush.interval.messages",
            ConfigType.LONG,
            "1: fsync every batch (fsync=always); otherwise fsync=interval or never",
            _FSYNC_FIELDS,
            show_flush_messages,
            lambda text: {"flush.messages": _long(text, "flush.messages")},
        ),
        Setting(
            "flush.ms",
            "log.flush.interval.ms",
            ConfigType.LONG,
            "0: fsync every batch (fsync=always); otherwise the fsync interval",
            _FSYNC_FIELDS,
            show_flush_ms,
            lambda text: {"flush.ms": _long(text, "flush.ms")},
        ),
        _plain(
            "index.interval.bytes",
            "index_interval_bytes",
            ConfigType.INT,
            "log.index.interval.bytes",
            "bytes between offset index entries",
        ),
        _plain(
            "max.message.bytes",
            "max_message_bytes",
            ConfigType.INT,
            "message.max.bytes",
            "the largest record batch accepted",
        ),
        _fixed(
            "message.timestamp.type",
            "CreateTime",
            ConfigType.STRING,
            "log.message.timestamp.type",
            "timestamps are the producer's",
        ),
        _plain(
            "min.cleanable.dirty.ratio",
            "min_cleanable_dirty_ratio",
            ConfigType.DOUBLE,
            "log.cleaner.min.cleanable.ratio",
            "the dirty share of a log above which it is compacted",
        ),
        _plain(
            "min.compaction.lag.ms",
            "min_compaction_lag_ms",
            ConfigType.LONG,
            "log.cleaner.min.compaction.lag.ms",
            "how long a record stays uncompacted",
        ),
        _fixed(
            "min.insync.replicas",
            "1",
            ConfigType.INT,
            "min.insync.replicas",
            "one broker keeps one replica",
        ),
        _plain(
            "retention.bytes",
            "retention_bytes",
            ConfigType.LONG,
            "log.retention.bytes",
            _RETENTION_DOC,
        ),
        _plain(
            "retention.messages",
            "retention_messages",
            ConfigType.LONG,
            "log.retention.messages",
            "logstore's own: records kept per partition, " + _RETENTION_DOC,
        ),
        _plain("retention.ms", "retention_ms", ConfigType.LONG, "log.retention.ms", _RETENTION_DOC),
        _plain(
            "segment.bytes",
            "segment_bytes",
            ConfigType.INT,
            "log.segment.bytes",
            "the size at which a segment rolls",
        ),
        _plain(
            "segment.index.bytes",
            "max_index_bytes",
            ConfigType.INT,
            "log.index.size.max.bytes",
            "the largest offset index of a segment",
        ),
        _plain(
            "segment.messages",
            "segment_messages",
            ConfigType.LONG,
            "log.segment.messages",
            "logstore's own: records at which a segment rolls, -1: no limit",
        ),
        _plain(
            "segment.ms",
            "segment_ms",
            ConfigType.LONG,
            "log.roll.ms",
            "the age at which a segment rolls, -1: never",
        ),
    )
}


def unknown(name: str) -> str:
    return f"unknown topic config {name!r}: this broker knows {', '.join(SETTINGS)}"


def changes_of(values: dict[str, str], current: LogConfig) -> dict[str, Any]:
    """``LogConfig`` fields from Kafka settings ``name -> value`` (the flush pair together).

    ``current`` gives the flush setting not among ``values``.

    Raises:
        BadValue: a value of the wrong kind; KeyError: an unknown or read-only name.
    """
    fields: dict[str, Any] = {}
    flush: dict[str, int] = {}
    for name, value in values.items():
        setting = SETTINGS[name]
        if setting.parse is None:
            raise KeyError(name)
        for key, parsed in setting.parse(value).items():
            (flush if key.startswith("flush.") else fields)[key] = parsed
    if flush:
        messages = flush.get("flush.messages", int(show_flush_messages(current)))
        ms = flush.get("flush.ms", int(show_flush_ms(current)))
        fields.update(fsync_fields(messages, ms))
    return fields


def source_of(
    setting: Setting, config: LogConfig, overrides: dict[str, Any], defaults: LogConfig
) -> Source:
    """Where a topic's value comes from: its own setting, the server's defaults, logstore's."""
    if any(f in overrides for f in setting.fields) or setting.show(config) != setting.show(
        defaults
    ):
        return Source.DYNAMIC_TOPIC_CONFIG
    return broker_source(setting, defaults)


def broker_source(setting: Setting, defaults: LogConfig) -> Source:
    """A broker default set in the server's settings, or logstore's own."""
    if setting.show(defaults) != setting.show(LogConfig()):
        return Source.STATIC_BROKER_CONFIG
    return Source.DEFAULT_CONFIG
