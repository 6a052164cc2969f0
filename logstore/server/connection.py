"""One client connection: size-prefixed frames in, answers out in request order.

Owns the framing (a 4-byte big-endian size, then the request), the limit on
a request's size, and what a bad frame does: a log line naming the peer and
the reason, then this connection closed; no other client and no stored data
is touched. Requests of one connection are answered one after the other, as
Kafka's protocol requires answers in request order.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from . import apis, codec
from .codec import ProtocolError
from .state import ServerState

logger = logging.getLogger(__name__)
_SIZE = struct.Struct(">i")


async def serve_connection(
    state: ServerState,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    max_request_bytes: int,
) -> None:
    peer = writer.get_extra_info("peername")
    try:
        while True:
            try:
                prefix = await reader.readexactly(_SIZE.size)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    logger.info("%s: closed inside a frame's size", peer)
                return
            (size,) = _SIZE.unpack(prefix)
            if size < 0 or size > max_request_bytes:
                logger.warning(
                    "%s: a frame of %d bytes (limit %d): connection closed",
                    peer,
                    size,
                    max_request_bytes,
                )
                return
            try:
                frame = await reader.readexactly(size)
            except asyncio.IncompleteReadError:
                logger.info("%s: closed inside a frame of %d bytes", peer, size)
                return
            try:
                header = codec.decode_header(frame)
                answer = await apis.dispatch(state, header, frame)
            except ProtocolError as exc:
                logger.warning("%s: %s: connection closed", peer, exc)
                return
            if answer is not None:
                writer.write(answer)
                await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        return
    except Exception:  # a bug must cost this connection only, with its reason in the log
        logger.exception("%s: request failed: connection closed", peer)
    finally:
        writer.close()
