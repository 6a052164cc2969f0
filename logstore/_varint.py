"""Zigzag varints (Kafka's Varint/Varlong, protobuf's sint32/sint64).

Encoding of small numbers goes through a precomputed table: record lengths,
offset deltas and timestamp deltas are small and recur in every record.
"""

from __future__ import annotations

from .errors import CorruptLogError, ErrorKind


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Deltas and lengths are small and recur in every record: encode them once.
TABLE_LIMIT = 1 << 14
VARINT_TABLE: tuple[bytes, ...] = tuple(_zigzag(n) for n in range(-1, TABLE_LIMIT))  # [n + 1]

MAX_VARINT_BYTES, MAX_VARLONG_BYTES = 5, 10
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def encode_varint(n: int) -> bytes:
    """Zigzag-encode ``n`` (any int64)."""
    return VARINT_TABLE[n + 1] if -1 <= n < TABLE_LIMIT else _zigzag(n)


def decode_varint(
    buf: bytes | memoryview, pos: int, limit: int = MAX_VARLONG_BYTES
) -> tuple[int, int]:
    """Decode the varint at ``buf[pos]``; return ``(value, next position)``.

    ``limit`` is 5 for a Varint, 10 for a Varlong. Raises ``CorruptLogError``
    (position relative to ``buf``) when the varint is too long or runs off the end.
    """
    end = len(buf)
    if pos >= end:
        raise CorruptLogError(
            "varint runs past the end of the data", position=pos, kind=ErrorKind.INVALID_RECORDS
        )
    b = buf[pos]
    if b < 0x80:  # one byte: the usual case, no loop
        return (b >> 1) ^ -(b & 1), pos + 1
    start = pos
    z, shift = b & 0x7F, 7
    while True:
        pos += 1
        if pos >= end:
            raise CorruptLogError(
                "varint runs past the end of the data",
                position=start,
                kind=ErrorKind.INVALID_RECORDS,
            )
        if pos - start >= limit:
            raise CorruptLogError(
                f"varint longer than {limit} bytes", position=start, kind=ErrorKind.INVALID_RECORDS
            )
        b = buf[pos]
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos + 1
        shift += 7
