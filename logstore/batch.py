"""RecordBatch v2 codec: bytes in, bytes out (docs/FORMAT.md sections 2-4).

The codec's public face, in three layers: ``batchheader`` parses and checks the
61-byte header (lengths, magic, CRC-32C), ``recordcodec`` encodes and decodes
the records section, and this module joins them with compression into whole
batches: decode a batch's records, build one, rebuild one with fewer records.
Callers import the header names from here too. Knows nothing of files or
segments; positions in its errors are relative to the buffer it was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import crc32c

from . import compression
from ._native import speedups
from ._varint import INT32_MAX
from .batchheader import (
    _CRC,
    _CRC_FROM,
    _HEADER,
    CODEC_MASK,
    CONTROL_BIT,
    DELETE_HORIZON_BIT,
    HEADER_SIZE,
    HEADER_UP_TO_MAGIC,
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    MIN_BATCH_LENGTH,
    MIN_LEGACY_LENGTH,
    NO_TIMESTAMP,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    BatchSpan,
    iter_batches,
    peek_header,
    read_header,
    set_base_offset,
)
from .errors import CodecUnavailableError, CorruptLogError, InvalidRecordError, RecordTooLarge
from .model import Record
from .recordcodec import (
    Entry,
    _decode_section,
    _py_decode_section,
    accepts_as_is,
    check_section,
    encode_len,
    encode_records,
    encode_section,
)

__all__ = [
    "CODEC_MASK",
    "CONTROL_BIT",
    "DELETE_HORIZON_BIT",
    "HEADER_SIZE",
    "HEADER_UP_TO_MAGIC",
    "IMPLEMENTATION",
    "LOG_OVERHEAD",
    "MAGIC_OFFSET",
    "MIN_BATCH_LENGTH",
    "MIN_LEGACY_LENGTH",
    "NO_TIMESTAMP",
    "TIMESTAMP_TYPE_BIT",
    "TRANSACTIONAL_BIT",
    "BatchHeader",
    "BatchSpan",
    "Entry",
    "accepts_as_is",
    "build_batch",
    "build_batch_parts",
    "check_records",
    "decode_keys",
    "decode_records",
    "encode_batch",
    "encode_len",
    "encode_records",
    "encode_section",
    "iter_batches",
    "peek_header",
    "read_header",
    "rebuild",
    "set_base_offset",
]

_C = speedups
#: Which record codec is active: "compiled" (the C extension) or "pure" (Python).
IMPLEMENTATION = "compiled" if _C is not None else "pure"


# ---------------------------------------------------------------- decoding


def decode_records(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    header: BatchHeader | None = None,
    *,
    verify_crc: bool = True,
    min_offset: int = 0,
    max_records: int | None = None,
) -> list[Record]:
    """Decode the records of the batch at ``buf[pos]`` with offset >= ``min_offset``.

    Records below ``min_offset`` are stepped over by their length prefix, not
    decoded. With ``max_records``, decoding stops once that many are built (a
    read that wants only the start of a batch). Raises ``CorruptLogError``
    (position relative to ``buf``) when the batch or any record decoded is
    invalid; a batch decoded to its end must also have no leftover bytes and
    the record count its header says.
    """
    h = header if header is not None else read_header(buf, pos, verify_crc=verify_crc)
    if max_records == 0:
        return []
    records: list[Record] = _decode(
        buf, pos, h, min_offset, -1 if max_records is None else max_records
    )
    return records


def check_records(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> int:
    """Check every record of the batch at ``buf[pos]`` as ``decode_records`` does; build none.

    Returns how many records have no key. Raises ``CorruptLogError`` exactly
    where ``decode_records`` would.
    """
    keyless: int = _decode(buf, pos, header, 0, -1, check_only=True)
    return keyless


def decode_keys(
    buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader
) -> list[tuple[int, bytes | None]]:
    """``(offset, key)`` of every record of a checked batch: the cleaner's first pass.

    Raises ``CorruptLogError`` like ``decode_records``. The pure decoder steps
    over values and headers by the record's length; the compiled one builds
    whole records, which is still faster than skipping in Python.
    """
    if _C is not None:
        return [(r[0], r[2]) for r in _decode(buf, pos, header, 0, -1)]
    keys: list[tuple[int, bytes | None]] = _decode(buf, pos, header, 0, -1, keys_only=True)
    return keys


def _decode(
    buf: bytes | bytearray | memoryview,
    pos: int,
    h: BatchHeader,
    min_offset: int,
    max_records: int,
    *,
    keys_only: bool = False,
    check_only: bool = False,
) -> Any:
    """Decompress the records section of the batch at ``buf[pos]`` and decode (or check) it.

    Errors are reported at ``pos`` with where in the section they were found.
    """
    end = pos + LOG_OVERHEAD + h.batch_length
    codec = h.attributes & CODEC_MASK
    data: bytes | memoryview
    if codec == compression.NONE:
        # The compiled decoder reads a view in place; the pure one slices bytes.
        view = memoryview(buf)[pos + HEADER_SIZE : end]
        data = view if _C is not None else bytes(view)
    else:
        try:
            data = compression.decompress(codec, memoryview(buf)[pos + HEADER_SIZE : end])
        except CorruptLogError as exc:
            raise CorruptLogError(exc.reason, position=pos, kind=exc.kind) from None
        except CodecUnavailableError as exc:
            raise CodecUnavailableError(exc.codec, position=pos) from None
    try:
        if keys_only:
            return _py_decode_section(bytes(data), h, min_offset, max_records, keys_only=True)
        if check_only:
            return check_section(data, h)
        return _decode_section(data, h, min_offset, max_records)
    except CorruptLogError as exc:
        where = "decompressed records section" if codec else "batch"
        raise CorruptLogError(
            f"{exc.reason} (at byte {exc.position} of the {where})", position=pos, kind=exc.kind
        ) from None


def build_batch(
    records_section: bytes,
    *,
    base_offset: int,
    record_count: int,
    last_offset_delta: int,
    base_timestamp: int,
    max_timestamp: int,
    attributes: int = 0,
    compression_level: int | None = None,
    compressed: bool = False,
    leader_epoch: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """Wrap a records section into a finished batch: compress (per ``attributes``), CRC.

    ``compressed=True`` means ``records_section`` is already compressed.
    """
    header, body = build_batch_parts(
        records_section,
        base_offset=base_offset,
        record_count=record_count,
        last_offset_delta=last_offset_delta,
        base_timestamp=base_timestamp,
        max_timestamp=max_timestamp,
        attributes=attributes,
        compression_level=compression_level,
        compressed=compressed,
        leader_epoch=leader_epoch,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )
    return header + body  # one copy of the body, straight into the finished batch


def build_batch_parts(
    records_section: bytes,
    *,
    base_offset: int,
    record_count: int,
    last_offset_delta: int,
    base_timestamp: int,
    max_timestamp: int,
    attributes: int = 0,
    compression_level: int | None = None,
    compressed: bool = False,
    leader_epoch: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> tuple[bytes, bytes]:
    """``build_batch`` as ``(61-byte header, CRC set; body)``: the batch is their concatenation.

    The append path writes both with one ``pwritev`` rather than joining
    them: for a batch of 1 MiB the join was a second copy of the records and
    a second fresh megabyte for the allocator to fault in.
    """
    codec = attributes & CODEC_MASK
    body = records_section
    if codec and not compressed:
        body = compression.compress(codec, records_section, compression_level)
    batch_length = HEADER_SIZE - LOG_OVERHEAD + len(body)
    if batch_length > INT32_MAX:
        raise RecordTooLarge(f"a batch of {batch_length} bytes is larger than 2 GiB - 1")
    header = _HEADER.pack(
        base_offset,
        batch_length,
        leader_epoch,
        2,
        0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count,
    )
    crc = crc32c.crc32c(body, crc32c.crc32c(header[_CRC_FROM:]))
    return b"".join((header[: _CRC_FROM - 4], _CRC.pack(crc), header[_CRC_FROM:])), body


def rebuild(
    header: BatchHeader,
    records: Sequence[Record],
    *,
    attributes: int,
    base_timestamp: int | None = None,
    max_timestamp: int | None = None,
    last_offset_delta: int | None = None,
    compression_level: int | None = None,
) -> bytes:
    """The batch ``header`` heads, rebuilt to hold only ``records`` (some of its own).

    What truncation and the cleaner both need: the base offset, leader epoch
    and producer fields (id, epoch, base sequence) stay; records keep their
    offsets (deltas from the base) and timestamps. ``base_timestamp`` and
    ``max_timestamp`` default to the first and the largest record timestamp,
    ``last_offset_delta`` to the batch's own (the cleaner keeps the offset
    range, truncation ends it earlier). With no records the section is empty
    and the codec bits are cleared (nothing to compress).
    """
    base = header.base_offset
    if records:
        base_ts = records[0].timestamp if base_timestamp is None else base_timestamp
        section = encode_records(
            [(r.value, r.key, r.headers, r.timestamp) for r in records],
            base_ts,
            [r.offset - base for r in records],
        )
    else:
        base_ts = NO_TIMESTAMP if base_timestamp is None else base_timestamp
        section = b""
        attributes &= ~CODEC_MASK
    if max_timestamp is None:
        max_timestamp = max((r.timestamp for r in records), default=header.max_timestamp)
    return build_batch(
        section,
        base_offset=base,
        record_count=len(records),
        last_offset_delta=header.last_offset_delta
        if last_offset_delta is None
        else last_offset_delta,
        base_timestamp=base_ts,
        max_timestamp=max_timestamp,
        attributes=attributes,
        compression_level=compression_level,
        leader_epoch=header.leader_epoch,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
    )


def encode_batch(
    entries: Sequence[Entry],
    *,
    base_offset: int,
    codec: int = compression.NONE,
    compression_level: int | None = None,
) -> bytes:
    """Encode a fresh batch: offset deltas 0..n-1, CreateTime, no producer id."""
    if not entries:
        raise InvalidRecordError("a batch needs at least one record")
    base_ts = entries[0][3]
    if base_ts is None:
        raise InvalidRecordError("encode_batch needs explicit timestamps")
    section, _, max_ts = encode_section(entries, base_ts)
    return build_batch(
        section,
        base_offset=base_offset,
        record_count=len(entries),
        last_offset_delta=len(entries) - 1,
        base_timestamp=base_ts,
        max_timestamp=max_ts,
        attributes=codec,
        compression_level=compression_level,
    )
