"""RecordBatch v2 header: the 61 fixed bytes of a batch, parsed and checked.

The first layer of the codec (docs/FORMAT.md sections 2-3): whether a batch
fits the buffer, which magic it carries, whether its CRC-32C holds, and the
header's fields. Knows nothing of records (``recordcodec``), files or
segments; positions in its errors are relative to the buffer it was given.

    base_offset int64 | batch_length int32    LOG_OVERHEAD, not in batch_length
    leader_epoch int32 | magic int8 = 2 | crc uint32 (CRC-32C, attributes..end)
    attributes int16 (bits 0-2 codec, 3 timestamp type, 4 transactional,
                      5 control, 6 delete horizon) | last_offset_delta int32
    base_timestamp int64 | max_timestamp int64 | producer_id int64 = -1
    producer_epoch int16 = -1 | base_sequence int32 = -1 | record_count int32
    records section (``recordcodec``), compressed as the attributes say

Every length is checked against the buffer before it is used, so damaged
bytes raise ``CorruptLogError`` instead of reading past the end.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import crc32c

from .errors import CorruptLogError, ErrorKind

_HEADER = struct.Struct(">qiibIhiqqqhii")  # 61 bytes, big-endian, no padding
HEADER_SIZE = _HEADER.size
LOG_OVERHEAD, _CRC_FROM = 12, 21  # prefix outside batch_length; CRC starts at attributes
MAGIC_OFFSET = 16
#: Bytes needed before the magic byte can be read (Kafka's HEADER_SIZE_UP_TO_MAGIC).
HEADER_UP_TO_MAGIC = 17
#: Kafka rejects a batch length below the smallest legacy message as corrupt.
MIN_LEGACY_LENGTH = 14
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49
_PREFIX = struct.Struct(">qiib")  # base_offset, batch_length, leader_epoch, magic
_BASE_OFFSET = struct.Struct(">q")
_CRC = struct.Struct(">I")
_INT64_MAX = (1 << 63) - 1

CODEC_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
DELETE_HORIZON_BIT = 0x40

NO_TIMESTAMP = -1


class BatchHeader(NamedTuple):
    """The 61-byte fixed header of a v2 batch, fields in file order."""

    base_offset: int
    batch_length: int
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def codec(self) -> int:
        return self.attributes & CODEC_MASK


class BatchSpan(NamedTuple):
    """What a segment needs to know of one encoded batch to index it."""

    size: int
    last_offset: int
    max_timestamp: int


def _is_zero(buf: bytes | bytearray | memoryview, start: int, end: int) -> bool:
    view = memoryview(buf)[start:end]
    return view.nbytes > 0 and not any(view.tobytes())


def read_header(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, verify_crc: bool = True
) -> BatchHeader:
    """Parse and check the batch at ``buf[pos]``; the whole batch must be in ``buf``.

    Order matters: a torn write is the likeliest damage, so the first questions
    are whether the batch fits (enough bytes for the magic, a length at least
    that of the smallest message, the batch within ``buf``) and then, for a
    magic other than 2, whether a legacy message's own CRC holds. Only then is
    the format judged: a torn tail whose magic byte was zeroed must be cut as
    damage, never refused as a legacy segment. Then the 61-byte header and
    (``verify_crc``) the CRC-32C. An all-zero remainder is reported as
    ``kind="zero_fill"``, a batch cut short as ``kind="truncated"``, a legacy
    message (magic 0/1, its IEEE CRC-32 intact) as ``"unsupported_magic"``.
    """
    available = len(buf) - pos
    if available < HEADER_UP_TO_MAGIC:
        kind = "zero_fill" if _is_zero(buf, pos, len(buf)) else "truncated"
        raise CorruptLogError(
            f"{available} bytes left, too few for a batch header", position=pos, kind=kind
        )
    _, batch_length, _, magic = _PREFIX.unpack_from(buf, pos)
    if batch_length < MIN_LEGACY_LENGTH:
        if _is_zero(buf, pos, len(buf)):
            raise CorruptLogError(
                f"zero-filled tail of {available} bytes (preallocated or torn write)",
                position=pos,
                kind=ErrorKind.ZERO_FILL,
            )
        raise CorruptLogError(
            f"batch length {batch_length} is below the minimum {MIN_LEGACY_LENGTH}",
            position=pos,
            kind=ErrorKind.INVALID_LENGTH,
        )
    end = pos + LOG_OVERHEAD + batch_length
    if end > len(buf):
        raise CorruptLogError(
            f"batch of {LOG_OVERHEAD + batch_length} bytes runs past the end of the data "
            f"({available} bytes left)",
            position=pos,
            kind=ErrorKind.TRUNCATED,
        )
    if magic != 2:
        raise _legacy_or_damage(buf, pos, end, magic)
    if batch_length < MIN_BATCH_LENGTH:
        raise CorruptLogError(
            f"batch length {batch_length} is below the v2 header's {MIN_BATCH_LENGTH}",
            position=pos,
            kind=ErrorKind.INVALID_LENGTH,
        )
    h = BatchHeader._make(_HEADER.unpack_from(buf, pos))
    if verify_crc:
        actual = crc32c.crc32c(memoryview(buf)[pos + _CRC_FROM : end])  # a view: no copy
        if actual != h.crc:
            raise CorruptLogError(
                f"CRC mismatch: stored {h.crc:#010x}, computed {actual:#010x}",
                position=pos,
                kind=ErrorKind.CRC_MISMATCH,
            )
    if h.last_offset_delta < 0 or h.record_count < 0:
        raise CorruptLogError(
            f"negative last offset delta {h.last_offset_delta} or record count {h.record_count}",
            position=pos,
            kind=ErrorKind.INVALID_RECORDS,
        )
    if h.base_offset < 0 or h.base_offset + h.last_offset_delta > _INT64_MAX:
        # The base offset lies outside the CRC: a damaged one must not pass as
        # offsets that every reader would skip or overflow.
        raise CorruptLogError(
            f"base offset {h.base_offset} is outside the offsets a log can hold",
            position=pos,
            kind=ErrorKind.OFFSET_REGRESSION,
        )
    return h


def _legacy_or_damage(
    buf: bytes | bytearray | memoryview, pos: int, end: int, magic: int
) -> CorruptLogError:
    """The error for a whole message whose magic is not 2.

    The magic sits at byte 16 in every version, and a v0/v1 message has its own
    IEEE CRC-32 at bytes 12..16 over bytes 16..end. Only a magic 0 or 1 whose
    CRC holds is Kafka's legacy format (refused, never cut); anything else is
    damage, such as an append torn after a sector boundary that zeroed the magic.
    """
    if magic in (0, 1):
        (stored,) = _CRC.unpack_from(buf, pos + LOG_OVERHEAD)
        if zlib.crc32(memoryview(buf)[pos + MAGIC_OFFSET : end]) == stored:
            return CorruptLogError(
                f"unsupported message format (magic {magic}); logstore reads only magic 2",
                position=pos,
                kind=ErrorKind.UNSUPPORTED_MAGIC,
            )
    return CorruptLogError(
        f"magic {magic} at a batch start, and no legacy message's CRC holds there: damaged or torn",
        position=pos,
        kind=ErrorKind.INVALID_MAGIC,
    )


def peek_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Unpack the 61-byte header at ``buf[pos]`` without any check (for trusted data)."""
    return BatchHeader._make(_HEADER.unpack_from(buf, pos))


def iter_batches(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, verify_crc: bool = True
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each batch from ``pos`` to the end of ``buf``."""
    end = len(buf)
    while pos < end:
        h = read_header(buf, pos, verify_crc=verify_crc)
        yield pos, h
        pos += LOG_OVERHEAD + h.batch_length


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Rewrite a batch's base offset in place (outside the CRC: no re-checksum)."""
    _BASE_OFFSET.pack_into(buf, pos, base_offset)
