"""Metadata, CreateTopics and DeleteTopics: the root's topics as one broker's.

Every partition is led by this one broker (node 0, leader epoch 0, one
replica in sync). Topic ids are not kept: answers carry the null id, so
clients address topics by name (the Fetch and Produce versions advertised
are those that do). A topic's Kafka settings map to ``LogConfig`` fields as
``configs`` says (``retention.ms=-1``: ``retention_ms=None``); another
field of ``LogConfig`` may be given by its name with dots (``verify.crc.on.read``).
With ``auto_create_topics`` on, ``ensure_topic`` creates what a Metadata or
Produce request names (``default_partitions`` partitions, as Kafka's
``num.partitions``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from .. import (
    ConfigError,
    InvalidTopicName,
    LimitExceededError,
    LogConfig,
    LogStoreError,
    TopicExistsError,
)
from . import configs
from .codec import ErrorCode, Header
from .state import NODE_ID, ServerState

logger = logging.getLogger(__name__)
_FIELDS = {f.name: f for f in dataclasses.fields(LogConfig)}


def _topic_metadata(state: ServerState, name: str) -> dict[str, Any]:
    try:
        topic = state.broker.topic(name)
    except InvalidTopicName:
        return {"name": name, "error_code": ErrorCode.invalid_topic_exception, "partitions": []}
    except LogStoreError:
        return {"name": name, "error_code": ErrorCode.unknown_topic_or_partition, "partitions": []}
    return {
        "name": name,
        "topic_id": None,
        "is_internal": name.startswith("__"),
        "topic_authorized_operations": -2147483648,
        "partitions": [
            {
                "partition_index": p,
                "leader_id": NODE_ID,
                "leader_epoch": 0,
                "replica_nodes": [NODE_ID],
                "isr_nodes": [NODE_ID],
                "offline_replicas": [],
            }
            for p in range(topic.partitions)
        ],
    }


async def handle_metadata(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    requested = request.topics
    if requested is None or (header.api_version == 0 and not requested):
        names = state.broker.topics(include_internal=True)
    else:
        names = [t.name for t in requested if t.name is not None]
        if getattr(request, "allow_auto_topic_creation", True):
            for name in names:
                await ensure_topic(state, name)
    return {
        "brokers": [{"node_id": NODE_ID, "host": state.host, "port": state.port, "rack": None}],
        "cluster_id": state.cluster_id,
        "controller_id": NODE_ID,
        "topics": [_topic_metadata(state, n) for n in names],
        "cluster_authorized_operations": -2147483648,
    }


async def ensure_topic(state: ServerState, name: str) -> None:
    """Create topic ``name`` if it is unknown and ``auto_create_topics`` is on.

    A name that cannot be a topic is left to the caller's answer (unknown or invalid).
    """
    if not state.auto_create_topics:
        return
    try:
        state.broker.topic(name)  # a lookup: this is on produce's path
        return
    except LogStoreError:
        pass
    try:
        await asyncio.to_thread(state.broker.create_topic, name, state.default_partitions)
        logger.info("topic %s created (auto_create_topics)", name)
    except LogStoreError:
        pass  # created meanwhile by another request, or an invalid name


def _overrides(requested: Any, defaults: LogConfig) -> dict[str, Any]:
    """``LogConfig`` overrides from Kafka's topic settings.

    Raises:
        ConfigError: a setting logstore has no field for, or a value of the wrong kind.
    """
    overrides: dict[str, Any] = {}
    kafka: dict[str, str] = {}
    for config in requested or ():
        setting = configs.SETTINGS.get(config.name)
        if setting is not None and config.value is not None:
            if setting.read_only and config.value != setting.show(defaults):
                raise ConfigError(f"{config.name} is fixed here ({setting.doc})")
            if not setting.read_only:
                kafka[config.name] = config.value
            continue
        field = config.name.replace(".", "_")
        if field not in _FIELDS or field == "archive":
            raise ConfigError(configs.unknown(config.name))
        value: Any = config.value
        if value is not None and _FIELDS[field].type in ("int", "int | None"):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{config.name} must be an integer, not {value!r}") from None
        overrides[field] = value
    try:
        return overrides | configs.changes_of(kafka, defaults)
    except configs.BadValue as exc:
        raise ConfigError(str(exc)) from None


def _create(state: ServerState, topic: Any, validate_only: bool) -> dict[str, Any]:
    # configs: never null, Java's admin client reads it (an empty list on an error)
    answer: dict[str, Any] = {"name": topic.name, "topic_id": None, "configs": []}
    partitions = topic.num_partitions if topic.num_partitions > 0 else state.default_partitions
    answer["num_partitions"] = partitions
    answer["replication_factor"] = 1
    if topic.replication_factor not in (-1, 1) or topic.assignments:
        answer["error_code"] = ErrorCode.invalid_replication_factor
        answer["error_message"] = "this broker keeps one replica of each partition"
        return answer
    try:
        overrides = _overrides(topic.configs, state.broker.default_config)
        defaults = state.broker.default_config
        if validate_only:
            config = dataclasses.replace(defaults, **overrides)
            if topic.name in state.broker.topics(include_internal=True):
                raise TopicExistsError(f"topic {topic.name} already exists")
            state.broker.check_topic_limit(topic.name)
        else:
            config = state.broker.create_topic(topic.name, partitions, overrides).config
        answer["configs"] = [
            {
                "name": setting.name,
                "value": setting.show(config),
                "read_only": setting.read_only,
                "config_source": int(configs.source_of(setting, config, overrides, defaults)),
                "is_sensitive": False,
            }
            for setting in configs.SETTINGS.values()
        ]
    except TopicExistsError as exc:
        answer.update(error_code=ErrorCode.topic_already_exists, error_message=str(exc))
    except InvalidTopicName as exc:
        answer.update(error_code=ErrorCode.invalid_topic_exception, error_message=str(exc))
    except LimitExceededError as exc:
        # Kafka's answer when its create-topic policy refuses a topic: a rule of the
        # operator's, not a rate (THROTTLING_QUOTA_EXCEEDED is the mutation-rate quota,
        # retriable after a delay; max_topics stays reached until a topic is deleted).
        answer.update(error_code=ErrorCode.policy_violation, error_message=str(exc))
    except (ConfigError, TypeError) as exc:
        answer.update(error_code=ErrorCode.invalid_config, error_message=str(exc))
    except LogStoreError as exc:
        logger.warning("create topic %s failed: %s", topic.name, exc)
        answer.update(error_code=ErrorCode.unknown_server_error, error_message=str(exc))
    return answer


async def handle_create_topics(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    validate_only = bool(getattr(request, "validate_only", False))
    topics = [
        await asyncio.to_thread(_create, state, topic, validate_only) for topic in request.topics
    ]
    return {"topics": topics}


def _delete(state: ServerState, name: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"name": name, "topic_id": None}
    if name is None:
        answer.update(error_code=ErrorCode.unknown_topic_id, error_message="topic ids are not kept")
        return answer
    try:
        state.broker.delete_topic(name)
        state.producers.forget(name)
    except InvalidTopicName as exc:
        answer.update(error_code=ErrorCode.invalid_topic_exception, error_message=str(exc))
    except LogStoreError as exc:
        answer.update(error_code=ErrorCode.unknown_topic_or_partition, error_message=str(exc))
    return answer


async def handle_delete_topics(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    names = list(getattr(request, "topic_names", ()) or ())
    names += [t.name for t in getattr(request, "topics", ()) or ()]
    return {"responses": [await asyncio.to_thread(_delete, state, n) for n in names]}
