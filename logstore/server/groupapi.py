"""The group APIs: FindCoordinator, Join/Sync/Heartbeat/Leave, offsets, Describe/List.

Thin: each handler reads its request (whatever the version) and asks
``groups`` (membership) or the broker (committed offsets, in the root's
``__consumer_offsets``). This broker coordinates every group.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from .. import LimitExceededError, OffsetAndMetadata
from .codec import ErrorCode, Header
from .state import NODE_ID, ServerState


def _ms(value: Any) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)


async def handle_find_coordinator(
    state: ServerState, header: Header, request: Any
) -> dict[str, Any]:
    keys = list(getattr(request, "coordinator_keys", ()) or ())
    if header.api_version < 4:
        keys = [request.key]
    coordinators = [
        {"key": key, "node_id": NODE_ID, "host": state.host, "port": state.port} for key in keys
    ]
    answer: dict[str, Any] = {"coordinators": coordinators}
    if header.api_version < 4:
        answer.update(node_id=NODE_ID, host=state.host, port=state.port)
    return answer


async def handle_join_group(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    session_ms = _ms(request.session_timeout)
    rebalance = getattr(request, "rebalance_timeout", None)
    return await state.groups.join(
        request.group_id,
        request.member_id,
        client_id=header.client_id or "",
        client_host="/" + state.host,
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=_ms(rebalance) if rebalance is not None else session_ms,
        protocol_type=request.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in request.protocols],
    )


async def handle_sync_group(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    assignments = {a.member_id: bytes(a.assignment) for a in request.assignments}
    return await state.groups.sync(
        request.group_id, request.member_id, request.generation_id, assignments
    )


async def handle_heartbeat(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    error = state.groups.heartbeat(request.group_id, request.member_id, request.generation_id)
    return {"error_code": error}


async def handle_leave_group(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    if header.api_version < 3:
        return {"error_code": state.groups.leave(request.group_id, request.member_id)}
    members = [
        {
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "error_code": state.groups.leave(request.group_id, m.member_id),
        }
        for m in request.members
    ]
    return {"error_code": ErrorCode.none, "members": members}


async def handle_offset_commit(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    generation: int = getattr(
        request, "generation_id_or_member_epoch", getattr(request, "generation_id", -1)
    )
    error = state.groups.check_commit(request.group_id, request.member_id, generation)
    positions: dict[tuple[str, int], OffsetAndMetadata] = {}
    refused: dict[tuple[str, int], ErrorCode] = {}
    known = set(state.broker.topics())
    for t in request.topics:
        for p in t.partitions:
            where = (t.name, p.partition_index)
            if t.name not in known or not (
                0 <= p.partition_index < state.broker.topic(t.name).partitions
            ):
                refused[where] = ErrorCode.unknown_topic_or_partition
                continue
            # Nullable in the schema; Kafka keeps a null as "".
            metadata = p.committed_metadata or ""
            if len(metadata.encode()) > _MAX_METADATA:
                refused[where] = ErrorCode.offset_metadata_too_large
                continue
            positions[where] = OffsetAndMetadata(p.committed_offset, metadata)
    if error is None and positions:
        try:
            await asyncio.to_thread(state.broker.commit_offsets, request.group_id, positions)
        except LimitExceededError:  # a new group over max_groups: as JoinGroup answers it
            error = ErrorCode.group_max_size_reached
    return {
        "topics": [
            {
                "name": t.name,
                "partitions": [
                    {
                        "partition_index": p.partition_index,
                        "error_code": error
                        if error is not None
                        else refused.get((t.name, p.partition_index), ErrorCode.none),
                    }
                    for p in t.partitions
                ],
            }
            for t in request.topics
        ]
    }


# Kafka's offset.metadata.max.bytes (the broker's commit_offsets refuses more).
_MAX_METADATA = 4096

# What OffsetFetch answers for a partition the group never committed (Kafka's -1 and "").
_NONE = OffsetAndMetadata(-1, "")


def _fetch_group(state: ServerState, group: str, topics: Any) -> list[dict[str, Any]]:
    committed = state.broker.group_offsets(group)
    if topics is None:
        wanted: dict[str, list[int]] = {}
        for t, p in sorted(committed):
            wanted.setdefault(t, []).append(p)
    else:
        wanted = {t.name: list(t.partition_indexes) for t in topics}
    return [
        {
            "name": name,
            "partitions": [
                {
                    "partition_index": p,
                    "committed_offset": committed.get((name, p), _NONE).offset,
                    "committed_leader_epoch": -1,
                    "metadata": committed.get((name, p), _NONE).metadata,
                    "error_code": ErrorCode.none,
                }
                for p in partitions
            ],
        }
        for name, partitions in wanted.items()
    ]


async def handle_offset_fetch(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    if header.api_version >= 8:
        return {
            "groups": [
                {"group_id": g.group_id, "topics": _fetch_group(state, g.group_id, g.topics)}
                for g in request.groups
            ]
        }
    return {"topics": _fetch_group(state, request.group_id, request.topics)}


async def handle_describe_groups(
    state: ServerState, header: Header, request: Any
) -> dict[str, Any]:
    return {"groups": [state.groups.describe(g) for g in request.groups]}


async def handle_list_groups(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    wanted = set(getattr(request, "states_filter", ()) or ())
    groups = [g for g in state.groups.listing() if not wanted or g["group_state"] in wanted]
    return {"error_code": ErrorCode.none, "groups": groups}
