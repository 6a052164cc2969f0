"""InitProducerId: an id and epoch for an idempotent producer (transactions refused).

The id is new (``Producers.new_id``, above a durable high-water mark): it may
write that mark, so it is taken in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .codec import ErrorCode, Header
from .state import ServerState


async def handle_init_producer_id(
    state: ServerState, header: Header, request: Any
) -> dict[str, Any]:
    if request.transactional_id is not None:
        return {
            "error_code": ErrorCode.transactional_id_authorization_failed,
            "producer_id": -1,
            "producer_epoch": -1,
        }
    return {
        "error_code": ErrorCode.none,
        "producer_id": await asyncio.to_thread(state.producers.new_id),
        "producer_epoch": 0,
    }
