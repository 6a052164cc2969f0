"""One client connection: size-prefixed frames in, answers out in request order.

Owns the framing (a 4-byte big-endian size, then the request), the limit on
a request's size, and what a bad frame does: a log line naming the peer and
the reason, then this connection closed; no other client and no stored data
is touched. Requests of one connection are answered one after the other, as
Kafka's protocol requires answers in request order.

Owns as well the bound on what one connection makes the server buffer: the
next request is not read while the answers not yet taken by the client
exceed ``max_buffered_bytes`` (the transport's high-water mark, waited out
with ``drain``), so a client that sends and never reads holds at most that
plus one answer, and the kernel's socket buffers push back on it. And the
order of a shutdown: a request being served when the server stops is
answered first; an idle connection is closed at once. Connections take turns:
each yields the loop after every request it answered.

With SASL on, every frame goes to the connection's ``SaslSession`` until it
is authenticated (``sasl`` owns what is allowed before that).

A Fetch's stored batches come as ``FileRanges`` and go out with ``sendfile``
(``send_stored``), from the segment files to the socket without a copy in
this process, as Kafka's ``FileRecords.transferTo``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct

from .. import FileRanges
from . import apis, codec
from .codec import ProtocolError
from .sasl import SaslSession, SaslSettings
from .state import ServerState

logger = logging.getLogger(__name__)
_SIZE = struct.Struct(">i")
#: A frame's limit before SASL authentication (Kafka's ``sasl.server.max.receive.size``):
#: who has not authenticated cannot make the server hold ``max_request_bytes``.
MAX_UNAUTHENTICATED_BYTES = 512 << 10


class Connection:
    """Whether a connection is serving a request (a shutdown waits for it), and its SASL state."""

    def __init__(self, sasl: SaslSettings | None = None) -> None:
        self.busy = False
        self.stopping = False
        self._transport: asyncio.BaseTransport | None = None
        self._sasl_settings = sasl
        #: This connection's SASL exchange; ``None`` when the listener has no SASL.
        self.sasl: SaslSession | None = None

    def buffered(self) -> int:
        """Bytes of answers not yet taken by the client (what this connection costs in memory)."""
        transport = self._transport
        if isinstance(transport, asyncio.WriteTransport):
            return transport.get_write_buffer_size()
        return 0


class StoredBatchesShortened(ConnectionError):
    """Stored batches came up shorter than the frame announced: the connection is cut."""


def sendfile_usable(writer: asyncio.StreamWriter) -> bool:
    """Whether stored batches go out with ``sendfile``: not under TLS (the bytes must be
    encrypted in this process), not with ``LOGSTORE_SENDFILE=0``, and where it exists."""
    if os.environ.get("LOGSTORE_SENDFILE", "1") == "0" or not hasattr(os, "sendfile"):
        return False
    return writer.get_extra_info("ssl_object") is None


async def send_stored(writer: asyncio.StreamWriter, stored: FileRanges, peer: object) -> None:
    """Send ``stored`` after what is already written, then close it.

    As Kafka's ``FileRecords.transferTo``: ``os.sendfile`` on the
    non-blocking socket at once when nothing is queued before the ranges;
    what it does not take goes through ``loop.sendfile``, which waits for the
    transport's buffer to empty and for the socket to be writable between
    short writes, so other connections are served meanwhile. Under TLS the ranges are read
    in a worker thread and written. A file cut shorter under the ranges (a
    truncation) would leave the frame shorter than its size says: the
    connection is aborted instead (``StoredBatchesShortened``).
    """
    try:
        if not sendfile_usable(writer):
            try:
                data = await asyncio.to_thread(stored.read)
            except OSError as exc:
                raise _shortened(writer, peer, str(exc)) from exc
            writer.write(data)
            return
        loop = asyncio.get_running_loop()
        sock = writer.get_extra_info("socket")
        for fd, position, length in stored.ranges:
            sent = 0
            if sock is not None and not writer.transport.get_write_buffer_size():
                # Nothing queued before it: as much as the socket takes now, with no
                # trip through the loop (most fetches fit the socket's buffer).
                sent = _sendfile_now(sock.fileno(), fd, position, length)
            if sent < length:
                with open(fd, "rb", buffering=0, closefd=False) as file:
                    rest = await loop.sendfile(
                        writer.transport, file, position + sent, length - sent
                    )
                sent += rest
            if sent != length:
                raise _shortened(writer, peer, f"{sent} of {length} bytes at position {position}")
    finally:
        stored.close()


def _sendfile_now(sock_fd: int, fd: int, position: int, length: int) -> int:
    """Bytes ``os.sendfile`` puts on the non-blocking socket at once (0 when it is full)."""
    sent = 0
    while sent < length:
        try:
            n = os.sendfile(sock_fd, fd, position + sent, length - sent)
        except (BlockingIOError, InterruptedError):
            break
        if n == 0:
            break  # the file ended: loop.sendfile finds it too, and the caller fails
        sent += n
    return sent


def _shortened(writer: asyncio.StreamWriter, peer: object, what: str) -> StoredBatchesShortened:
    logger.warning("%s: stored batches shortened while sent (%s): connection closed", peer, what)
    writer.transport.abort()
    return StoredBatchesShortened(what)


async def serve_connection(
    state: ServerState,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    max_request_bytes: int,
    max_buffered_bytes: int = 1 << 20,
    connection: Connection | None = None,
) -> None:
    peer = writer.get_extra_info("peername")
    conn = connection or Connection()
    conn._transport = writer.transport
    if conn._sasl_settings is not None:
        conn.sasl = SaslSession(conn._sasl_settings, apis.dispatch, peer)
    writer.transport.set_write_buffer_limits(high=max_buffered_bytes)
    try:
        while not conn.stopping:
            try:
                prefix = await reader.readexactly(_SIZE.size)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    logger.info("%s: closed inside a frame's size", peer)
                return
            (size,) = _SIZE.unpack(prefix)
            limit = max_request_bytes
            if conn.sasl is not None and not conn.sasl.authenticated:
                limit = min(limit, MAX_UNAUTHENTICATED_BYTES)
            if size < 0 or size > limit:
                logger.warning(
                    "%s: a frame of %d bytes (limit %d): connection closed", peer, size, limit
                )
                return
            try:
                frame = await reader.readexactly(size)
            except asyncio.IncompleteReadError:
                logger.info("%s: closed inside a frame of %d bytes", peer, size)
                return
            conn.busy = True
            close = False
            # Per request: a TLS handshake may have wrapped the transport since.
            codec.SENDFILE.set(sendfile_usable(writer))
            try:
                if conn.sasl is not None and not conn.sasl.authenticated:
                    answer, close = await conn.sasl.serve(state, frame)
                else:
                    header = codec.decode_header(frame)
                    answer = await apis.dispatch(state, header, frame)
            except ProtocolError as exc:
                logger.warning("%s: %s: connection closed", peer, exc)
                return
            if answer is not None:
                if isinstance(answer, bytes):
                    writer.write(answer)
                else:  # a Fetch's pieces, records by reference: a view each, so what the
                    for piece in answer:  # socket does not take at once is not sliced first
                        if isinstance(piece, FileRanges):
                            await send_stored(writer, piece, peer)
                        else:
                            writer.write(memoryview(piece))
                # Not one more request read while the client leaves this much unread.
                await writer.drain()
            if close:
                return
            conn.busy = False
            # Neither a buffered read nor a drain below the mark yields to the loop: without
            # this, a client that pipelines thousands of requests (its answers absorbed by the
            # kernel's send buffer) would hold the loop, and every other client, until it stops.
            await asyncio.sleep(0)
    except (ConnectionError, asyncio.CancelledError):
        return
    except Exception:  # a bug must cost this connection only, with its reason in the log
        logger.exception("%s: request failed: connection closed", peer)
    finally:
        writer.close()
