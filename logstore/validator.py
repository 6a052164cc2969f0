"""Appended input, checked and planned into finished batches (Kafka's ``LogValidator``).

Owns what an append accepts: the types of values, keys, headers and
timestamps, the key a compacted log requires, the size limits, and how
records are grouped into batches under ``max_message_bytes`` and the room
left under ``segment_messages``. Everything is checked and encoded before a
byte is written, so a refused append leaves the log unchanged. Also the type
checks of the other methods' offsets and limits (``check_int``, ``check_limit``).

Knows the codec and the config; not files, segments or the ``Log``'s lock:
the caller passes the offsets and counts it holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import batch
from .batch import BatchHeader, Entry
from .config import LogConfig
from .errors import InvalidRecordError, RecordTooLarge, WrongTypeError
from .model import AppendItem, Header, Message

#: Timestamps above this (about 146 million years) are refused: deltas must fit int64.
MAX_TIMESTAMP = 1 << 62
#: Fixed bytes a batch adds to its records (the 61-byte header).
_BATCH_OVERHEAD = batch.HEADER_SIZE
#: ``(finished batch, record count, max timestamp)``: one planned write.
Planned = tuple[bytes, int, int]


def check_int(name: str, value: object) -> None:
    """Refuse an offset or timestamp that is not an ``int`` (``bool`` included)."""
    if type(value) is not int:
        raise WrongTypeError(f"{name} must be an int, not {type(value).__name__}")


def check_limit(name: str, value: object, *, optional: bool = True) -> None:
    """Refuse a count or size limit that is not an ``int`` >= 0 (or, if ``optional``, ``None``)."""
    if (value is not None or not optional) and (type(value) is not int or value < 0):
        raise WrongTypeError(
            f"{name} must be a non-negative int{' or None' if optional else ''}, got {value!r}"
        )


def as_bytes(value: object, what: str) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise WrongTypeError(f"{what} must be bytes-like or None, not {type(value).__name__}")


def check_headers(headers: object) -> tuple[Header, ...]:
    if not isinstance(headers, (tuple, list)):
        raise WrongTypeError(
            f"headers must be a sequence of (str, bytes | None), not {type(headers).__name__}"
        )
    out = []
    for item in headers:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise WrongTypeError(f"each header must be a (str, bytes | None) pair, got {item!r}")
        out.append((item[0], as_bytes(item[1], "header value")))
    return tuple(out)


def check_timestamp(ts: object) -> int:
    if type(ts) is not int:
        raise WrongTypeError(
            f"timestamp must be an int (ms since the epoch), not {type(ts).__name__}"
        )
    if ts < -1:
        raise InvalidRecordError(
            f"timestamp {ts} is negative (only -1, 'no timestamp', is allowed)"
        )
    if ts > MAX_TIMESTAMP:
        raise InvalidRecordError(f"timestamp {ts} is beyond {MAX_TIMESTAMP} ms")
    return ts


def prepare(messages: Iterable[AppendItem], *, compacted: bool) -> list[Entry]:
    """Validate input (outside the lock); entries are ``(value, key, headers, ts)``.

    A ``Message`` whose fields are already right is kept as it is (no copy):
    this loop runs once per record on the append path. A ``(value, key)``
    pair (a plain 2-tuple) is a record without headers or timestamp: the
    compiled encoder takes it as it is, here it becomes an entry.
    """
    if isinstance(messages, (bytes, bytearray, memoryview, str)):
        raise WrongTypeError("append_many takes an iterable of messages, not a single bytes value")
    if type(messages) is list:
        items = messages.copy()  # a caller's later changes to its list cannot reach us
        if batch.accepts_as_is(items, require_keys=compacted):
            return items  # the compiled encoder takes bytes values and Messages as they are
    entries: list[Entry] = []
    append = entries.append
    message = Message
    m: Any  # a Message, bytes, a pair, or anything a caller passed
    for m in messages:
        t = type(m)
        if t is bytes:
            if compacted:
                raise InvalidRecordError("a compacted log cannot accept a record without a key")
            append((m, None, (), None))
            continue
        if t is message:
            value, key, headers, ts = m
            if (
                (type(value) is bytes or value is None)
                and type(key) is bytes
                and not headers
                and (ts is None or (type(ts) is int and ts >= 0))
            ):
                append(m)
                continue
        elif t is tuple:
            if len(m) == 2:
                value, key = m
                if type(key) is bytes and (type(value) is bytes or value is None):
                    append((value, key, (), None))
                    continue
            append(_pair(m, len(entries), compacted))  # the other cases, and the errors
            continue
        elif isinstance(m, Message):
            value, key, headers, ts = m
        elif isinstance(m, (bytearray, memoryview)):
            value, key, headers, ts = bytes(m), None, (), None
        else:
            raise WrongTypeError(
                f"append_many items must be bytes, Message or (value, key) pairs, not {t.__name__}"
            )
        if type(value) is not bytes and value is not None:
            value = as_bytes(value, "value")
        if type(key) is not bytes and key is not None:
            key = as_bytes(key, "key")
        if key is None and compacted:
            raise InvalidRecordError("a compacted log cannot accept a record without a key")
        if headers or type(headers) not in (tuple, list):
            headers = check_headers(headers)
        if ts is not None and (type(ts) is not int or ts < 0 or ts > MAX_TIMESTAMP):
            ts = check_timestamp(ts)
        append((value, key, headers, ts))
    return entries


def _pair(item: tuple[object, ...], index: int, compacted: bool) -> Entry:
    """The entry of ``append_many``'s item ``index``, a ``(value, key)`` pair."""
    if len(item) != 2:
        raise WrongTypeError(
            f"append_many item {index}: a tuple must be a (value, key) pair, not {len(item)} items"
        )
    value, key = item
    if value is not None and type(value) is not bytes:
        if not isinstance(value, (bytearray, memoryview)):
            raise WrongTypeError(
                f"append_many item {index}: value must be bytes-like or None, "
                f"not {type(value).__name__}"
            )
        value = bytes(value)
    if key is None:
        if compacted:
            raise InvalidRecordError(
                f"append_many item {index}: a compacted log cannot accept a record without a key"
            )
    elif type(key) is not bytes:
        if not isinstance(key, (bytearray, memoryview)):
            raise WrongTypeError(
                f"append_many item {index}: key must be bytes-like or None, "
                f"not {type(key).__name__}"
            )
        key = bytes(key)
    return (value, key, (), None)


