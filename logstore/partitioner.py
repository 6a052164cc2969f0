"""Kafka's default partitioner for keyed records: murmur2, as ``Utils.murmur2`` computes it.

``partition = (murmur2(key) & 0x7FFFFFFF) % partitions`` (FORMAT.md section 13).
Parenthesised on purpose: ``%`` binds tighter than ``&``. All arithmetic is
32-bit unsigned, reading 4-byte groups little-endian, exactly as Java does, so
a key (a hostname, say) lands in the partition Apache Kafka would choose.
"""

from __future__ import annotations

from typing import Any

from ._native import speedups

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as a signed 32-bit int (what Java returns)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_C = speedups


def route_many(
    items: list[Any], partitions: int, round_robin_start: int
) -> tuple[list[int], list[list[Any]], int] | None:
    """Partition of every item (bytes values round-robin, ``Message``s and pairs by key), in C.

    Returns ``(routes, items per partition, next round-robin position)``, or
    ``None`` when the compiled codec is not active or an item is of another
    kind: then the caller routes item by item with ``partition_for``.
    """
    if _C is None:
        return None
    return _C.route(items, partitions, round_robin_start)  # type: ignore[no-any-return]


def number(routes: list[int], starts: list[int]) -> list[tuple[int, int]] | None:
    """``(partition, offset)`` per routed item, counting from each partition's first offset."""
    if _C is None:
        return None
    return _C.number(routes, starts)  # type: ignore[no-any-return]


def _py_route(
    items: list[Any], partitions: int, round_robin_start: int
) -> tuple[list[int], list[list[Any]], int] | None:
    """The compiled ``route``'s twin: Kafka's partitioner over bytes values and keyed items."""
    if partitions < 1:
        raise ValueError("partitions must be positive")
    routes: list[int] = []
    groups: list[list[Any]] = [[] for _ in range(partitions)]
    for m in items:
        key = None
        if type(m) is not bytes:
            if type(m) is tuple and len(m) == 2:  # a (value, key) pair
                if m[0] is not None and type(m[0]) is not bytes:
                    return None
            elif not isinstance(m, tuple) or len(m) != 4:
                return None
            key = m[1]
        if key is None:
            p = round_robin_start % partitions
            round_robin_start += 1
        elif type(key) is bytes:
            p = partition_for(key, partitions)
        else:
            return None
        routes.append(p)
        groups[p].append(m)
    return routes, groups, round_robin_start


def _py_number(routes: list[int], starts: list[int]) -> list[tuple[int, int]]:
    """The compiled ``number``'s twin: item i gets the next offset of its partition."""
    if any(type(s) is not int for s in starts):
        raise TypeError("starts must be ints")
    following = list(starts)
    out: list[tuple[int, int]] = []
    for p in routes:
        if type(p) is not int or not 0 <= p < len(following):
            raise IndexError("route outside the partitions")
        out.append((p, following[p]))
        following[p] += 1
    return out
