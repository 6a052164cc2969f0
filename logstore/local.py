"""``LocalLog``: a partition's segments and offsets, and every change to them.

Kafka's ``LocalLog``: owns the ``Segments``, the offsets (start, end,
flushed, cleaner), the truncation token and the files that record them (the
offset checkpoints, the clean-shutdown marker). Writes finished batches at
the end, rolling first when a limit says so; flushes per ``fsync``;
truncates, deletes a prefix, swaps compacted segments in, and closes. Takes
no lock: the ``Log`` holds its lock around every call, and so do the
retention and compaction passes for the calls they make.

Knows segments, batch headers and checkpoint files; not records or input
checks, retention rules, compaction rounds, threads, or the ``Log``.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Sequence

from . import batch, compression, validator
from ._fs import (
    CLEANER_CHECKPOINT_FILE,
    LOG_START_FILE,
    RECOVERY_POINT_FILE,
    HandleCache,
    Writable,
    write_size,
)
from .batch import BatchHeader, BatchSpan, Entry
from .checkpoints import partition_name, write_clean_shutdown, write_offset_checkpoint
from .config import LogConfig
from .errors import (
    CorruptLogError,
    InvalidRecordError,
    LogClosedError,
    OffsetOutOfRange,
    RecordTooLarge,
)
from .loader import LoadResult
from .model import SegmentInfo
from .segment import Segment, SegmentSettings
from .segments import Segments
from .validator import Planned

logger = logging.getLogger(__name__)


class LocalLog:
    """One partition's segments and offsets; every method runs under the ``Log``'s lock."""

    def __init__(
        self,
        path: str,
        config: LogConfig,
        loaded: LoadResult,
        *,
        handles: HandleCache | None,
        clock: Callable[[], int],
        abandon: Callable[[], None],
    ) -> None:
        """Take over what ``load`` found.

        ``abandon`` is called, before the error is raised, when files and
        memory no longer agree (a failed write or cut that could not be
        undone): the ``Log`` then closes without the clean-shutdown marker.
        """
        self.path = path
        self.config = config
        self.clock = clock
        self._abandon = abandon
        self._codec = compression.CODEC_IDS[config.compression]
        #: Never compacted: batches follow each other with no gap (reads check it).
        self.contiguous = loaded.contiguous
        self.segments = Segments(
            path,
            loaded.segments,
            settings=SegmentSettings.of(config),
            fsync=config.fsync != "never",
            handles=handles,
            contiguous=self.contiguous,
        )
        #: The clean-shutdown marker while the open has changed nothing (``CleanMarker``).
        self.marker = loaded.marker
        self.start_offset = loaded.start_offset
        self.end_offset = self.segments.active.next_offset
        if self.end_offset < self.start_offset:
            # Recovery cut below the start (records were deleted, then a crash lost the
            # tail): as Kafka does, start over empty at the start offset.
            logger.info(
                "%s: recovery ended below the log start: empty from offset %d",
                path,
                self.start_offset,
            )
            self.changing()
            self.segments.reset(self.start_offset)
            self.end_offset = self.start_offset
        self.flushed_offset = min(max(loaded.recovery_point, self.start_offset), self.end_offset)
        if loaded.clean:
            self.flushed_offset = self.end_offset
        self.cleaner_offset = loaded.cleaner_offset
        #: Bumped by every truncation: a retention plan or compaction round taken before is void.
        self.truncations = 0
        #: Rolls so far: the ``Log`` compares it to see whether an append rolled.
        self.rolls = 0
        self.closed = False
        self._unflushed_messages = 0
        self._last_flush_ms = clock()
        self._topic_partition = partition_name(path)

    def changing(self) -> None:
        """About to change a file of the partition: the clean-shutdown marker goes first."""
        if self.marker is not None:
            self.marker.drop()

    def check_open(self) -> None:
        if self.closed:
            raise LogClosedError(f"log {self.path} is closed")

    def check_in_range(self, offset: int) -> None:
        """Raise ``OffsetOutOfRange`` unless ``start_offset <= offset <= end_offset``."""
        if not self.start_offset <= offset <= self.end_offset:
            raise OffsetOutOfRange(
                f"{self.path}: offset {offset} is outside the log's range "
                f"[{self.start_offset}, {self.end_offset}]"
            )

    def checkpoint(self, name: str, offset: int) -> None:
        """Write one of the partition's offset checkpoints (Kafka's file, one entry)."""
        self.changing()
        write_offset_checkpoint(self.path, name, offset, topic_partition=self._topic_partition)

    def snapshot(self, offset: int) -> list[tuple[Segment, int, int]]:
        """What a read needs (``Segments.snapshot``): bytes below these ends never change."""
        return self.segments.snapshot(offset, self.end_offset)

    def read_snapshot(self, offset: int) -> list[tuple[Segment, int, int]]:
        """``snapshot`` from ``offset`` after the bounds check; empty at ``end_offset``.

        Raises:
            OffsetOutOfRange: ``offset`` is below ``start_offset`` or above ``end_offset``.
        """
        self.check_in_range(offset)
        return self.snapshot(offset) if offset < self.end_offset else []

    def scan_snapshot(
        self, start: int | None, end: int | None
    ) -> tuple[list[tuple[Segment, int, int]], int, int]:
        """``read_snapshot`` for ``[start, end)`` (``None``: the log's own), and that range.

        Raises:
            OffsetOutOfRange: ``start`` is outside the log.
        """
        start = self.start_offset if start is None else start
        end = self.end_offset if end is None else min(end, self.end_offset)
        self.check_in_range(start)
        return (self.snapshot(start) if start < end else []), start, end

    def infos(self) -> list[SegmentInfo]:
        """One ``SegmentInfo`` per segment, oldest first."""
        return [
            SegmentInfo(
                base_offset=s.base_offset,
                next_offset=s.next_offset,
                records=s.records,
                size_bytes=s.size,
                first_timestamp=s.first_timestamp if s.size else None,
                max_timestamp=s.max_timestamp,
                path=s.log_path,
            )
            for s in self.segments
        ]

    # ------------------------------------------------------------ appending

    def append_entries(self, entries: list[Entry], now: int) -> None:
        """Plan ``entries`` into batches, write them at the end, then flush as ``fsync`` says.

        Every batch is encoded before any is written, so ``RecordTooLarge``
        changes nothing. After a roll the plan did not foresee (size, age, full
        index) the rest is planned again, since the room left under
        ``segment_messages`` changed; records that fit before still fit.

        Raises:
            RecordTooLarge: a single record's batch is too large (``validator.plan``).
            OSError: a write failed; the batches before it stay.
        """
        base = self.end_offset
        self._write_entries(entries, now)
        if self.end_offset != base:
            self._after_append(self.end_offset - base, now)

    def append_groups(
        self, groups: Sequence[list[Entry] | Exception], now: int
    ) -> list[range | Exception]:
        """Group commit: write each group as its own batches, in order, then flush once.

        The producer's writer hands over the batches that queued while it was
        busy; one fsync (per ``fsync``) covers them all. A result per group:
        its offsets, or the error that failed it. A group that is already an
        error, or that ``validator.plan`` refuses (``RecordTooLarge``), gets
        that error, naming the log, and nothing of it is written; the others go on. A failed
        write stops the rest: the groups written before it are flushed and
        kept (on stable storage with ``fsync="always"``), the failed one and
        every later one get its ``OSError``. If that flush fails, or the log
        had to be abandoned, every group gets an error: a group is reported
        written only once the flush that ``fsync`` asks for covered it.
        """
        base = self.end_offset
        results: list[range | Exception] = []
        failed: OSError | None = None
        for entries in groups:
            if failed is not None:
                results.append(failed)
                continue
            if isinstance(entries, Exception):
                results.append(self.named(entries))
                continue
            start = self.end_offset
            try:
                self._write_entries(entries, now)
            except RecordTooLarge as exc:  # planned before any of its batches was written
                results.append(self.named(exc))
                continue
            except OSError as exc:  # batches of this group before the failed one stay, unreported
                failed = exc
                results.append(exc)
                continue
            results.append(range(start, self.end_offset))
        if self.end_offset == base:
            return results
        try:
            if failed is not None and self.closed:  # abandoned: the files could not be cut back
                raise failed
            self._after_append(self.end_offset - base, now)
        except OSError as exc:
            return [r if isinstance(r, Exception) else exc for r in results]
        return results

    def named(self, exc: Exception) -> Exception:
        """A refusal (``RecordTooLarge``, ``InvalidRecordError``) naming this log (the
        validator knows no paths); any other error as it is."""
        if isinstance(exc, (RecordTooLarge, InvalidRecordError)):
            return type(exc)(f"{self.path}: {exc}")
        return exc

    def _write_entries(self, entries: list[Entry], now: int) -> None:
        """``append_entries`` without the flush."""
        if not entries:
            return
        plan = self._plan(entries, now, 0)
        replan = self.config.segment_messages is not None
        done = 0
        for k in itertools.count():
            if k >= len(plan):
                break
            data, count, max_ts = plan[k]
            before = self.segments.active
            segment = self._write(data, count, self.end_offset + count - 1, max_ts)
            done += count
            if replan and segment is not before:
                plan[k + 1 :] = self._plan(entries, now, done)

    def _plan(self, entries: list[Entry], now: int, start: int) -> list[Planned]:
        """``validator.plan`` of ``entries[start:]`` from the end and the active segment."""
        return validator.plan(
            entries,
            config=self.config,
            codec=self._codec,
            now=now,
            start=start,
            base_offset=self.end_offset,
            active_records=self.segments.active.records,
        )

    def append_stored(self, data: bytearray, headers: Sequence[tuple[int, BatchHeader]]) -> None:
        """Write checked v2 batches of ``data`` at the end, each rebased to the next offset.

        The base offset lies outside the CRC: nothing is re-checksummed.
        """
        base = self.end_offset
        view = memoryview(data)  # each batch written from ``data`` in place, not copied
        for pos, header in headers:
            batch.set_base_offset(data, pos, self.end_offset)
            last_offset = self.end_offset + header.last_offset_delta
            piece = view[pos : pos + header.size]
            self._write(piece, header.record_count, last_offset, header.max_timestamp)
        self._after_append(self.end_offset - base, self.clock())

    def _write(self, data: Writable, record_count: int, last_offset: int, max_ts: int) -> Segment:
        """Write one batch into the active segment, rolling first if a limit says so."""
        self.changing()
        size = write_size(data)
        segment = self._maybe_roll(size, max_ts, last_offset)
        span = BatchSpan(size, last_offset, max_ts)
        try:
            segment.append(data, (span,), record_count=record_count)
        except OSError:
            if segment.broken:  # it could not be cut back after the failure
                self._abandon()
            raise
        self.end_offset = last_offset + 1
        return segment

    def _maybe_roll(self, size: int, max_timestamp: int, last_offset: int) -> Segment:
        seg = self.segments.active
        config = self.config
        reason = seg.should_roll(
            size,
            max_timestamp,
            last_offset,
            segment_bytes=config.segment_bytes,
            segment_ms=config.segment_ms,
            segment_messages=config.segment_messages,
        )
        return seg if reason is None else self.roll()

    def roll(self) -> Segment:
        """Roll (``Segments.roll``); the recovery point passes the sealed segment."""
        self.changing()
        self.rolls += 1
        new = self.segments.roll(self.end_offset)
        if self.config.fsync != "never":
            self.flushed_offset = max(self.flushed_offset, new.base_offset)
            self.checkpoint(RECOVERY_POINT_FILE, self.flushed_offset)
        return new

    def _after_append(self, count: int, now: int) -> None:
        """Flush as ``fsync`` says after ``count`` records were appended."""
        mode = self.config.fsync
        if mode == "always":
            self.flush()
        elif mode == "interval":
            self._unflushed_messages += count
            every = self.config.fsync_interval_messages
            if (every is not None and self._unflushed_messages >= every) or (
                now - self._last_flush_ms >= self.config.fsync_interval_ms
            ):
                self.flush()

    def flush(self) -> None:
        """fsync everything appended so far; ``flushed_offset`` becomes ``end_offset``."""
        for seg in self.segments:  # rolled with fsync="never": not yet synced
            if seg.unflushed and seg is not self.segments.active:
                seg.flush()
        self.segments.active.flush()
        self.flushed_offset = self.end_offset
        self._unflushed_messages = 0
        self._last_flush_ms = self.clock()

    def write_recovery_point(self) -> None:
        self.checkpoint(RECOVERY_POINT_FILE, self.flushed_offset)

    # ------------------------------------------------------------ removing

    def truncate(self, offset: int) -> None:
        """Drop every record at or after ``offset`` (nothing at or past ``end_offset``).

        A batch holding ``offset`` is rewritten with only its records below it.

        Raises:
            OffsetOutOfRange: ``offset`` is below ``start_offset``.
            OSError: a cut failed; the log was abandoned (the files are partly cut).
        """
        if offset >= self.end_offset:
            return
        if offset < self.start_offset:
            raise OffsetOutOfRange(
                f"{self.path}: cannot truncate to {offset}, "
                f"below the start offset {self.start_offset}"
            )
        self.changing()
        # 0. Lower the recovery point to the base of the segment that will be cut,
        #    durably, before any byte changes: a crash part-way leaves a rewritten
        #    batch, or the old batch's remains, above it, which the next open
        #    judges as a torn tail (cut) rather than as flushed damage (refused).
        flushed = self.flushed_offset
        holder = max(s.base_offset for s in self.segments if s.base_offset <= offset)
        if flushed > holder:
            self.checkpoint(RECOVERY_POINT_FILE, holder)
        try:
            self.segments.truncate(offset, compression_level=self.config.compression_level)
        except OSError:
            self._abandon()  # files partly cut: the next open recovers from the files
            raise
        self.end_offset = offset
        self.truncations += 1
        self.flushed_offset = min(flushed, offset)
        self.segments.active.flush()
        self.write_recovery_point()
        if self.cleaner_offset > offset:  # re-appended records are dirty again
            self.cleaner_offset = offset
            self.checkpoint(CLEANER_CHECKPOINT_FILE, self.cleaner_offset)

    def delete_before(self, offset: int) -> None:
        """Advance ``start_offset`` to ``offset`` (durably, first); delete the segments below it.

        Raises:
            OffsetOutOfRange: ``offset`` is above ``end_offset``.
        """
        if offset > self.end_offset:
            raise OffsetOutOfRange(
                f"{self.path}: cannot delete before {offset}, past the end offset {self.end_offset}"
            )
        if offset <= self.start_offset:
            return
        self.changing()
        self.start_offset = offset
        self.checkpoint(LOG_START_FILE, self.start_offset)
        segs = list(self.segments)
        self.segments.remove(
            [s for s, nxt in itertools.pairwise(segs) if nxt.base_offset <= offset]
        )

    def remove_oldest(self, doomed: Sequence[Segment], start_offset: int) -> None:
        """Delete ``doomed`` (a prefix of the log), then checkpoint the new ``start_offset``."""
        self.changing()
        self.segments.remove(doomed)
        if start_offset > self.start_offset:
            self.start_offset = start_offset
            self.checkpoint(LOG_START_FILE, self.start_offset)

    def cleanable(self) -> tuple[list[Segment], int, int]:
        """The sealed segments, the first dirty offset and the time now (a round's start).

        The cleaner checkpoint is reset to the log start when it lies outside
        the log (Kafka's rule).
        """
        first_dirty = self.cleaner_offset
        if not self.start_offset <= first_dirty <= self.end_offset:
            first_dirty = self.start_offset
        return self.segments.sealed(), first_dirty, self.clock()

    def replace(self, inputs: Sequence[Segment], outputs: Sequence[Segment], end: int) -> None:
        """Swap a compaction round's ``.cleaned`` outputs in; the cleaner offset becomes ``end``."""
        self.changing()
        if not os.path.exists(os.path.join(self.path, CLEANER_CHECKPOINT_FILE)):
            # Before the first swap leaves gaps in the offsets, say so durably:
            # the checkpoint marks the log as compacted for every later open.
            self.checkpoint(CLEANER_CHECKPOINT_FILE, self.cleaner_offset)
        self.segments.replace(inputs, outputs)
        self.cleaner_offset = end
        self.checkpoint(CLEANER_CHECKPOINT_FILE, self.cleaner_offset)

    def repair_indexes(self, seg: Segment) -> CorruptLogError | None:
        """Rebuild the indexes of ``seg`` if it is still ours; the error that prevented it."""
        if self.closed or not self.segments.holds(seg):
            return None
        self.changing()
        return seg.repair_indexes(end_offset=self.segments.bound(seg, self.end_offset))

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Flush, seal every segment, write the checkpoints, and the clean-shutdown marker last.

        A log whose open kept the marker and that changed nothing since
        (``CleanMarker``) is as the last close left it: its files are closed
        and nothing is written.
        """
        self.closed = True
        if self.marker is not None and self.marker.kept:
            self.close_files()
            return
        self.flush()
        for seg in self.segments:
            seg.close()  # the active one is sealed: indexes written and fsynced
        self.write_recovery_point()
        self.checkpoint(LOG_START_FILE, self.start_offset)
        write_clean_shutdown(self.path)

    def close_files(self) -> None:
        """Close the files, writing nothing: after a write that could not be undone (no
        marker then), or when nothing changed since a clean open (its marker stays)."""
        self.closed = True
        for seg in self.segments:
            seg.close_file()
