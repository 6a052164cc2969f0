"""CRC-32C of the stored batches of a file range, read through one small reused buffer.

What ``batch_ranges`` needs to keep the promise ``read_batches`` keeps (no
batch that fails its CRC is served) while handing the bytes themselves to
``sendfile``: each batch is read in pieces of at most ``PIECE`` bytes into a
buffer of that size that stays in the CPU's cache, and ``crc32c`` runs over
each piece (it releases the GIL over large buffers), carrying the CRC on. No
Python object the size of the range is built, and a read the disk cannot
serve, or a file shorter than the range, is an ``OSError`` or a short read
here, a ``False`` for the caller, never a ``SIGBUS`` as a memory mapping
would give. Knows a batch's length prefix and where its CRC lies; not files,
segments, locks or what to do with a failure (the caller's checking walk says
what is wrong).
"""

from __future__ import annotations

import os
import struct
import threading

import crc32c

from .batch import LOG_OVERHEAD

#: Batch length (bytes 8..12) and stored CRC (bytes 17..21) of a v2 batch.
_LENGTH_AND_CRC = struct.Struct(">8xi5xI")
#: The CRC covers the batch from its attributes (byte 21) to its end.
_CRC_FROM = 21
#: Bytes read per ``preadv``: small enough to stay in the cache the CRC then reads.
PIECE = 256 * 1024

_buffers = threading.local()  # one reused buffer per thread (the server checks in workers)


def batches_hold_crc(fd: int, position: int, length: int) -> bool:
    """Whether the batches filling ``[position, position + length)`` of ``fd`` hold their CRC.

    ``False`` too when a length prefix does not tile the range, the file is
    shorter than the range, or a read fails.
    """
    piece: memoryview | None = getattr(_buffers, "piece", None)
    if piece is None:
        piece = _buffers.piece = memoryview(bytearray(PIECE))
    pos, end = position, position + length
    try:
        while pos < end:
            if end - pos < _CRC_FROM:
                return False
            head = os.pread(fd, _CRC_FROM, pos)
            if len(head) < _CRC_FROM:
                return False
            batch_length, stored = _LENGTH_AND_CRC.unpack_from(head)
            whole = LOG_OVERHEAD + batch_length
            if whole < _CRC_FROM or whole > end - pos:
                return False
            if _crc_of(fd, pos + _CRC_FROM, whole - _CRC_FROM, piece) != stored:
                return False
            pos += whole
    except OSError:
        return False
    return True


def _crc_of(fd: int, at: int, count: int, piece: memoryview) -> int | None:
    """The CRC-32C of ``count`` bytes of ``fd`` from ``at``; ``None`` if the file ends first."""
    crc = 0
    while count:
        n = os.preadv(fd, [piece[: min(count, PIECE)]], at)
        if n <= 0:
            return None
        crc = crc32c.crc32c(piece[:n], crc)
        at += n
        count -= n
    return crc
