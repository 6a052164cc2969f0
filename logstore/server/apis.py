"""Which APIs the server speaks, at which versions, and the dispatch of a request.

Owns the table of handlers with the version range each is advertised at in
ApiVersions, ApiVersions itself, and the answers to what is not in the
table: a version outside a range (ApiVersions: KIP-511's v0 answer with
UNSUPPORTED_VERSION and the table; another API: its own response with
UNSUPPORTED_VERSION where it has an error code) and an API the server does
not implement (its response with UNSUPPORTED_VERSION). An API that Kafka's
schemas do not know cannot be answered at all: ``ProtocolError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from . import codec
from .codec import ErrorCode, Header, ProtocolError
from .configapi import (
    handle_alter_configs,
    handle_describe_configs,
    handle_incremental_alter_configs,
)
from .fetch import handle_fetch
from .groupapi import (
    handle_describe_groups,
    handle_find_coordinator,
    handle_heartbeat,
    handle_join_group,
    handle_leave_group,
    handle_list_groups,
    handle_offset_commit,
    handle_offset_fetch,
    handle_sync_group,
)
from .offsets import handle_list_offsets
from .produce import handle_produce
from .producers_api import handle_init_producer_id
from .sasl import handle_sasl_authenticate, handle_sasl_handshake
from .state import ServerState
from .topics import handle_create_topics, handle_delete_topics, handle_metadata

Handler = Callable[[ServerState, Header, Any], Awaitable["dict[str, Any] | None"]]


async def handle_api_versions(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    return api_versions_answer(ErrorCode.none)


@dataclasses.dataclass(frozen=True)
class Api:
    key: int
    min_version: int
    max_version: int
    handler: Handler


#: Versions as Kafka 4.x brokers accept them (KIP-896 removed the oldest), capped where
#: a later version needs topic ids (Fetch 13, Produce 13) or a feature not served yet.
APIS: dict[int, Api] = {
    api.key: api
    for api in (
        Api(0, 3, 12, handle_produce),
        Api(1, 4, 12, handle_fetch),
        Api(2, 1, 9, handle_list_offsets),
        Api(3, 0, 12, handle_metadata),
        Api(8, 2, 9, handle_offset_commit),
        Api(9, 1, 9, handle_offset_fetch),
        Api(10, 0, 6, handle_find_coordinator),
        Api(11, 0, 9, handle_join_group),
        Api(12, 0, 4, handle_heartbeat),
        Api(13, 0, 5, handle_leave_group),
        Api(14, 0, 5, handle_sync_group),
        Api(15, 0, 5, handle_describe_groups),
        Api(16, 0, 5, handle_list_groups),
        Api(17, 0, 1, handle_sasl_handshake),
        Api(18, 0, 4, handle_api_versions),
        Api(19, 2, 7, handle_create_topics),
        Api(20, 1, 6, handle_delete_topics),
        Api(22, 0, 5, handle_init_producer_id),
        Api(32, 1, 4, handle_describe_configs),
        Api(33, 0, 2, handle_alter_configs),
        Api(44, 0, 1, handle_incremental_alter_configs),
        Api(36, 0, 2, handle_sasl_authenticate),
    )
}


def api_versions_answer(error: ErrorCode) -> dict[str, Any]:
    return {
        "error_code": error,
        "api_keys": [
            {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
            for a in APIS.values()
        ],
        "throttle_time": 0,
    }


def _refusal(api_key: int, version: int) -> dict[str, Any]:
    """A response that says UNSUPPORTED_VERSION wherever the schema has an error code."""
    cls = codec.response_class(api_key, version)
    assert cls is not None
    has_error = any(f.name == "error_code" for f in dataclasses.fields(cls))
    return {"error_code": ErrorCode.unsupported_version} if has_error else {}


async def dispatch(state: ServerState, header: Header, frame: bytes) -> codec.Frame | None:
    """The answer frame to one request frame; ``None`` when none is due (``acks=0``).

    Raises:
        ProtocolError: the frame cannot be parsed, or its API is unknown to Kafka's schemas.
    """
    api = APIS.get(header.api_key)
    key, version = header.api_key, header.api_version
    if key == codec.API_VERSIONS_KEY and (
        api is None or not api.min_version <= version <= api.max_version
    ):
        # KIP-511: the v0 layout, which every client can read, lists what is supported.
        body = api_versions_answer(ErrorCode.unsupported_version)
        return codec.encode_response(key, 0, header.correlation_id, body)
    if api is None or not api.min_version <= version <= api.max_version:
        if not codec.known_api(key) or codec.response_class(key, version) is None:
            raise ProtocolError(f"API {key} v{version} is not one Kafka's schemas know")
        return codec.encode_response(key, version, header.correlation_id, _refusal(key, version))
    request = codec.decode_request(header, frame)
    answer = await api.handler(state, header, request)
    if answer is None:
        return None
    return codec.encode_response(key, version, header.correlation_id, answer)
