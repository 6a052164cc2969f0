"""InitProducerId: an id and epoch for an idempotent producer (transactions refused)."""

from __future__ import annotations

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
        "producer_id": state.producers.new_id(),
        "producer_epoch": 0,
    }
