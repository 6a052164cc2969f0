"""DescribeConfigs, AlterConfigs, IncrementalAlterConfigs: topic settings, broker defaults.

A TOPIC resource is described with every setting of ``configs.SETTINGS``,
its source (the topic's own, the server's ``[topic_defaults]``, logstore's
default) and, when asked, its synonyms and documentation; altered through
``Broker.alter_topic`` (validated as a whole, durable, applied to the open
partitions) with SET, DELETE (back to the default), and APPEND/SUBTRACT on
the list setting ``cleanup.policy``; or by the legacy AlterConfigs, which
replaces the topic's settings as a whole (Kafka's semantics: those given
become the topic's own, every other setting that has a Kafka name reverts
to the default; a null value is one not given), with the same errors.
Fields with no Kafka name (set through the embedded API) are left as they
are: no client can name them. The BROKER resource (this node, or the
cluster default ``""``) is the server's defaults, read-only: they come from
the server's settings file. Other resource types are INVALID_REQUEST.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Callable
from typing import Any

from .. import ConfigError, InvalidTopicName, LogConfig, UnknownTopicError
from . import configs
from .codec import ErrorCode, Header
from .configs import SETTINGS, BadValue, ConfigType, Setting, Source
from .state import NODE_ID, ServerState

TOPIC, BROKER = 2, 4
_LOGSTORE_DEFAULTS = LogConfig()


class Op(enum.IntEnum):
    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _entry(
    name: str,
    value: str,
    setting_type: ConfigType,
    doc: str,
    *,
    read_only: bool,
    source: Source,
    synonyms: list[dict[str, Any]],
    documented: bool,
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "read_only": read_only,
        "is_default": source is Source.DEFAULT_CONFIG,
        "config_source": int(source),
        "is_sensitive": False,
        "synonyms": synonyms,
        "config_type": int(setting_type),
        "documentation": doc if documented else None,
    }


def _topic_configs(state: ServerState, name: str, request: Any, keys: set[str] | None) -> Any:
    topic = state.broker.topic(name)
    overrides = state.broker.topic_overrides(name)
    defaults = state.broker.default_config
    out = []
    for setting in SETTINGS.values():
        if keys is not None and setting.name not in keys:
            continue
        value = setting.show(topic.config)
        source = configs.source_of(setting, topic.config, overrides, defaults)
        synonyms: list[dict[str, Any]] = []
        if getattr(request, "include_synonyms", False):
            if source is Source.DYNAMIC_TOPIC_CONFIG:
                synonyms.append({"name": setting.name, "value": value, "source": int(source)})
            if configs.broker_source(setting, defaults) is Source.STATIC_BROKER_CONFIG:
                synonyms.append(
                    {
                        "name": setting.broker_name,
                        "value": setting.show(defaults),
                        "source": int(Source.STATIC_BROKER_CONFIG),
                    }
                )
            synonyms.append(
                {
                    "name": setting.broker_name,
                    "value": setting.show(_LOGSTORE_DEFAULTS),
                    "source": int(Source.DEFAULT_CONFIG),
                }
            )
        out.append(
            _entry(
                setting.name,
                value,
                setting.type,
                setting.doc,
                read_only=setting.read_only or name.startswith("__"),
                source=source,
                synonyms=synonyms,
                documented=bool(getattr(request, "include_documentation", False)),
            )
        )
    return out


def _broker_configs(state: ServerState, request: Any, keys: set[str] | None) -> Any:
    defaults = state.broker.default_config
    documented = bool(getattr(request, "include_documentation", False))
    rows = [
        (s.broker_name, s.show(defaults), s.type, s.doc, configs.broker_source(s, defaults))
        for s in SETTINGS.values()
    ]
    rows.append(
        (
            "auto.create.topics.enable",
            str(state.auto_create_topics).lower(),
            ConfigType.BOOLEAN,
            "whether a produce or metadata request creates an unknown topic",
            Source.STATIC_BROKER_CONFIG if state.auto_create_topics else Source.DEFAULT_CONFIG,
        )
    )
    rows.append(
        (
            "num.partitions",
            str(state.default_partitions),
            ConfigType.INT,
            "partitions of a topic created without a count",
            Source.STATIC_BROKER_CONFIG if state.default_partitions != 1 else Source.DEFAULT_CONFIG,
        )
    )
    return [
        _entry(n, v, t, d, read_only=True, source=src, synonyms=[], documented=documented)
        for n, v, t, d, src in sorted(rows)
        if keys is None or n in keys
    ]


def _describe(state: ServerState, request: Any) -> dict[str, Any]:
    results = []
    for resource in request.resources:
        kind, name = resource.resource_type, resource.resource_name
        answer: dict[str, Any] = {"resource_type": kind, "resource_name": name, "configs": []}
        keys = set(resource.configuration_keys) if resource.configuration_keys else None
        describe = functools.partial(_describe_one, state, request, resource, keys)
        results.append(_answered(answer, "configs", describe))
    return {"results": results}


def _answered(
    answer: dict[str, Any], field: str | None, work: Callable[[], object]
) -> dict[str, Any]:
    """``answer`` with what ``work`` gave in ``field``, or with the error code and message it met."""
    try:
        result = work()
        if field is not None:
            answer[field] = result
    except UnknownTopicError as exc:
        answer.update(error_code=ErrorCode.unknown_topic_or_partition, error_message=str(exc))
    except _Refused as exc:
        answer.update(error_code=exc.code, error_message=str(exc))
    return answer


def _describe_one(state: ServerState, request: Any, resource: Any, keys: set[str] | None) -> Any:
    kind, name = resource.resource_type, resource.resource_name
    if kind == TOPIC:
        return _topic_configs(state, name, request, keys)
    if kind == BROKER:
        if name not in ("", str(NODE_ID)):
            raise _Refused(ErrorCode.invalid_request, f"this broker is node {NODE_ID}")
        return _broker_configs(state, request, keys)
    raise _Refused(ErrorCode.invalid_request, _unsupported(kind))


#: What one resource's configs change: (``LogConfig`` changes, fields reset to the default).
Plan = Callable[[ServerState, Any], "tuple[dict[str, Any], set[str]]"]


def _alter_one(state: ServerState, request: Any, resource: Any, plan: Plan) -> None:
    kind = resource.resource_type
    if kind == TOPIC:
        _alter_topic(state, resource, bool(request.validate_only), plan)
    elif kind == BROKER:
        raise _Refused(
            ErrorCode.invalid_request,
            "the broker's settings are read-only: they come from logstore serve --config",
        )
    else:
        raise _Refused(ErrorCode.invalid_request, _unsupported(kind))


def _unsupported(kind: int) -> str:
    return f"config resource type {kind} is not supported here (TOPIC and BROKER are)"


async def handle_describe_configs(
    state: ServerState, header: Header, request: Any
) -> dict[str, Any]:
    return await asyncio.to_thread(_describe, state, request)


def _no_duplicates(resource: Any) -> None:
    """Refuse a name given twice (INVALID_REQUEST, as Kafka)."""
    names = [c.name for c in resource.configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _Refused(ErrorCode.invalid_request, f"duplicate config keys: {', '.join(duplicates)}")


def _settable(name: str) -> Setting:
    """The setting ``name``; INVALID_CONFIG when it is unknown or read-only."""
    setting = SETTINGS.get(name)
    if setting is None:
        raise _Refused(ErrorCode.invalid_config, configs.unknown(name))
    if setting.read_only:
        raise _Refused(
            ErrorCode.invalid_config, f"{name} is fixed here ({setting.doc}): it cannot be altered"
        )
    return setting


def _incremental_plan(state: ServerState, resource: Any) -> tuple[dict[str, Any], set[str]]:
    """The ``LogConfig`` changes and resets of one resource's operations.

    Raises:
        UnknownTopicError: no such topic.
        _Refused: a duplicate, unknown or read-only name, an operation its type has not.
    """
    config = state.broker.topic(resource.resource_name).config
    _no_duplicates(resource)
    values: dict[str, str] = {}
    reset: set[str] = set()
    for item in resource.configs:
        setting = _settable(item.name)
        try:
            op = Op(item.config_operation)
        except ValueError:
            raise _Refused(
                ErrorCode.invalid_request, f"unknown config operation {item.config_operation}"
            ) from None
        if op is Op.DELETE:
            reset.update(setting.fields)
            continue
        if item.value is None:
            raise _Refused(ErrorCode.invalid_request, f"null value not supported for {item.name}")
        if op is Op.SET:
            values[item.name] = item.value
            continue
        if setting.type is not ConfigType.LIST:
            raise _Refused(
                ErrorCode.invalid_config,
                f"config value {op.name.lower()} is not allowed for config key: {item.name}",
            )
        current = set(setting.show(config).split(","))
        given = {v.strip() for v in item.value.split(",") if v.strip()}
        values[item.name] = ",".join(
            sorted(current | given if op is Op.APPEND else current - given)
        )
    try:
        return configs.changes_of(values, config), reset
    except BadValue as exc:
        raise _Refused(ErrorCode.invalid_config, str(exc)) from None


def _replacing_plan(state: ServerState, resource: Any) -> tuple[dict[str, Any], set[str]]:
    """The legacy AlterConfigs' whole settings: those given, every other one reset.

    The flush pair is completed from the defaults (the other one reverts too).

    Raises:
        UnknownTopicError: no such topic.
        _Refused: a duplicate, unknown or read-only name, a bad value.
    """
    state.broker.topic(resource.resource_name)
    _no_duplicates(resource)
    for item in resource.configs:
        _settable(item.name)
    values = {c.name: c.value for c in resource.configs if c.value is not None}
    try:
        changes = configs.changes_of(values, state.broker.default_config)
    except BadValue as exc:
        raise _Refused(ErrorCode.invalid_config, str(exc)) from None
    every = {field for setting in SETTINGS.values() for field in setting.fields}
    return changes, every - set(changes)


def _alter_topic(state: ServerState, resource: Any, validate_only: bool, plan: Plan) -> None:
    name = resource.resource_name
    changes, reset = plan(state, resource)
    try:
        state.broker.alter_topic(name, changes, reset=reset - set(changes), dry_run=validate_only)
    except (ConfigError, TypeError, InvalidTopicName) as exc:
        raise _Refused(ErrorCode.invalid_config, str(exc)) from None


def _alter(state: ServerState, request: Any, plan: Plan) -> dict[str, Any]:
    responses = []
    for resource in request.resources:
        kind, name = resource.resource_type, resource.resource_name
        # Kafka's answer for a resource altered: no error, and a null message.
        answer: dict[str, Any] = {
            "resource_type": kind,
            "resource_name": name,
            "error_message": None,
        }
        alter = functools.partial(_alter_one, state, request, resource, plan)
        responses.append(_answered(answer, None, alter))
    return {"responses": responses}


async def handle_incremental_alter_configs(
    state: ServerState, header: Header, request: Any
) -> dict[str, Any]:
    return await asyncio.to_thread(_alter, state, request, _incremental_plan)


async def handle_alter_configs(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    return await asyncio.to_thread(_alter, state, request, _replacing_plan)
