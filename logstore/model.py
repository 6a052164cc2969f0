"""Plain value types that cross the public API: inputs, outputs and reports.

Immutable and cheap; no behaviour beyond construction. Knows nothing of bytes
on disk.

``Message`` and ``Record`` are the compiled module's types when it is loaded
(``logstore._speedups``, not ``LOGSTORE_PURE``): tuple subclasses with the same
fields, defaults, errors, repr, pickling and helpers as the ``NamedTuple``s
below, which are cheaper to build and to read a field of (a user's loop builds
a ``Message`` per record, and reads the fields of every ``Record``). The
``NamedTuple``s stay as the pure codec's types (``PyMessage``, ``PyRecord``) and
as what type checkers see: both kinds are the same type to a user's code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ._native import speedups

Header = tuple[str, "bytes | None"]


class Message(NamedTuple):
    """A record to append. ``timestamp=None`` means "now" (the log's clock)."""

    value: bytes | None
    key: bytes | None = None
    headers: tuple[Header, ...] | list[Header] = ()
    timestamp: int | None = None


class Record(NamedTuple):
    """A record read back from a log."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


#: The pure-Python twins (``_native.TYPES``); the public names below.
PyMessage = Message
PyRecord = Record
if not TYPE_CHECKING and speedups is not None:
    Message = speedups.Message
    Record = speedups.Record

#: An item ``append_many`` takes: a ``bytes`` value, a ``Message``, or a ``(value, key)`` pair.
AppendItem = bytes | Message | tuple[bytes | None, bytes | None]


class ConsumedRecord(NamedTuple):
    """A record as a consumer sees it: where it came from, and the record."""

    topic: str
    partition: int
    record: Record


class OffsetAndMetadata(NamedTuple):
    """A committed position with the committer's note, as Kafka's ``OffsetAndMetadata``.

    ``offset`` is the next offset to consume; ``metadata`` a string kept with
    it in ``__consumer_offsets`` (at most 4096 bytes of UTF-8), for a
    committer that must know more than the offset when it resumes.
    """

    offset: int
    metadata: str = ""


class AtOffset(NamedTuple):
    """A consumer's start at an explicit offset (NATS Streaming's ``StartAtSequence``).

    A type of its own because a bare int ``start`` is a timestamp in ms. The
    same offset applies to every partition the group has not committed.
    """

    offset: int


@dataclass(frozen=True)
class SegmentInfo:
    """One segment as ``Log.segments`` reports it."""

    base_offset: int
    next_offset: int
    records: int
    size_bytes: int
    first_timestamp: int | None
    max_timestamp: int | None
    path: str


class RetentionRule(str, enum.Enum):
    """Why retention removed a segment; each is its plain string.

    ``start_offset``: the log's start offset passed the whole segment;
    ``bytes``, ``messages``: the log is over ``retention_bytes`` /
    ``retention_messages`` without it; ``age``: its newest record is older
    than ``retention_ms``.
    """

    START_OFFSET = "start_offset"
    BYTES = "bytes"
    MESSAGES = "messages"
    AGE = "age"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


@dataclass(frozen=True)
class RemovedSegment:
    """A segment that retention deleted (or, in a dry run, would delete), and why."""

    base_offset: int
    next_offset: int
    records: int
    size_bytes: int
    max_timestamp: int | None
    rule: RetentionRule


@dataclass(frozen=True)
class RetentionResult:
    """What ``Log.apply_retention`` removed (or would remove with ``dry_run``)."""

    removed: tuple[RemovedSegment, ...] = ()
    kept_by_archive_failure: tuple[int, ...] = ()  # base offsets the archive hook refused
    start_offset: int = 0
    dry_run: bool = False
    errors: tuple[str, ...] = ()  # what the archive hook said when it failed
    rolled: bool = False  # the active segment was (dry run: would be) rolled to be deleted

    @property
    def removed_bytes(self) -> int:
        return sum(s.size_bytes for s in self.removed)

    @property
    def removed_records(self) -> int:
        return sum(s.records for s in self.removed)


@dataclass(frozen=True)
class CompactionResult:
    """What ``Log.compact`` did (or would do with ``dry_run``)."""

    records_before: int = 0
    records_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    tombstones_removed: int = 0
    segments_before: int = 0
    segments_after: int = 0
    dirty_ratio: float = 0.0
    seconds: float = 0.0
    dry_run: bool = False
    details: tuple[dict[str, int], ...] = field(default_factory=tuple)
