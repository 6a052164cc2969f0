"""The records of the internal ``__consumer_offsets`` topic, in Kafka's own schemas.

One record per (group, topic, partition) commit, encoded as Kafka's group
coordinator encodes it, so Kafka's tools (``DumpLogSegments --offsets-decoder``)
and brokers read it. A ``None`` value (tombstone) forgets the entry. The topic
is compacted, so it holds about one record per entry however often groups
commit: the key bytes of an entry never vary. Big-endian throughout; STRING is
an int16 length and UTF-8 bytes, COMPACT_STRING an unsigned varint length + 1::

    key   record_type int16 = 1 | group STRING | topic STRING | partition int32
          (OffsetCommitKey; type 0, Kafka's legacy key, has the same fields)
    value version int16 = 3 | offset int64 | leader_epoch int32 = -1
          | metadata STRING | commit_timestamp int64     (24 bytes + the metadata's)

Written: value version 3, the highest non-flexible one, which Kafka 2.1 to
4.0 write and every Kafka since 2.1 reads (Kafka 4.1+ writes version 4 to
carry a topic id, which logstore has not). Read as well: versions 0-2 (no
leader epoch; version 1 adds expire_timestamp int64) and the flexible version
4 (metadata a COMPACT_STRING, then a tagged-field section: unsigned varint
count, each field an unsigned varint tag and size and its bytes; tag 0 is the
topic id, a uuid). Bytes after the fields are ignored, as Kafka ignores them.
Every version's metadata is read back: the string a committer attached to its
offset (Kafka's ``OffsetAndMetadata``), at most ``MAX_METADATA_BYTES`` of
UTF-8 when logstore writes it.
Other record types (group metadata, type 2; the consumer, share and streams
group records) and unknown value versions are not commits and are skipped.

Roots written before this format hold JSON records: key
``["<group>","<topic>",<partition>]``, value ``{"offset": N, "commit_ms": T}``.
They are read too (with metadata ""), and ``rewrites`` turns them into Kafka's records.

Every key is its own compaction key, so a replay keeps the latest record of
each key (``replay``) and an entry takes its most recent live key's commit:
the same answer before and after compaction. Owns the bytes only; knows
nothing of logs.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import NamedTuple

OFFSETS_TOPIC = "__consumer_offsets"

GroupPartition = tuple[str, str, int]  # (group, topic, partition)

#: Record types of Kafka's group coordinator (the key's int16 prefix) that are offset commits.
LEGACY_OFFSET_COMMIT, OFFSET_COMMIT = 0, 1
#: The value version written: the highest non-flexible one.
VALUE_VERSION = 3
NO_LEADER_EPOCH = -1
#: A Kafka STRING's int16 length bounds it.
MAX_STRING_BYTES = 0x7FFF
#: The longest commit metadata written: Kafka's default ``offset.metadata.max.bytes``.
MAX_METADATA_BYTES = 4096
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_OFFSET_EPOCH = struct.Struct(">qi")  # versions 3 and 4, after the version
_VALUE_V3_HEAD = struct.Struct(">hqi")  # version, offset, leader epoch; then metadata, timestamp


class Commit(NamedTuple):
    """A committed position: the next offset to consume, when, and the committer's metadata."""

    offset: int
    commit_ms: int
    metadata: str = ""


class LiveKey(NamedTuple):
    """The latest record of one key: its place in the replay, the entry it names, its commit."""

    seq: int
    entry: GroupPartition
    commit: Commit


def fits(name: str) -> bool:
    """Whether ``name`` can be a Kafka STRING: UTF-8 encodable, at most 32767 bytes."""
    try:
        return len(name.encode()) <= MAX_STRING_BYTES
    except UnicodeEncodeError:  # a lone surrogate
        return False


def _string(s: str) -> bytes:
    data = s.encode()
    if len(data) > MAX_STRING_BYTES:
        raise ValueError(f"{len(data)} UTF-8 bytes do not fit a Kafka STRING (at most 32767)")
    return _INT16.pack(len(data)) + data


