"""The read paths: records, stored batches and timestamp lookups over a snapshot.

A snapshot is what the ``Log`` took under its lock: per segment from the one
holding the wanted offset, ``(segment, end position, offset its batches stay
below)``. Everything here runs outside the lock: bytes below a snapshot's end
never change in place (truncation, retention and compaction swap in new
``Segment`` objects). Every batch served is checked to lie where its file and
neighbours say (``check_follows``), so a damaged base offset raises rather than
serving records at offsets they were not written at.

Under ``read_committed`` (the default) the records of aborted and unended
transactions are not served (``transactions.Verdicts``); control batches never are.

Knows segments and the codec; not the ``Log``, its lock or its bounds checks.
A segment whose index a read found wrong is handed to ``ReadOptions.repair``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import NamedTuple

from . import batch
from .batch import HEADER_SIZE, BatchHeader
from .batchfile import (
    CHUNK_BYTES,
    STORED_BUDGET,
    STORED_OTHER,
    check_follows,
    check_segment_start,
)
from .errors import CodecUnavailableError, CorruptLogError
from .fileranges import FileRanges
from .model import Record
from .segment import Segment
from .transactions import Isolation, Markers, Verdicts

#: ``(segment, end position, offset its batches stay below)`` per segment, oldest first.
Snapshot = list[tuple[Segment, int, int]]
#: Bytes ``read`` asks a segment for at a time.
READ_CHUNK = 64 * 1024


class ReadOptions(NamedTuple):
    """What a read needs from its log besides the snapshot."""

    #: Check each batch's CRC (``config.verify_crc_on_read``).
    verify_crc: bool
    #: The log was never compacted: batches follow each other with no gap.
    contiguous: bool
    #: Called with a segment whose index a read found wrong (the log rebuilds it under its lock).
    repair: Callable[[Segment], None]
    #: The log's end-transaction markers, found as reads need them.
    markers: Markers


def verdicts(snapshot: Snapshot, options: ReadOptions, isolation: Isolation) -> Verdicts | None:
    """What decides on transactional batches for a read at ``isolation`` (``None``: serve all)."""
    if isolation == "read_uncommitted":
        return None
    return Verdicts(options.markers, snapshot, verify_crc=options.verify_crc)


def read(
    snapshot: Snapshot,
    offset: int,
    end_offset: int,
    options: ReadOptions,
    *,
    max_records: int | None,
    max_bytes: int | None,
    isolation: Isolation = "read_committed",
) -> list[Record]:
    """``Log.read`` over ``snapshot``: records from ``offset``, bounded as asked."""
    out: list[Record] = []
    read_bytes = 0
    for batch_header, records in iter_batch_records(
        snapshot,
        offset,
        end_offset,
        options,
        READ_CHUNK,
        max_records,
        verdicts=verdicts(snapshot, options, isolation),
    ):
        if max_bytes is not None and out and read_bytes + batch_header.size > max_bytes:
            break
        read_bytes += batch_header.size
        out.extend(records)  # never past max_records: the batches stop there
        if max_bytes is not None and read_bytes >= max_bytes and out:
            break
    return out


def read_batches(snapshot: Snapshot, offset: int, max_bytes: int, options: ReadOptions) -> bytes:
    """``Log.read_batches`` over ``snapshot``: whole stored batches, at least one.

    A log that was never compacted takes ``_read_contiguous``: one ``pread``
    per segment into the bytes returned (a fetch costs one copy, as a plain
    read of the file does). Anything that path does not accept, it leaves to
    the checking walk below, which raises with the reason.
    """
    if options.contiguous:
        stored = _read_contiguous(snapshot, offset, max_bytes, options)
        if stored is not None:
            return stored[0] if len(stored) == 1 else b"".join(stored)
    chunk = min(max(max_bytes, 64 * 1024), 16 << 20)
    pieces: list[bytes | memoryview] = []
    total = 0
    for _, _, header, buf, rel in stored_batches(snapshot, offset, options, chunk, max_bytes):
        if pieces and total + header.size > max_bytes:
            break
        pieces.append(memoryview(buf)[rel : rel + header.size])
        total += header.size
    return b"".join(pieces)


def batch_ranges(
    snapshot: Snapshot, offset: int, max_bytes: int, options: ReadOptions
) -> FileRanges:
    """``Log.batch_ranges`` over ``snapshot``: ``read_batches``' batches as file ranges.

    Each segment's file is duplicated first and walked through the duplicate,
    so the ranges name exactly the bytes checked: lengths, magic, counts and
    offsets from headers read in small pieces, as ``read_batches`` checks
    them, and with ``verify_crc`` each batch's CRC-32C over the file's pages
    read through one small reused buffer (``BatchFile.crcs_hold``: never
    into a Python object the range's size; ``sendfile`` sends the bytes).
    Anything the walk does not accept is left to ``read_batches``' checking
    walk, which raises with the reason, the same error ``read_batches``
    raises (or, if it finds nothing wrong, gives the ranges).
    """
    ranges: list[tuple[int, int, int]] = []
    fds: list[int] = []
    try:
        if _ranges_by_headers(snapshot, offset, max_bytes, options, ranges, fds):
            return FileRanges(ranges, fds)
        for fd in fds:
            os.close(fd)
        ranges, fds = [], []
        _ranges_by_walk(snapshot, offset, max_bytes, options, ranges, fds)
        return FileRanges(ranges, fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _ranges_by_headers(
    snapshot: Snapshot,
    offset: int,
    max_bytes: int,
    options: ReadOptions,
    ranges: list[tuple[int, int, int]],
    fds: list[int],
) -> bool:
    """``batch_ranges`` from headers read in small pieces; ``False``: a header it refused."""
    contiguous = options.contiguous
    total = 0
    previous_next: int | None = None
    for i, (seg, end, bound) in enumerate(snapshot):
        if i == 0:
            start = _start_of(seg, offset, end, bound, options)
            if start is None:
                continue
            position, expected = start
        else:
            if total >= max_bytes:
                break
            position = 0
            expected = check_segment_start(
                previous_next, seg.base_offset, seg.log_path, contiguous=contiguous
            )
        fd = seg.file.dup()
        fds.append(fd)
        walked = _walk_headers(
            fd, position, end, max_bytes - total, total == 0, expected, bound, contiguous
        )
        if walked is None:
            return False
        length, previous_next, budget_ended = walked
        if length:
            if options.verify_crc and not seg.file.crcs_hold(fd, position, length):
                return False  # the checking walk raises where read_batches does
            ranges.append((fd, position, length))
            total += length
        if budget_ended:
            break
    return True


#: Bytes read at a time by ``batch_ranges``' header walk: a header, and the
#: headers of small batches after it, without pulling large bodies.
_HEADER_READ = 4096


def _walk_headers(
    fd: int,
    position: int,
    end: int,
    budget: int,
    at_least_one: bool,
    expected: int,
    bound: int,
    contiguous: bool,
) -> tuple[int, int, bool] | None:
    """``(bytes of whole batches from position, next expected offset, budget ended)``.

    ``None`` at a header it does not accept. In a log that was compacted the
    last batch taken is confirmed by the header after it, as ``stored_batches`` does.
    """
    pos, buf, buf_at = position, b"", position
    taken = False
    while pos < end:
        rel = pos - buf_at
        if rel + HEADER_SIZE > len(buf):
            buf_at, rel = pos, 0
            buf = os.pread(fd, min(_HEADER_READ, end - pos), pos)
            if len(buf) < HEADER_SIZE:
                return None
        header = batch.peek_header(buf, rel)
        size = header.size
        if (
            header.magic != 2
            or header.batch_length < batch.MIN_BATCH_LENGTH
            or size > end - pos
            or header.last_offset_delta < 0
            or header.record_count < 0
            or header.base_offset < expected
            or (contiguous and header.base_offset != expected)
            or header.next_offset > bound
        ):
            return None
        if pos + size - position > budget and (taken or not at_least_one):
            return pos - position, expected, True
        expected = header.next_offset
        pos += size
        taken = True
    return pos - position, expected, False


def _ranges_by_walk(
    snapshot: Snapshot,
    offset: int,
    max_bytes: int,
    options: ReadOptions,
    ranges: list[tuple[int, int, int]],
    fds: list[int],
) -> None:
    """``batch_ranges`` from ``read_batches``' checking walk (it raises at damage)."""
    chunk = min(max(max_bytes, 64 * 1024), 16 << 20)
    total = 0
    dups: dict[int, int] = {}
    for seg, pos, header, _, _ in stored_batches(snapshot, offset, options, chunk, max_bytes):
        if ranges and total + header.size > max_bytes:
            break
        fd = dups.get(id(seg))
        if fd is None:
            fd = dups[id(seg)] = seg.file.dup()
            fds.append(fd)
            ranges.append((fd, pos, header.size))
        else:
            last_fd, last_pos, last_length = ranges[-1]
            ranges[-1] = (last_fd, last_pos, last_length + header.size)
        total += header.size


def _read_contiguous(
    snapshot: Snapshot, offset: int, max_bytes: int, options: ReadOptions
) -> list[bytes] | None:
    """``read_batches`` of a log never compacted, a ``read_stored`` per segment; ``None``:
    something failed a check, or the first batch could not be read whole (walk instead).

    Each segment's piece holds the batches that fit in what is left of
    ``max_bytes`` (the first whole whatever its size), every one checked
    (length, magic, CRC with ``verify_crc``, base offset exactly the one
    expected, last offset below the next segment's base).
    """
    verify = options.verify_crc
    pieces: list[bytes] = []
    total = 0
    previous_next: int | None = None
    for i, (seg, end, bound) in enumerate(snapshot):
        if i == 0:
            start = _start_of(seg, offset, end, bound, options)
            if start is None:
                continue  # nothing at or after offset here; nothing known to chain to
            position, expected = start
        else:
            if total >= max_bytes:
                break
            position = 0
            expected = check_segment_start(
                previous_next, seg.base_offset, seg.log_path, contiguous=True
            )
        left = end - position
        data, following, status = seg.file.read_stored(
            position,
            left,
            max_bytes - total,
            at_least_one=total == 0,
            expected=expected,
            end_offset=bound,
            verify_crc=verify,
        )
        if status == STORED_OTHER:
            return None  # damage, a torn batch below the snapshot's end, or a file cut short
        if data:
            pieces.append(data)
            total += len(data)
        if status == STORED_BUDGET:
            break  # the budget ended inside this segment
        previous_next = following
    return pieces


def _start_of(
    seg: Segment, offset: int, end: int, bound: int, options: ReadOptions
) -> tuple[int, int] | None:
    """``(position, base offset)`` of the batch holding ``offset`` (or the first after it).

    A consumer reads on from the offset after its last batch: the offset
    index's entry names that batch (it ends at the entry's offset), so one
    header read confirms the entry (as ``find_position`` does) and the batch
    wanted is the next one. Anything else is ``find_position``'s walk.
    """
    entry_offset, position = seg.offset_index.lookup(offset)
    if position and entry_offset < offset:
        header = seg.read_header_at(position)
        if (
            header is not None
            and header.last_offset == entry_offset
            and header.next_offset == offset
            and position + header.size < end
        ):
            check_follows(header, header.base_offset, seg.log_path, position, end_offset=bound)
            return position + header.size, offset  # read_stored checks that base offset
    position, found = seg.find_position(offset, end, end_offset=bound)
    if seg.index_wrong:
        options.repair(seg)
    return None if found is None else (position, found.base_offset)


def scan(
    snapshot: Snapshot,
    start: int,
    end: int,
    options: ReadOptions,
    isolation: Isolation = "read_committed",
) -> Iterator[Record]:
    """``Log.scan`` over ``snapshot``: records in ``[start, end)``, batch by batch."""
    # The generator below steps once per batch; chain hands out the records
    # from C, so there is no Python frame switch per record.
    return itertools.chain.from_iterable(_record_lists(snapshot, start, end, options, isolation))


def _record_lists(
    snapshot: Snapshot, start: int, end: int, options: ReadOptions, isolation: Isolation
) -> Iterator[list[Record]]:
    if not snapshot:
        return
    decide = verdicts(snapshot, options, isolation)
    for _, records in iter_batch_records(
        snapshot, start, end, options, CHUNK_BYTES, verdicts=decide
    ):
        if records and records[-1].offset >= end:
            yield [r for r in records if r.offset < end]
            return
        yield records


def iter_batch_records(
    snapshot: Snapshot,
    offset: int,
    end_offset: int,
    options: ReadOptions,
    chunk: int,
    max_records: int | None = None,
    *,
    verdicts: Verdicts | None = None,
) -> Iterator[tuple[BatchHeader, list[Record]]]:
    """Decoded records per batch from ``offset`` (skipping those below it) up to ``end_offset``.

    With ``max_records``, stops once that many are yielded; the last batch
    is decoded only as far as needed. Control batches are skipped, and with
    ``verdicts`` the transactional batches it does not deliver.
    """
    wanted = max_records
    # Segments from end_offset on hold nothing wanted: not even a first read.
    within = [item for item in snapshot if item[0].base_offset < end_offset]
    for seg, pos, header, buf, rel in stored_batches(within, offset, options, chunk):
        if header.base_offset >= end_offset:
            return
        if header.attributes & batch.CONTROL_BIT:
            continue  # transaction markers occupy offsets but are never delivered
        if verdicts is not None and not verdicts.delivers(seg, header):
            continue  # aborted (or not yet ended) transactional data
        try:
            records = batch.decode_records(buf, rel, header, min_offset=offset, max_records=wanted)
        except (CorruptLogError, CodecUnavailableError) as exc:
            raise exc.located(seg.log_path, pos - rel) from None
        yield header, records
        if wanted is not None:
            wanted -= len(records)
            if wanted <= 0:
                return


def stored_batches(
    snapshot: Snapshot, offset: int, options: ReadOptions, chunk: int, budget: int | None = None
) -> Iterator[tuple[Segment, int, BatchHeader, bytes, int]]:
    """Batches as stored, from the one holding ``offset`` to the snapshot's end.

    Yields ``(segment, position, header, buffer, offset in buffer)``. The
    base offset is outside the CRC, so every batch is checked to lie where
    the file names and its neighbours say (``check_follows``: at or after
    its segment's base, after the batch before, below the next segment's
    base; exactly contiguous in a log that was never compacted): a damaged
    one raises ``CorruptLogError`` rather than serve records at offsets
    they were not written at. Integer comparisons, once per batch.

    ``budget`` (``read_batches``: at least one batch, then while the total
    stays within it) lets a log that was never compacted stop reading before
    the first batch past it (``BatchFile.iter_batches``); a compacted log's
    batch is confirmed by its successor, so there the successor is read as
    before and the caller stops.
    """
    verify = options.verify_crc
    contiguous = options.contiguous
    previous_next: int | None = None
    served = 0
    for i, (seg, end, bound) in enumerate(snapshot):
        path = seg.log_path
        if i == 0:
            position, found = seg.find_position(offset, end, end_offset=bound)
            if seg.index_wrong:
                options.repair(seg)
            if found is None:
                continue  # nothing at or after offset here; nothing known to chain to
            expected = found.base_offset  # checked by find_position
        else:
            position = 0
            expected = check_segment_start(
                previous_next, seg.base_offset, path, contiguous=contiguous
            )
        if contiguous:  # each batch is pinned by the one before it: checked, then served
            left = None if budget is None else budget - served
            if left is not None and left <= 0 and served:
                return
            batches = seg.file.iter_batches(  # Segment.iter_batches, with a budget
                position,
                end,
                verify_crc=verify,
                chunk_bytes=chunk,
                contiguous=seg.contiguous,
                budget=left,
                at_least_one=served == 0,
            )
            reached = position
            for pos, header, buf, rel in batches:
                expected = check_follows(
                    header, expected, path, pos, contiguous=True, end_offset=bound
                )
                served += header.size
                reached = pos + header.size
                yield seg, pos, header, buf, rel
            if budget is not None and reached < end:
                return  # the budget ended the walk inside this segment: nothing after it
            previous_next = expected
            continue
        batches = seg.iter_batches(position, end, verify_crc=verify, chunk_bytes=chunk)
        # Gaps are legal here, overlaps never: a batch whose base offset moved up
        # into its successors' offsets is exposed only by the successor, so each
        # batch is held back until the next one is checked (the segment's last
        # batch is checked against ``bound``).
        held: tuple[Segment, int, BatchHeader, bytes, int] | None = None
        for pos, header, buf, rel in batches:
            expected = check_follows(
                header, expected, path, pos, contiguous=False, end_offset=bound
            )
            if held is not None:
                yield held
            held = (seg, pos, header, buf, rel)
        if held is not None:
            yield held
        previous_next = expected


def offset_for_timestamp(
    snapshot: Snapshot, timestamp_ms: int, start: int, end_offset: int, options: ReadOptions
) -> int | None:
    """``Log.offset_for_timestamp`` over ``snapshot`` (from ``start``, below ``end_offset``)."""
    for seg, end, bound in snapshot:
        max_ts = seg.max_timestamp
        if max_ts is None or max_ts < timestamp_ms or end == 0:
            continue
        found = _offset_in_segment(seg, end, bound, timestamp_ms, start, end_offset, options)
        if seg.index_wrong:
            options.repair(seg)
        if found is not None:
            return found
    return None


def _offset_in_segment(
    seg: Segment,
    end: int,
    bound: int,
    timestamp_ms: int,
    start: int,
    end_offset: int,
    options: ReadOptions,
) -> int | None:
    """``offset_for_timestamp`` within one segment, through its time index.

    The index's entry for the asked time is used only once the log
    confirms it (``Segment.confirm_time_entry``); otherwise the whole
    segment is searched.
    """
    tindex = seg.time_index
    entry = tindex.floor_entry(timestamp_ms)
    if entry is None or entry[1] <= start:
        target = max(start, seg.base_offset)
        position, header = seg.find_position(target, end, end_offset=bound)
    else:
        previous = tindex.entry_before_floor(timestamp_ms)
        confirmed = seg.confirm_time_entry(entry, previous, end, end_offset=bound)
        if confirmed is not None:
            position, header = confirmed
        else:
            seg.distrust_index(tindex.path, f"entry {entry}")
            position, header = seg.find_position(seg.base_offset, end, end_offset=bound)
    if header is None:
        return None
    return _search(seg, position, header, end, bound, timestamp_ms, start, end_offset, options)


def _search(
    seg: Segment,
    position: int,
    header: BatchHeader,
    end: int,
    bound: int,
    timestamp_ms: int,
    start: int,
    end_offset: int,
    options: ReadOptions,
) -> int | None:
    """First offset >= ``start`` with timestamp >= ``timestamp_ms`` from ``position`` on."""
    expected, path, contiguous = header.base_offset, seg.log_path, options.contiguous
    answer: int | None = None
    for pos, found, buf, rel in seg.iter_batches(position, end, verify_crc=options.verify_crc):
        expected = check_follows(
            found, expected, path, pos, contiguous=contiguous, end_offset=bound
        )
        if answer is not None:
            return answer  # its batch is confirmed by this one's offsets (see stored_batches)
        if found.max_timestamp < timestamp_ms or found.attributes & batch.CONTROL_BIT:
            continue
        try:
            records = batch.decode_records(buf, rel, found, min_offset=start)
        except CorruptLogError as exc:
            raise exc.located(path, pos - rel) from None
        for record in records:
            if record.timestamp >= timestamp_ms and record.offset < end_offset:
                if contiguous:
                    return record.offset  # pinned by the batch before it
                answer = record.offset  # served once the next batch confirms its offsets
                break
    return answer
