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
from collections.abc import Callable, Iterator
from typing import NamedTuple

from . import batch
from .batch import BatchHeader
from .batchfile import CHUNK_BYTES, check_follows, check_segment_start
from .errors import CodecUnavailableError, CorruptLogError
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
    """``Log.read_batches`` over ``snapshot``: whole stored batches, at least one."""
    chunk = min(max(max_bytes, 64 * 1024), 16 << 20)
    pieces: list[bytes | memoryview] = []
    total = 0
    for _, _, header, buf, rel in stored_batches(snapshot, offset, options, chunk, max_bytes):
        if pieces and total + header.size > max_bytes:
            break
        pieces.append(memoryview(buf)[rel : rel + header.size])
        total += header.size
    return b"".join(pieces)


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