def encode_key(group: str, topic: str, partition: int) -> bytes:
    """The OffsetCommitKey of an entry: the same bytes every time, for compaction."""
    return _INT16.pack(OFFSET_COMMIT) + _string(group) + _string(topic) + _INT32.pack(partition)


def metadata_error(metadata: object) -> str | None:
    """Why ``metadata`` cannot be a commit's metadata (not a str, too long); ``None`` if it can."""
    if not isinstance(metadata, str):
        return f"must be a str, not {type(metadata).__name__}"
    try:
        size = len(metadata.encode())
    except UnicodeEncodeError:
        return "is not encodable as UTF-8 (a lone surrogate)"
    if size > MAX_METADATA_BYTES:
        return (
            f"is {size} bytes of UTF-8: at most {MAX_METADATA_BYTES} "
            "(Kafka's default offset.metadata.max.bytes)"
        )
    return None


def encode_value(offset: int, commit_ms: int, metadata: str = "") -> bytes:
    """An OffsetCommitValue version 3: no leader epoch; ``metadata`` as given (checked first)."""
    return (
        _VALUE_V3_HEAD.pack(VALUE_VERSION, offset, NO_LEADER_EPOCH)
        + _string(metadata)
        + _INT64.pack(commit_ms)
    )


class _Malformed(Exception):
    """Bytes that do not hold what their version says (a short read, a bad length)."""


