"""ListOffsets: the earliest, the latest, or the first offset at or after a timestamp.

Kafka's special timestamps: -1 latest (the end offset), -2 earliest (the
start offset), -3 the record with the largest timestamp (answered, as a
first slice, with the last offset and no timestamp), -4 and -5 (earliest
local and tiered) the start offset, as this broker keeps everything local.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import LogStoreError, UnknownPartitionError, UnknownTopicError
from .codec import ErrorCode, Header
from .state import ServerState

LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3


def _offset_of(state: ServerState, topic: str, partition: int, timestamp: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "partition_index": partition,
        "timestamp": -1,
        "offset": -1,
        "leader_epoch": 0,
        "old_style_offsets": [],
    }
    try:
        log = state.broker.topic(topic).partition(partition)
        if timestamp == LATEST:
            answer["offset"] = log.end_offset
        elif timestamp == MAX_TIMESTAMP:
            answer["offset"] = max(log.end_offset - 1, -1)
        elif timestamp < 0:  # earliest, earliest local, earliest pending upload
            answer["offset"] = log.start_offset
        else:
            found = log.offset_for_timestamp(timestamp)
            if found is not None:
                answer["offset"] = found
                records = log.read(found, max_records=1)
                answer["timestamp"] = records[0].timestamp if records else timestamp
    except (UnknownTopicError, UnknownPartitionError):
        answer["error_code"] = ErrorCode.unknown_topic_or_partition
    except LogStoreError:
        answer["error_code"] = ErrorCode.kafka_storage_error
    return answer


def _list_all(state: ServerState, request: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "partitions": [
                _offset_of(state, t.name, p.partition_index, p.timestamp) for p in t.partitions
            ],
        }
        for t in request.topics
    ]


async def handle_list_offsets(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    return {"topics": await asyncio.to_thread(_list_all, state, request)}
