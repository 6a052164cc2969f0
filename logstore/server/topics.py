"""Metadata, CreateTopics and DeleteTopics: the root's topics as one broker's.

Every partition is led by this one broker (node 0, leader epoch 0, one
replica in sync). Topic ids are not kept: answers carry the null id, so
clients address topics by name (the Fetch and Produce versions advertised
are those that do). A topic's Kafka settings (``retention.ms``) map to the
``LogConfig`` field of the same name with underscores (``retention_ms``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from .. import ConfigError, InvalidTopicName, LogConfig, LogStoreError, TopicExistsError
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
        if state.auto_create_topics and getattr(request, "allow_auto_topic_creation", True):
            for name in names:
                if name not in state.broker.topics(include_internal=True):
                    try:
                        await asyncio.to_thread(state.broker.create_topic, name, 1)
                    except LogStoreError:
                        pass  # answered below as unknown or invalid
    return {
        "brokers": [{"node_id": NODE_ID, "host": state.host, "port": state.port, "rack": None}],
        "cluster_id": state.cluster_id,
        "controller_id": NODE_ID,
        "topics": [_topic_metadata(state, n) for n in names],
        "cluster_authorized_operations": -2147483648,
    }


def _overrides(configs: Any) -> dict[str, Any]:
    """``LogConfig`` overrides from Kafka's topic settings.

    Raises:
        ConfigError: a setting logstore has no field for, or a value of the wrong kind.
    """
    overrides: dict[str, Any] = {}
    for config in configs or ():
        field = config.name.replace(".", "_")
        if field not in _FIELDS or field == "archive":
            raise ConfigError(f"unknown topic setting {config.name}")
        value: Any = config.value
        if value is not None and _FIELDS[field].type in ("int", "int | None"):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{config.name} must be an integer, not {value!r}") from None
        overrides[field] = value
    return overrides


def _create(state: ServerState, topic: Any, validate_only: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {"name": topic.name, "topic_id": None, "configs": None}
    partitions = topic.num_partitions if topic.num_partitions > 0 else 1
    answer["num_partitions"] = partitions
    answer["replication_factor"] = 1
    if topic.replication_factor not in (-1, 1) or topic.assignments:
        answer["error_code"] = ErrorCode.invalid_replication_factor
        answer["error_message"] = "this broker keeps one replica of each partition"
        return answer
    try:
        overrides = _overrides(topic.configs)
        if validate_only:
            dataclasses.replace(state.broker.default_config, **overrides)
            if topic.name in state.broker.topics(include_internal=True):
                raise TopicExistsError(f"topic {topic.name} already exists")
        else:
            state.broker.create_topic(topic.name, partitions, overrides)
    except TopicExistsError as exc:
        answer.update(error_code=ErrorCode.topic_already_exists, error_message=str(exc))
    except InvalidTopicName as exc:
        answer.update(error_code=ErrorCode.invalid_topic_exception, error_message=str(exc))
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
