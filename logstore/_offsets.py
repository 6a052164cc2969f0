"""The records of the internal ``__consumer_offsets`` topic.

One record per (group, topic, partition): the key is the JSON array
``[group, topic, partition]``, the value ``{"offset": next offset to consume,
"commit_ms": ...}``; a ``None`` value forgets the entry. The topic is
compacted, so it holds about one record per entry however often groups commit.
Shared by the consumer (which writes it) and diagnostics (which reads lag).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

OFFSETS_TOPIC = "__consumer_offsets"

GroupPartition = tuple[str, str, int]  # (group, topic, partition)


def encode_key(group: str, topic: str, partition: int) -> bytes:
    return json.dumps([group, topic, partition], separators=(",", ":")).encode()


def decode_key(key: bytes | None) -> GroupPartition | None:
    """The entry a key names; ``None`` for a key that is not one of ours."""
    if key is None:
        return None
    try:
        group, topic, partition = json.loads(key)
    except (ValueError, TypeError):
        return None
    if not (isinstance(group, str) and isinstance(topic, str) and isinstance(partition, int)):
        return None
    return group, topic, partition


def encode_value(offset: int, commit_ms: int) -> bytes:
    return json.dumps({"offset": offset, "commit_ms": commit_ms}, separators=(",", ":")).encode()


def decode_value(value: bytes | None) -> int | None:
    """The committed offset in a value; ``None`` for a tombstone or a value not ours."""
    if value is None:
        return None
    try:
        offset = json.loads(value)["offset"]
    except (ValueError, TypeError, KeyError):
        return None
    return offset if isinstance(offset, int) else None


def latest(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[GroupPartition, int]:
    """Replay ``(key, value)`` pairs in offset order: the committed offset of each entry."""
    out: dict[GroupPartition, int] = {}
    for key, value in records:
        entry = decode_key(key)
        if entry is None:
            continue
        offset = decode_value(value)
        if offset is None:
            out.pop(entry, None)
        else:
            out[entry] = offset
    return out
