"""Kafka's transactions as its ``read_committed`` consumer sees them: which batches are aborted.

logstore never writes transactions, but a partition directory Kafka wrote
may hold them: data batches with the transactional bit (attributes bit 4)
from a producer id, and, after them, one control batch (bit 5) from the same
producer id whose record's key says ABORT (type 0) or COMMIT (type 1). A
transactional batch belongs to the transaction its producer's *next* end
marker closes, so its fate is that marker's type:

- COMMIT: delivered;
- ABORT: not delivered under ``read_committed`` (Kafka's consumer drops
  it, from the aborted-transaction list its fetch response carries);
- no marker yet (an open transaction, or one whose marker a crash lost):
  not delivered either, as Kafka's ``read_committed`` consumer never sees
  records above the last stable offset. logstore does not hold back the
  records after them as Kafka's last stable offset does: nothing in
  logstore would ever end such a transaction.

Non-transactional batches (plain and idempotent producers) are always
delivered; control batches never are (``reader`` skips them).

The markers are derived from the control batches themselves, not from
Kafka's ``.txnindex`` files: that works for any directory (a ``.txnindex``
may be missing, or be older than a recovery), and needs no look back to an
aborted transaction's first offset, which may lie in an earlier segment:
the verdict on a batch is found by looking *forward*, usually a few batches.
Each segment's markers are found once, by a header-only walk, and cached per
``Segment`` object (compaction and retention swap in new objects; a
truncation, which cuts a segment in place, calls ``Markers.forget``).

Knows segments and the codec; not the ``Log``, its lock or its snapshot bounds.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Sequence
from typing import Literal

from . import batch
from .batch import BatchHeader
from .errors import CorruptLogError, ErrorKind, WrongTypeError
from .segment import Segment

#: How a read treats transactional data (Kafka's consumer ``isolation.level``).
Isolation = Literal["read_committed", "read_uncommitted"]
ISOLATIONS: tuple[Isolation, ...] = ("read_committed", "read_uncommitted")

#: Control record types (``ControlRecordType``): the end-transaction markers.
ABORT, COMMIT = 0, 1
#: What became of a transactional batch's transaction.
Fate = Literal["committed", "aborted", "open"]
COMMITTED: Fate = "committed"
ABORTED: Fate = "aborted"
OPEN: Fate = "open"

#: ``(segment, end position, offset its batches stay below)``, as ``reader.Snapshot``.
_SnapshotItem = tuple[Segment, int, int]


def whole(segments: Sequence[Segment]) -> list[_SnapshotItem]:
    """A snapshot of ``segments`` as they are now (what the cleaner decides over)."""
    return [(s, s.size, s.next_offset) for s in segments]


def check_isolation(isolation: object) -> None:
    """Refuse an ``isolation`` other than ``"read_committed"`` and ``"read_uncommitted"``."""
    if type(isolation) is not str:
        raise WrongTypeError(f"isolation must be a str, not {type(isolation).__name__}")
    if isolation not in ISOLATIONS:
        raise ValueError(
            f"isolation must be 'read_committed' or 'read_uncommitted', not {isolation!r}"
        )


def control_type(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> int:
    """The control record type of the control batch at ``buf[pos]`` (its key's int16 at 2).

    Raises:
        CorruptLogError: the batch holds no record, or its key is not a control key.
    """
    records = batch.decode_records(buf, pos, header)
    key = records[0].key if records else None
    if key is None or len(key) < 4:
        raise CorruptLogError(
            f"control batch at offset {header.base_offset} has no control record key",
            position=pos,
            kind=ErrorKind.INVALID_RECORDS,
        )
    return int.from_bytes(key[2:4], "big", signed=True)


class _SegmentMarkers:
    """One segment's end markers up to ``scanned`` bytes: per producer id, offsets and aborts."""

    __slots__ = ("by_producer", "scanned")

    def __init__(self) -> None:
        self.scanned = 0
        self.by_producer: dict[int, tuple[list[int], list[bool]]] = {}

    def add(self, producer_id: int, offset: int, aborts: bool) -> None:
        offsets, aborted = self.by_producer.setdefault(producer_id, ([], []))
        offsets.append(offset)
        aborted.append(aborts)

    def first_after(self, producer_id: int, offset: int, bound: int) -> tuple[int, bool] | None:
        """The producer's first marker above ``offset`` and below ``bound``: (offset, aborts)."""
        found = self.by_producer.get(producer_id)
        if found is None:
            return None
        offsets, aborted = found
        i = bisect.bisect_right(offsets, offset)
        if i == len(offsets) or offsets[i] >= bound:
            return None
        return offsets[i], aborted[i]


class Markers:
    """A log's end-transaction markers, found per segment when a read first needs them.

    Thread-safe: reads run outside the log's lock. A walk that raced a
    truncation (``forget`` meanwhile) is not kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._segments: weakref.WeakKeyDictionary[Segment, _SegmentMarkers] = (
            weakref.WeakKeyDictionary()
        )
        self._generation = 0

    def forget(self) -> None:
        """Drop everything found: a segment was cut or rewritten in place (truncation)."""
        with self._lock:
            self._segments = weakref.WeakKeyDictionary()
            self._generation += 1

    def of(self, seg: Segment, end: int, *, verify_crc: bool) -> _SegmentMarkers:
        """``seg``'s markers in its first ``end`` bytes (walking only what was not walked yet)."""
        with self._lock:
            known, generation = self._segments.get(seg), self._generation
        if known is not None and known.scanned >= end:
            return known
        found = _SegmentMarkers()
        start = 0
        if known is not None:  # bytes below a scanned position never change but by truncation
            found.by_producer = {p: (list(o), list(a)) for p, (o, a) in known.by_producer.items()}
            start = found.scanned = known.scanned
        for position, header in seg.iter_headers(start, end):
            if header.attributes & batch.CONTROL_BIT:
                data = seg.read(position, header.size)
                try:
                    checked = batch.read_header(data, 0, verify_crc=verify_crc)
                    kind = control_type(data, 0, checked)
                except CorruptLogError as exc:
                    raise exc.located(seg.log_path, position) from None
                if kind in (ABORT, COMMIT):
                    found.add(header.producer_id, header.base_offset, kind == ABORT)
        found.scanned = end
        with self._lock:
            if self._generation == generation:
                current = self._segments.get(seg)
                if current is None or current.scanned < end:
                    self._segments[seg] = found
        return found


class Verdicts:
    """Per read (or cleaning round): what became of each transactional batch's transaction.

    Built over the read's snapshot; remembers each producer's marker found
    last, so the batches of one transaction cost one look-ahead together
    (in any order: the cleaner asks again for batches a first pass asked for).
    """

    def __init__(
        self,
        markers: Markers,
        snapshot: Sequence[_SnapshotItem],
        *,
        verify_crc: bool,
    ) -> None:
        self._markers = markers
        self._snapshot = snapshot
        self._where = {id(item[0]): i for i, item in enumerate(snapshot)}
        self._verify_crc = verify_crc
        #: Per producer id: (searched from, its next marker's offset, whether it aborts).
        self._ends: dict[int, tuple[int, int, bool]] = {}

    def delivers(self, seg: Segment, header: BatchHeader) -> bool:
        """False for a transactional batch whose transaction aborted or has not ended."""
        return (
            not header.attributes & batch.TRANSACTIONAL_BIT or self.fate(seg, header) == COMMITTED
        )

    def fate(self, seg: Segment, header: BatchHeader) -> Fate:
        """What became of the transaction of ``header``'s batch (in ``seg``), by its next marker.

        A batch without the transactional bit is ``"committed"``.
        """
        if not header.attributes & batch.TRANSACTIONAL_BIT:
            return COMMITTED
        producer_id, last = header.producer_id, header.last_offset
        known = self._ends.get(producer_id)
        if known is not None and known[0] <= last < known[1]:
            return ABORTED if known[2] else COMMITTED
        end = self._next_marker(seg, producer_id, last)
        if end is None:
            return OPEN  # its records are above Kafka's last stable offset
        # The first marker after ``last`` is the first after every offset in [last, marker).
        self._ends[producer_id] = (last, *end)
        return ABORTED if end[1] else COMMITTED

    def _next_marker(self, seg: Segment, producer_id: int, offset: int) -> tuple[int, bool] | None:
        for item_seg, end, bound in self._snapshot[self._where[id(seg)] :]:
            found = self._markers.of(item_seg, end, verify_crc=self._verify_crc)
            marker = found.first_after(producer_id, offset, bound)
            if marker is not None:
                return marker
        return None
