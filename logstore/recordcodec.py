"""The records section of a v2 batch: records in, bytes out, and back.

The second layer of the codec (docs/FORMAT.md section 4): the varint-framed
records inside a batch, after decompression and before compression. Each
function with a compiled twin in ``logstore._speedups`` keeps its pure-Python
form here, named ``_py_*`` and listed in ``_native.PAIRS``; the dispatching
functions choose once per call. Knows nothing of batch headers beyond the
fields a section needs, nor of files.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from typing import Any

from ._native import speedups
from ._varint import (
    MAX_VARINT_BYTES,
    MAX_VARLONG_BYTES,
    TABLE_LIMIT,
    VARINT_TABLE,
    _zigzag,
    decode_varint,
)
from .batchheader import NO_TIMESTAMP, TIMESTAMP_TYPE_BIT, BatchHeader
from .errors import CorruptLogError, ErrorKind
from .model import Header, Message, PyRecord, Record

_C = speedups
# The NamedTuple's own __new__ is Python code: tuple.__new__ is a C call. The compiled
# Record refuses tuple.__new__ (its __new__ is its own): the pure decoder, its twin in
# tests, builds it through _make.
_new_record: Any = tuple.__new__ if Record is PyRecord else (lambda cls, fields: cls._make(fields))
_EMPTY: tuple[Header, ...] = ()


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
        skip_below = max(-1, min(min_offset - h.base_offset, 1 << 62))  # keep it an int64
        records: list[Record] = _c_decode_section(data, h, skip_below, limit, build=True)
        return records
    return _py_decode_section(bytes(data), h, min_offset, limit)  # bytes(bytes) is no copy


def _c_decode_section(
    data: bytes | memoryview, h: BatchHeader, skip_below: int, limit: int, *, build: bool
) -> Any:
    """The compiled ``decode_section`` on ``h``'s fields: records, or (not ``build``) a count."""
    assert _C is not None
    return _C.decode_section(
        data,
        h.base_offset,
        h.base_timestamp,
        h.max_timestamp if h.attributes & TIMESTAMP_TYPE_BIT else None,
        skip_below,
        h.record_count,
        h.last_offset_delta,
        limit,
        build,
    )


def check_section(data: bytes | memoryview, h: BatchHeader) -> int:
    """Check every record of a section as ``_decode_section`` would; how many have no key.

    The compiled codec builds no records for it (an append of encoded batches
    only needs to know they are valid); the pure one decodes them.
    """
    if _C is not None:
        keyless: int = _c_decode_section(data, h, -1, -1, build=False)
        return keyless
    return sum(r.key is None for r in _py_decode_section(bytes(data), h, 0))


def _py_decode_section_flat(
    data: bytes | memoryview,
    base_offset: int,
    base_timestamp: int,
    fixed_timestamp: int | None,
    skip_below: int,
    record_count: int,
    last_offset_delta: int,
    limit: int = -1,
    build: bool = True,
) -> list[Record] | int:
    """``_py_decode_section`` with the compiled ``decode_section``'s arguments (its twin).

    ``build`` false: the records are checked alike and the answer is how many have no key.
    """
    attributes = 0 if fixed_timestamp is None else TIMESTAMP_TYPE_BIT
    max_ts = 0 if fixed_timestamp is None else fixed_timestamp
    h = BatchHeader(
        base_offset, 0, 0, 2, 0, attributes, last_offset_delta, base_timestamp, max_ts,
        -1, -1, -1, record_count,
    )  # fmt: skip
    records = _py_decode_section(bytes(data), h, base_offset + skip_below, limit)
    return records if build else sum(r.key is None for r in records)


def _py_check_messages(items: list[Any], require_keys: bool, message_type: type) -> bool:
    """Whether ``encode_section`` can take ``items`` as they are (the compiled twin's rule).

    Bytes values (only when keys are not required), plain ``(value, key)``
    2-tuples and ``message_type`` items with bytes (or ``None``) value and key,
    no headers and a timestamp that is ``None`` or an int in ``0..2**62``.
    """
    for m in items:
        if type(m) is bytes:
            if require_keys:
                return False
            continue
        if type(m) is tuple and len(m) == 2:
            value, key = m
            if value is not None and type(value) is not bytes:
                return False
            if require_keys if key is None else type(key) is not bytes:
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

    True only with the compiled codec, for a list of bytes values, ``(value,
    key)`` pairs of bytes and plain ``Message``s with bytes fields, no headers
    and valid timestamps (the compiled ``encode_section`` takes all three);
    anything else goes through the full validation in Python, which turns
    pairs into entries.
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
