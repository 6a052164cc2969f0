"""Fetch: whole stored batches from ``batch_ranges``, with Kafka's long poll.

Sessionless (KIP-227's session id 0: every request names its partitions, and
a client asking for a session is answered with none). The answer is sent as
soon as ``min_bytes`` are there, else when ``max_wait_ms`` has passed; a
produce through this server wakes the waiting fetches to read again. At most
``max_bytes`` in all and ``partition_max_bytes`` per partition, except that
the first batch is served whole even when larger (KIP-74). Batches are never
decoded: the first may start before the offset asked for, as Kafka's do.
On a connection that can (``codec.SENDFILE``: not TLS) they are answered as
``FileRanges`` (sizes known, bytes not read), which the connection sends
from the segment files with ``sendfile``, as Kafka's ``FileRecords`` are;
elsewhere as bytes. No fetch path re-encodes records (only magic 2 is stored).
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from .. import (
    FileRanges,
    LogStoreError,
    OffsetOutOfRange,
    UnknownPartitionError,
    UnknownTopicError,
)
from .codec import SENDFILE, ErrorCode, Header
from .state import ServerState


def _ms(value: Any) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)


def _read_all(state: ServerState, request: Any) -> tuple[list[dict[str, Any]], int]:
    """Read every partition asked for (in a worker thread); the answer and its bytes."""
    budget = max(int(request.max_bytes), 0) if hasattr(request, "max_bytes") else 1 << 30
    sendfile = SENDFILE.get()
    total = 0
    topics: list[dict[str, Any]] = []
    for t in request.topics:
        partitions = []
        for p in t.partitions:
            answer: dict[str, Any] = {
                "partition_index": p.partition,
                "high_watermark": -1,
                "last_stable_offset": -1,
                "log_start_offset": -1,
                "records": b"",
                "aborted_transactions": None,
                "preferred_read_replica": -1,
            }
            try:
                log = state.broker.topic(t.topic).partition(p.partition)
                end = log.end_offset
                answer["high_watermark"] = answer["last_stable_offset"] = end
                answer["log_start_offset"] = log.start_offset
                limit = min(int(p.partition_max_bytes), budget - total)
                if p.fetch_offset != end and (limit > 0 or total == 0):
                    stored: FileRanges | bytes
                    if sendfile:  # file ranges, not bytes: the connection sends them
                        stored = log.batch_ranges(p.fetch_offset, max(limit, 1))
                        stored.will_need()  # cold bytes are read here, not on the loop
                    else:
                        stored = log.read_batches(p.fetch_offset, max(limit, 1))
                    total += len(stored)
                    answer["records"] = stored if len(stored) else b""
            except (UnknownTopicError, UnknownPartitionError):
                answer["error_code"] = ErrorCode.unknown_topic_or_partition
            except OffsetOutOfRange:
                answer["error_code"] = ErrorCode.offset_out_of_range
            except LogStoreError:
                answer["error_code"] = ErrorCode.kafka_storage_error
            partitions.append(answer)
        topics.append({"topic": t.topic, "partitions": partitions})
    return topics, total


async def handle_fetch(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _ms(request.max_wait) / 1000
    min_bytes = max(int(request.min_bytes), 1)
    while True:
        arrived = state.data_arrived
        topics, total = await asyncio.to_thread(_read_all, state, request)
        remaining = deadline - loop.time()
        if total >= min_bytes or remaining <= 0 or _has_error(topics):
            break
        try:
            await asyncio.wait_for(arrived.wait(), remaining)
        except asyncio.TimeoutError:
            pass  # one last read: data may have come with no produce through us
    return {"error_code": ErrorCode.none, "session_id": 0, "responses": topics}


def _has_error(topics: list[dict[str, Any]]) -> bool:
    return any(p.get("error_code") for t in topics for p in t["partitions"])
