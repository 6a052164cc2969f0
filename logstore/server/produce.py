"""Produce: each partition's batches appended as they came, with ``append_batches``.

``append_batches`` validates every batch (CRC, records) and assigns offsets;
the records are never decoded here. An idempotent producer's batches are
judged by ``producers`` first, under that partition's producer lock (the
state is rebuilt from the log the first time, see ``producers``). ``acks=1`` and ``acks=all`` are answered once
``append_batches`` returned, which is when the topic's fsync policy makes the
batch durable (``fsync="always"``: fsynced; otherwise written, as Kafka
acknowledges by default); ``acks=0`` gets no answer at all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import (
    CorruptLogError,
    InvalidRecordError,
    LogClosedError,
    LogStoreError,
    RecordTooLarge,
    UnknownPartitionError,
    UnknownTopicError,
)
from .codec import ErrorCode, Header
from .producers import Producers, identities
from .state import ServerState
from .topics import ensure_topic

logger = logging.getLogger(__name__)


def _error_of(exc: Exception) -> ErrorCode:
    if isinstance(exc, (UnknownTopicError, UnknownPartitionError)):
        return ErrorCode.unknown_topic_or_partition
    if isinstance(exc, RecordTooLarge):
        return ErrorCode.message_too_large
    if isinstance(exc, CorruptLogError):
        return ErrorCode.corrupt_message
    if isinstance(exc, InvalidRecordError):
        return ErrorCode.invalid_record
    if isinstance(exc, LogClosedError):  # reopened by alter_topic, or closing: retry elsewhere
        return ErrorCode.not_leader_or_follower
    return ErrorCode.unknown_server_error


def _append_partition(
    state: ServerState, topic: str, partition: int, records: bytes | None
) -> dict[str, Any]:
    """Append one partition's batches (in a worker thread); its part of the answer."""
    answer: dict[str, Any] = {"index": partition, "base_offset": -1, "log_start_offset": -1}
    try:
        log = state.broker.topic(topic).partition(partition)
        answer["log_start_offset"] = log.start_offset
        if not records:
            answer["error_code"] = ErrorCode.invalid_record
            return answer
        batches = identities(records)
        if batches is None:
            answer["base_offset"] = log.append_batches(records).start
            return answer
        producers: Producers = state.producers
        with producers.partition(topic, partition):
            verdicts = [producers.check(topic, partition, b) for b in batches]
            if all(isinstance(v, int) for v in verdicts):  # every batch a retry
                answer["base_offset"] = verdicts[0]
                return answer
            refused = next((v for v in verdicts if isinstance(v, str)), None)
            if refused is not None or any(isinstance(v, int) for v in verdicts):
                answer["error_code"] = ErrorCode[refused or "out_of_order_sequence_number"]
                return answer
            offsets = log.append_batches(records)
            answer["base_offset"] = offsets.start
            offset = offsets.start
            for b in batches:
                producers.appended(topic, partition, b, offset)
                offset += b.last_sequence - b.first_sequence + 1
    except LogStoreError as exc:
        logger.info("produce to %s-%d refused: %s", topic, partition, exc)
        answer["error_code"] = _error_of(exc)
        answer["error_message"] = str(exc)
    return answer


def _append_all(state: ServerState, request: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": topic.name,
            "partition_responses": [
                _append_partition(state, topic.name, p.index, p.records)
                for p in topic.partition_data
            ],
        }
        for topic in request.topic_data
    ]


async def handle_produce(state: ServerState, header: Header, request: Any) -> dict[str, Any] | None:
    if getattr(request, "transactional_id", None) is not None:
        return {
            "responses": [
                {
                    "name": t.name,
                    "partition_responses": [
                        {
                            "index": p.index,
                            "error_code": ErrorCode.transactional_id_authorization_failed,
                            "base_offset": -1,
                            "log_start_offset": -1,
                            "error_message": "transactions are not supported",
                        }
                        for p in t.partition_data
                    ],
                }
                for t in request.topic_data
            ]
        }
    for topic in request.topic_data:
        await ensure_topic(state, topic.name)  # auto_create_topics
    responses = await asyncio.to_thread(_append_all, state, request)
    state.wake_fetches()
    if request.acks == 0:
        return None
    return {"responses": responses}
