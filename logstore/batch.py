"""RecordBatch v2 codec: bytes in, bytes out.

Writes and reads the layout Kafka uses for magic 2. See docs/FORMAT.md sections 2-4.
Knows nothing of files or segments; positions in its errors are relative to
the buffer it was given.

    base_offset int64 | batch_length int32    LOG_OVERHEAD, not in batch_length
    leader_epoch int32 | magic int8 = 2 | crc uint32 (CRC-32C, attributes..end)
    attributes int16 (bits 0-2 codec, 3 timestamp type, 4 transactional,
                      5 control, 6 delete horizon) | last_offset_delta int32
    base_timestamp int64 | max_timestamp int64 | producer_id int64 = -1
    producer_epoch int16 = -1 | base_sequence int32 = -1 | record_count int32
    records: record_count x
      length varint | attributes int8 | timestamp_delta varlong | offset_delta varint
      key_length varint (-1 null) | key | value_length varint (-1 null) | value
      header_count varint | header_count x (key_length varint | utf-8 key |
                                             value_length varint (-1 null) | value)

Decoding validates every length against the buffer before slicing, so damaged
bytes raise ``CorruptLogError`` instead of reading past the end or allocating.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any, NamedTuple

import crc32c

from . import compression
from ._native import speedups
from ._varint import (
    INT32_MAX,
    MAX_VARINT_BYTES,
    MAX_VARLONG_BYTES,
    TABLE_LIMIT,
    VARINT_TABLE,
    _zigzag,
    decode_varint,
)
from .errors import (
    CodecUnavailableError,
    CorruptLogError,
    ErrorKind,
    InvalidRecordError,
    RecordTooLarge,
)
from .model import Header, Message, Record

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


_new_record = tuple.__new__
_EMPTY: tuple[Header, ...] = ()


_C = speedups
#: Which record codec is active: "compiled" (the C extension) or "pure" (Python).
IMPLEMENTATION = "compiled" if _C is not None else "pure"


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
    return _decode(buf, pos, h, min_offset, -1 if max_records is None else max_records)


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
    return _decode(buf, pos, header, 0, -1, keys_only=True)


def _decode(
    buf: bytes | bytearray | memoryview,
    pos: int,
    h: BatchHeader,
    min_offset: int,
    max_records: int,
    *,
    keys_only: bool = False,
) -> list[Any]:
    """Decompress the records section of the batch at ``buf[pos]`` and decode it.

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
        return _decode_section(data, h, min_offset, max_records)
    except CorruptLogError as exc:
        where = "decompressed records section" if codec else "batch"
        raise CorruptLogError(
            f"{exc.reason} (at byte {exc.position} of the {where})", position=pos, kind=exc.kind
        ) from None