def plan(
    entries: list[Entry],
    *,
    config: LogConfig,
    codec: int,
    now: int,
    start: int,
    base_offset: int,
    active_records: int,
) -> list[Planned]:
    """Encode ``entries[start:]`` into finished batches: ``(bytes, record count, max timestamp)``.

    ``base_offset`` is the offset the first goes to, ``active_records`` the
    records already in the active segment. A batch holds as many records as fit
    ``max_message_bytes`` (and the room left under ``segment_messages``).

    Raises:
        RecordTooLarge: a single record's batch exceeds ``max_message_bytes``
            (or ``segment_bytes``).
    """
    allowed = min(config.max_message_bytes, config.segment_bytes)
    limit = allowed - _BATCH_OVERHEAD
    per_segment = config.segment_messages
    used = active_records if per_segment is not None else 0
    out = []
    i, n = start, len(entries)
    while i < n:
        stop = n
        if per_segment is not None:
            stop = i + min(n - i, per_segment - used if used < per_segment else per_segment)
        first: Any = entries[i]
        # a bare bytes item or a pair (taken as is by the compiled encoder) has no timestamp
        base_ts = now if type(first) is bytes or len(first) == 2 or first[3] is None else first[3]
        while True:
            section, j, max_ts = batch.encode_section(
                entries, base_ts, start=i, stop=stop, limit_bytes=limit, now=now
            )
            data = batch.build_batch(
                section,
                base_offset=base_offset,
                record_count=j - i,
                last_offset_delta=j - i - 1,
                base_timestamp=base_ts,
                max_timestamp=max_ts,
                attributes=codec,
                compression_level=config.compression_level,
            )
            if len(data) <= allowed:
                break
            if j - i == 1:
                raise RecordTooLarge(
                    f"a record's batch is {len(data)} bytes, over "
                    + (
                        f"max_message_bytes {config.max_message_bytes}"
                        if len(data) > config.max_message_bytes
                        else f"segment_bytes {config.segment_bytes}"
                    )
                )
            stop = i + (j - i) // 2  # compression made it larger than estimated
        out.append((data, j - i, max_ts))
        used = used + (j - i) if used < (per_segment or 0) else j - i
        base_offset += j - i
        i = j
    return out


def check_batches(data: bytearray, config: LogConfig) -> list[tuple[int, BatchHeader]]:
    """Validate already-encoded batches in ``data``; return each one's position and header.

    Each batch's base offset is set to 0 first (the log assigns the offsets:
    whatever the sender put there, every record is checked counting from 0).

    Raises:
        CorruptLogError: a batch is invalid (position relative to ``data``).
        RecordTooLarge: a batch exceeds ``max_message_bytes``.
        InvalidRecordError: a record without a key in a compacted log.
    """
    headers = []
    pos = 0
    while pos < len(data):
        if len(data) - pos >= 8:
            batch.set_base_offset(data, pos, 0)
        header = batch.read_header(data, pos)
        keyless = batch.check_records(data, pos, header)  # validates every record, builds none
        if header.size > config.max_message_bytes:
            raise RecordTooLarge(
                f"batch at byte {pos} is {header.size} bytes, over max_message_bytes "
                f"{config.max_message_bytes}"
            )
        if config.compacted and keyless:
            raise InvalidRecordError("a compacted log cannot accept a record without a key")
        headers.append((pos, header))
        pos += header.size
    return headers