class _Reader:
    """Kafka's primitive types read from the front of a buffer."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def fixed(self, layout: struct.Struct) -> tuple[int, ...]:
        if self.pos + layout.size > len(self.data):
            raise _Malformed
        out = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return out

    def unsigned_varint(self) -> int:
        """Kafka's unsigned varint: at most 5 bytes, no zigzag."""
        value = 0
        for shift in range(0, 35, 7):
            if self.pos >= len(self.data):
                raise _Malformed
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
        raise _Malformed

    def skip(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise _Malformed
        self.pos += size

    def text(self, size: int) -> str:
        if size < 0 or self.pos + size > len(self.data):
            raise _Malformed  # a null where Kafka's schema has a non-nullable string
        start = self.pos
        self.pos += size
        try:
            return self.data[start : self.pos].decode()
        except UnicodeDecodeError:
            raise _Malformed from None

    def string(self) -> str:
        return self.text(self.fixed(_INT16)[0])

    def compact_string(self) -> str:
        return self.text(self.unsigned_varint() - 1)


def _decode_kafka_key(key: bytes) -> GroupPartition | None:
    reader = _Reader(key)
    (record_type,) = reader.fixed(_INT16)
    if record_type not in (LEGACY_OFFSET_COMMIT, OFFSET_COMMIT):
        return None
    group, topic = reader.string(), reader.string()
    (partition,) = reader.fixed(_INT32)
    return group, topic, partition  # bytes after it are ignored, as Kafka's reader ignores them


def _decode_kafka_value(value: bytes) -> Commit | None:
    reader = _Reader(value)
    (version,) = reader.fixed(_INT16)
    if version in (0, 1, 2):
        (offset,) = reader.fixed(_INT64)
        metadata = reader.string()
        (commit_ms,) = reader.fixed(_INT64)
        return Commit(offset, commit_ms, metadata)  # version 1's expire timestamp is left unread
    if version in (3, 4):
        offset, _leader_epoch = reader.fixed(_OFFSET_EPOCH)
        if version == 3:
            metadata = reader.string()
            (commit_ms,) = reader.fixed(_INT64)
            return Commit(offset, commit_ms, metadata)
        metadata = reader.compact_string()
        (commit_ms,) = reader.fixed(_INT64)
        for _ in range(reader.unsigned_varint()):  # tagged fields (tag 0: topic id), unused
            reader.unsigned_varint()
            reader.skip(reader.unsigned_varint())
        return Commit(offset, commit_ms, metadata)
    return None


def _decode_json_key(key: bytes) -> GroupPartition | None:
    try:
        group, topic, partition = json.loads(key)
    except (ValueError, TypeError):
        return None
    if not (isinstance(group, str) and isinstance(topic, str) and type(partition) is int):
        return None
    return group, topic, partition


def _decode_json_value(value: bytes) -> Commit | None:
    try:
        fields = json.loads(value)
        offset, commit_ms = fields["offset"], fields.get("commit_ms", -1)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not all(type(n) is int and _INT64_MIN <= n <= _INT64_MAX for n in (offset, commit_ms)):
        return None
    return Commit(offset, commit_ms)


def decode_key(key: bytes | None) -> GroupPartition | None:
    """The entry an offset-commit key names (Kafka's or the earlier JSON); ``None`` for others."""
    if key is None:
        return None
    if key.startswith(b"["):  # 0x5b: as an int16 prefix, no record type Kafka has
        return _decode_json_key(key)
    try:
        return _decode_kafka_key(key)
    except _Malformed:
        return None


def decode_value(key: bytes, value: bytes) -> Commit | None:
    """The commit in the value of an offset-commit ``key``; ``None`` if unreadable."""
    if key.startswith(b"["):
        return _decode_json_value(value)
    try:
        return _decode_kafka_value(value)
    except _Malformed:
        return None


def replay(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[bytes, LiveKey]:
    """Replay ``(key, value)`` pairs in offset order: each offset-commit key's live commit.

    A tombstone ends its key, and so does a value that cannot be read: compaction
    would keep only that latest record, so the key counts for nothing either way.
    """
    live: dict[bytes, LiveKey] = {}
    for seq, (key, value) in enumerate(records):
        entry = decode_key(key)
        if entry is None:
            continue
        assert key is not None
        commit = None if value is None else decode_value(key, value)
        if commit is None:
            live.pop(key, None)
        else:
            live[key] = LiveKey(seq, entry, commit)
    return live


def committed(live: dict[bytes, LiveKey]) -> dict[GroupPartition, Commit]:
    """Each entry's commit: that of its most recently written live key."""
    return {k.entry: k.commit for k in sorted(live.values())}


def latest(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[GroupPartition, int]:
    """Replay ``(key, value)`` pairs in offset order: the committed offset of each entry."""
    return {entry: c.offset for entry, c in committed(replay(records)).items()}


def rewrites(
    live: dict[bytes, LiveKey],
) -> tuple[list[tuple[bytes, bytes | None]], list[GroupPartition]]:
    """The records that leave only Kafka's keys live, and the entries Kafka's keys cannot hold.

    Each live key in another form (JSON, Kafka's legacy type 0) gets a tombstone,
    and an entry whose latest commit sits under one is written again under its
    Kafka key, with its offset, commit time and metadata. An entry whose group or topic is
    not a Kafka STRING (over 32767 bytes, or not UTF-8 encodable), or whose
    partition is not an int32, cannot be written; it is returned and forgotten.
    """
    latest_key: dict[GroupPartition, bytes] = {}
    for key, k in sorted(live.items(), key=lambda item: item[1].seq):
        latest_key[k.entry] = key
    out: list[tuple[bytes, bytes | None]] = []
    dropped: list[GroupPartition] = []
    for entry, key in latest_key.items():
        kafka_key = _kafka_key(entry)
        if kafka_key is None:
            dropped.append(entry)
        elif key != kafka_key:
            commit = live[key].commit
            out.append((kafka_key, encode_value(*commit)))
    out += [(key, None) for key, k in live.items() if key != _kafka_key(k.entry)]
    return out, dropped


def _kafka_key(entry: GroupPartition) -> bytes | None:
    group, topic, partition = entry
    if fits(group) and fits(topic) and _INT32_MIN <= partition <= _INT32_MAX:
        return encode_key(group, topic, partition)
    return None