def _py_decode_section(
    data: bytes, h: BatchHeader, min_offset: int, max_records: int = -1, *, keys_only: bool = False
) -> list[Any]:
    """Parse ``h.record_count`` records filling ``data`` exactly (stop at ``max_records`` built).

    ``keys_only`` gives ``(offset, key)`` pairs and steps over the rest of each
    record by its length (checked as far as the key).

    The loop is the read hot path: varints of one and two bytes are decoded
    inline, and bounds are checked once per record (``pos == rec_end``) rather
    than per field. A field that overruns its record leaves ``pos`` beyond
    ``rec_end``, and indexing past ``data`` raises ``IndexError``; both become
    ``CorruptLogError``. Slicing never allocates more than ``data`` holds.
    """
    count = h.record_count
    limit = len(data)
    # Each record is at least 7 bytes: refuse a count the data cannot hold before looping.
    if count * 7 > limit:
        raise CorruptLogError(
            f"record count {count} cannot fit in {limit} bytes",
            position=0,
            kind=ErrorKind.INVALID_RECORDS,
        )
    base_offset = h.base_offset
    base_ts = h.base_timestamp
    fixed_ts = h.max_timestamp if h.attributes & TIMESTAMP_TYPE_BIT else None
    skip_below = min_offset - base_offset
    out: list[Any] = []
    append = out.append
    new = _new_record
    empty = _EMPTY
    varint = decode_varint
    pos = 0
    prev_delta = -1
    start = 0
    try:
        for _ in range(count):
            start = pos
            b = data[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    z = (b & 0x7F) | (b2 << 7)
                    length = (z >> 1) ^ -(z & 1)
                    pos += 2
                else:
                    length, pos = varint(data, pos, MAX_VARINT_BYTES)
            rec_end = pos + length
            if length < 6 or rec_end > limit:
                raise CorruptLogError(
                    f"record length {length} is invalid or overruns the data",
                    position=start,
                    kind=ErrorKind.INVALID_RECORDS,
                )
            b = data[pos + 1]  # pos: the record's attributes, unused
            if b < 0x80:
                ts_delta = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                ts_delta, pos = varint(data, pos + 1, MAX_VARLONG_BYTES)
            b = data[pos]
            if b < 0x80:
                delta = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    z = (b & 0x7F) | (b2 << 7)
                    delta = (z >> 1) ^ -(z & 1)
                    pos += 2
                else:
                    delta, pos = varint(data, pos, MAX_VARINT_BYTES)
            if delta <= prev_delta:
                raise CorruptLogError(
                    f"offset delta {delta} does not follow {prev_delta}",
                    position=start,
                    kind=ErrorKind.INVALID_RECORDS,
                )
            prev_delta = delta
            if delta < skip_below:
                pos = rec_end
                continue
            b = data[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                n, pos = varint(data, pos, MAX_VARINT_BYTES)
            if n < 0:
                key = None
            else:
                key = data[pos : pos + n]
                pos += n
            if keys_only:
                if pos > rec_end:
                    raise CorruptLogError(
                        f"key of {n} bytes overruns its record",
                        position=start,
                        kind=ErrorKind.INVALID_RECORDS,
                    )
                append((base_offset + delta, key))
                pos = rec_end
                continue
            b = data[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    z = (b & 0x7F) | (b2 << 7)
                    n = (z >> 1) ^ -(z & 1)
                    pos += 2
                else:
                    n, pos = varint(data, pos, MAX_VARINT_BYTES)
            if n < 0:
                value = None
            else:
                value = data[pos : pos + n]
                pos += n
            if data[pos] == 0:
                headers = empty
                pos += 1
            else:
                headers, pos = _decode_headers(data, pos, rec_end, start)
            if pos != rec_end:
                raise CorruptLogError(
                    f"record fields end at byte {pos}, its length says {rec_end}",
                    position=start,
                    kind=ErrorKind.INVALID_RECORDS,
                )
            append(
                new(
                    Record,
                    (
                        base_offset + delta,
                        base_ts + ts_delta if fixed_ts is None else fixed_ts,
                        key,
                        value,
                        headers,
                    ),
                )
            )
            if len(out) == max_records:
                return out  # the caller wants no more: the rest is neither built nor checked
    except IndexError:
        raise CorruptLogError(
            "record runs past the end of the records section",
            position=start,
            kind=ErrorKind.INVALID_RECORDS,
        ) from None
    if pos != limit:
        raise CorruptLogError(
            f"{limit - pos} bytes left over after {count} records",
            position=pos,
            kind=ErrorKind.INVALID_RECORDS,
        )
    if prev_delta > h.last_offset_delta:
        raise CorruptLogError(
            f"offset delta {prev_delta} exceeds the batch's last offset delta "
            f"{h.last_offset_delta}",
            position=0,
            kind=ErrorKind.INVALID_RECORDS,
        )
    return out


def _decode_headers(
    data: bytes, pos: int, rec_end: int, start: int
) -> tuple[tuple[Header, ...], int]:
    """Decode a record's headers; the caller checks that they end at ``rec_end``."""
    count, pos = decode_varint(data, pos, MAX_VARINT_BYTES)
    if count < 0 or count * 2 > rec_end - pos:
        raise CorruptLogError(
            f"header count {count} is invalid for the record",
            position=start,
            kind=ErrorKind.INVALID_RECORDS,
        )
    headers: list[Header] = []
    for _ in range(count):
        n, pos = decode_varint(data, pos, MAX_VARINT_BYTES)
        if n < 0 or pos + n > rec_end:
            raise CorruptLogError(
                f"header key length {n} is invalid", position=start, kind=ErrorKind.INVALID_RECORDS
            )
        try:
            hkey = data[pos : pos + n].decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptLogError(
                "header key is not UTF-8", position=start, kind=ErrorKind.INVALID_RECORDS
            ) from None
        pos += n
        n, pos = decode_varint(data, pos, MAX_VARINT_BYTES)
        if n < 0:
            hval = None
        else:
            hval = data[pos : pos + n]
            pos += n
        headers.append((hkey, hval))
    return tuple(headers), pos


# ---------------------------------------------------------------- encoding

#: One record to encode: ``(value, key, headers, timestamp)``, the field order of
#: ``Message`` so validated messages are encoded as they are. A ``None``
#: timestamp takes the encoder's ``now``.
Entry = tuple["bytes | None", "bytes | None", "Sequence[Header]", "int | None"]

_VARINT_LEN = tuple(len(v) for v in VARINT_TABLE)
# attributes 0, timestamp delta 0, offset delta d: the prefix of most appended records.
_PREFIX_SAME_TS = tuple(b"\x00\x00" + VARINT_TABLE[d + 1] for d in range(TABLE_LIMIT))


def _encode_headers(headers: Sequence[Header]) -> bytes:
    out = [encode_len(len(headers))]
    for hkey, hval in headers:
        kb = hkey.encode("utf-8")
        out.append(encode_len(len(kb)))
        out.append(kb)
        if hval is None:
            out.append(b"\x01")
        else:
            out.append(encode_len(len(hval)))
            out.append(hval)
    return b"".join(out)


def encode_len(n: int) -> bytes:
    return VARINT_TABLE[n + 1] if n < TABLE_LIMIT else _zigzag(n)


def encode_section(
    entries: Sequence[Entry],
    base_timestamp: int,
    *,
    start: int = 0,
    stop: int | None = None,
    limit_bytes: int | None = None,
    offset_deltas: Sequence[int] | None = None,
    now: int = NO_TIMESTAMP,
) -> tuple[bytes, int, int]:
    """Encode ``entries[start:stop]`` as an uncompressed records section (see ``_py_encode_section``)."""
    if _C is not None:
        return _C.encode_section(  # type: ignore[no-any-return]
            entries, base_timestamp, start, stop, limit_bytes, offset_deltas, now
        )
    return _py_encode_section(
        entries,
        base_timestamp,
        start=start,
        stop=stop,
        limit_bytes=limit_bytes,
        offset_deltas=offset_deltas,
        now=now,
    )


def _decode_section(
    data: bytes | memoryview, h: BatchHeader, min_offset: int, limit: int = -1
) -> list[Record]:
    """Parse ``h.record_count`` records filling ``data`` exactly (compiled or pure).

    ``limit`` (when not -1) stops decoding once that many records are built.
    """
    if _C is not None:
        return _C.decode_section(  # type: ignore[no-any-return]
            data,
            h.base_offset,
            h.base_timestamp,
            h.max_timestamp if h.attributes & TIMESTAMP_TYPE_BIT else None,
            max(-1, min(min_offset - h.base_offset, 1 << 62)),  # keep it an int64
            h.record_count,
            h.last_offset_delta,
            limit,
        )
    return _py_decode_section(bytes(data), h, min_offset, limit)  # bytes(bytes) is no copy


def _py_decode_section_flat(
    data: bytes | memoryview,
    base_offset: int,
    base_timestamp: int,
    fixed_timestamp: int | None,
    skip_below: int,
    record_count: int,
    last_offset_delta: int,
    limit: int = -1,
) -> list[Record]:
    """``_py_decode_section`` with the compiled ``decode_section``'s arguments (its twin)."""
    attributes = 0 if fixed_timestamp is None else TIMESTAMP_TYPE_BIT
    max_ts = 0 if fixed_timestamp is None else fixed_timestamp
    h = BatchHeader(
        base_offset, 0, 0, 2, 0, attributes, last_offset_delta, base_timestamp, max_ts,
        -1, -1, -1, record_count,
    )  # fmt: skip
    return _py_decode_section(bytes(data), h, base_offset + skip_below, limit)


def _py_check_messages(items: list[Any], require_keys: bool, message_type: type) -> bool:
    """Whether ``encode_section`` can take ``items`` as they are (the compiled twin's rule).

    Bytes values (only when keys are not required) and ``message_type``
    items with bytes (or ``None``) value and key, no headers and a timestamp
    that is ``None`` or an int in ``0..2**62``.
    """
    for m in items:
        if type(m) is bytes:
            if require_keys:
                return False
            continue
        fields: Any = m  # a tuple subclass when the type matches
        if type(m) is not message_type or len(fields) != 4:
            return False
        value, key, extra, ts = fields
        if value is not None and type(value) is not bytes:
            return False
        if require_keys if key is None else type(key) is not bytes:
            return False
        if type(extra) is not tuple or extra:
            return False
        if ts is not None and (type(ts) is not int or not 0 <= ts <= 1 << 62):
            return False
    return True


def accepts_as_is(items: list[Any], *, require_keys: bool) -> bool:
    """Whether the compiled encoder can take ``append_many``'s items without conversion.

    True only with the compiled codec, for a list of bytes values and plain
    ``Message``s with bytes fields, no headers and valid timestamps; anything
    else goes through the full validation in Python.
    """
    return _C is not None and bool(_C.check_messages(items, require_keys, Message))


def _py_encode_section(
    entries: Sequence[Entry],
    base_timestamp: int,
    start: int = 0,
    stop: int | None = None,
    limit_bytes: int | None = None,
    offset_deltas: Sequence[int] | None = None,
    now: int = NO_TIMESTAMP,
) -> tuple[bytes, int, int]:
    """Encode ``entries[start:stop]`` as an uncompressed records section.

    Stops early, after at least one record, once the section would exceed
    ``limit_bytes``. Offset deltas are 0, 1, 2, ... unless ``offset_deltas``
    gives them. Returns ``(section, index after the last encoded entry,
    largest timestamp)``. The append hot path: one pass per record, table
    lookups for small varints, one ``join`` at the end.
    """
    table = VARINT_TABLE
    lengths = _VARINT_LEN
    same_ts = _PREFIX_SAME_TS
    lim = TABLE_LIMIT
    zz = _zigzag
    out: list[bytes] = []
    extend = out.extend
    limit = (1 << 62) if limit_bytes is None else limit_bytes
    total = 0
    max_ts = NO_TIMESTAMP - 1
    delta = 0
    count = 0
    for value, key, headers, ts in islice(entries, start, stop):
        if ts is None:
            ts = now
        if offset_deltas is not None:
            delta = offset_deltas[count]
        if ts == base_timestamp and delta < lim:
            prefix = same_ts[delta]
        else:
            td = ts - base_timestamp
            prefix = (
                b"\x00"
                + (table[td + 1] if -1 <= td < lim else zz(td))
                + (table[delta + 1] if delta < lim else zz(delta))
            )
        if key is None:
            kb = b"\x01"
            key = b""
            size = len(prefix) + 1
        else:
            n = len(key)
            if n < lim:
                kb = table[n + 1]
                size = len(prefix) + lengths[n + 1] + n
            else:
                kb = zz(n)
                size = len(prefix) + len(kb) + n
        if value is None:
            vb = b"\x01"
            value = b""
            size += 1
        else:
            n = len(value)
            if n < lim:
                vb = table[n + 1]
                size += lengths[n + 1] + n
            else:
                vb = zz(n)
                size += len(vb) + n
        if headers:
            hb = _encode_headers(headers)
            size += len(hb)
        else:
            hb = b"\x00"
            size += 1
        total += size + 3
        if total > limit and count:
            break
        if ts > max_ts:  # only records that made it into the section count
            max_ts = ts
        extend((table[size + 1] if size < lim else zz(size), prefix, kb, key, vb, value, hb))
        count += 1
        delta += 1
    return b"".join(out), start + count, max_ts


def encode_records(
    entries: Sequence[Entry], base_timestamp: int, offset_deltas: Sequence[int] | None = None
) -> bytes:
    """Encode a whole records section; offset deltas default to 0, 1, 2, ..."""
    return encode_section(entries, base_timestamp, offset_deltas=offset_deltas)[0]


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
    # One copy of the body, straight into the finished batch.
    return b"".join((header[: _CRC_FROM - 4], _CRC.pack(crc), header[_CRC_FROM:], body))


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
