"""``Segment``: one ``.log`` file with its ``.index`` and ``.timeindex``.

Appends encoded batches, maps offsets to byte positions, reads byte ranges and
validates (recovers) its batches. Knows batch *headers* only: it never decodes
records. Positions in its errors are absolute positions in its ``.log``.

An inactive (sealed) segment opens its files lazily, so a log of thousands of
segments opens without reading them: its indexes are loaded on the first
lookup, its record count on the first report.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from . import batch
from ._fs import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    HandleCache,
    Writable,
    remove_files,
    segment_name,
)
from ._varint import INT32_MAX
from .batch import BatchHeader, BatchSpan
from .batchfile import CHUNK_BYTES, BatchFile
from .errors import CorruptLogError, ErrorKind
from .index import OffsetIndex, TimeIndex
from .segmentlookup import SegmentLookups
from .segmentscan import RecoveryResult, ScanState, scan

logger = logging.getLogger(__name__)


class _IndexConfig(Protocol):
    """What ``SegmentSettings.of`` reads (a ``LogConfig``; segment does not import config)."""

    @property
    def max_index_bytes(self) -> int: ...
    @property
    def index_interval_bytes(self) -> int: ...


@dataclass(frozen=True)
class SegmentSettings:
    """How a segment indexes: the index files' size limit and the bytes between entries."""

    max_index_bytes: int
    index_interval_bytes: int

    @classmethod
    def of(cls, config: _IndexConfig) -> SegmentSettings:
        return cls(config.max_index_bytes, config.index_interval_bytes)


class Segment(SegmentLookups):
    """A slice of the log starting at ``base_offset``.

    Lookups by offset and timestamp come from ``SegmentLookups``; the validating
    walk of recovery from ``segmentscan``.
    """

    def __init__(
        self,
        directory: str,
        base_offset: int,
        *,
        settings: SegmentSettings,
        suffix: str = "",
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.suffix = suffix  # "" for a live segment, ".cleaned" while the cleaner writes it
        self.file = BatchFile(
            os.path.join(directory, segment_name(base_offset, LOG_SUFFIX) + suffix)
        )
        self.index_path, self.timeindex_path = (
            os.path.join(directory, segment_name(base_offset, s) + suffix)
            for s in (INDEX_SUFFIX, TIMEINDEX_SUFFIX)
        )
        self.settings = settings
        self.index_interval_bytes = settings.index_interval_bytes
        self.max_index_bytes = settings.max_index_bytes
        self.size = 0
        # Set by the owner for a never-compacted log: no gaps, so a bad base offset shows.
        self.contiguous = False
        # A read found an index entry the log contradicts: the owner rebuilds the indexes.
        self.index_wrong = False
        self._offset_index: OffsetIndex | None = None
        self._time_index: TimeIndex | None = None
        self._next_offset: int | None = None
        self._records: int | None = None
        self.first_timestamp: int | None = None  # max timestamp of the first batch (segment_ms)
        self._max_timestamp: int | None = None
        self._offset_of_max_timestamp: int | None = None
        self._bytes_since_index_entry = 0
        self.before_change: Callable[[], None] = lambda: None  # before a lazy index rebuild
        self._preallocate_pending = False

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        directory: str,
        base_offset: int,
        *,
        settings: SegmentSettings,
        suffix: str = "",
    ) -> Segment:
        """Create empty files for a new active segment (the caller fsyncs the directory)."""
        seg = cls(directory, base_offset, settings=settings, suffix=suffix)
        seg.file = BatchFile.create(seg.log_path)
        seg._offset_index, seg._time_index = seg.new_indexes()
        seg._next_offset = base_offset
        seg._records = 0
        seg._max_timestamp = None
        seg.active = True
        seg._offset_index.preallocate()
        seg._time_index.preallocate()
        return seg

    @classmethod
    def open_existing(
        cls, directory: str, base_offset: int, *, settings: SegmentSettings
    ) -> Segment:
        """Attach to existing files without reading them (only their size)."""
        seg = cls(directory, base_offset, settings=settings)
        seg.size = os.stat(seg.log_path).st_size
        return seg

    # The .log file's handle, I/O and state live in ``self.file`` (a ``BatchFile``).

    @property
    def log_path(self) -> str:
        return self.file.path

    @log_path.setter
    def log_path(self, path: str) -> None:
        self.file.path = path

    @property
    def active(self) -> bool:
        """The segment appended to: its handle opens read-write."""
        return self.file.writable

    @active.setter
    def active(self, active: bool) -> None:
        self.file.writable = active

    @property
    def unflushed(self) -> bool:
        """Appended to since the last fsync."""
        return self.file.unflushed

    @property
    def broken(self) -> bool:
        """A failed append could not be cut back: garbage may follow, the log must close."""
        return self.file.broken

    def adopt(self, handles: HandleCache | None, *, keep_open_until_flushed: bool) -> None:
        """Join an owner's handle cache, which bounds the open handles of all its segments."""
        self.file.adopt(handles, keep_open_until_flushed=keep_open_until_flushed)

    def close_file(self) -> None:
        """Release the ``.log`` handle (reopened on the next read)."""
        self.file.close()

    def close(self) -> None:
        """Close every handle; an active segment's indexes are trimmed first."""
        if self.active:
            self.seal()
        self.close_file()

    def seal(self) -> None:
        """Stop being the active segment (roll or close): final time entry, trim indexes.

        Mirrors Kafka's ``onBecomeInactiveSegment``: the time index gets a last
        entry holding the segment's largest timestamp, which retention reads.
        """
        self._preallocate_pending = False
        index, tindex = self.offset_index, self.time_index
        if self._max_timestamp is not None and self._offset_of_max_timestamp is not None:
            tindex.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
        index.trim()
        tindex.trim()
        self.active = False

    def activate(self) -> None:
        """Make a loaded segment active again (after open); preallocated at its first append."""
        self.close_file()
        self.active = True
        self._ensure_tail_state()
        self._preallocate_pending = True  # at the first append: an open alone changes no file

    def flush(self) -> None:
        """fsync the ``.log`` data."""
        self.file.flush()

    def overwrite(self, position: int, data: bytes) -> None:
        """Write ``data`` at ``position`` (inside the file) and fsync (truncation's rewrite)."""
        self.file.overwrite(position, data)

    def detach(self) -> None:
        """Get ready to lose the files: open the ``.log`` and load the indexes.

        A reader that snapshotted this segment keeps reading it after its files
        are renamed and unlinked: the open handle keeps the data alive until the
        last reader drops the object (see ``BatchFile.detach``).
        """
        self.file.detach()
        if self._offset_index is None or self._time_index is None:
            self._load_indexes()  # now, while the files exist

    def delete_files(self) -> None:
        """Unlink the files; the ``.log`` handle stays open for readers (see ``detach``)."""
        remove_files(self.paths)

    @property
    def paths(self) -> list[str]:
        return [self.log_path, self.index_path, self.timeindex_path]

    def rename_with_suffix(self, old_suffix: str, new_suffix: str) -> None:
        """Rename the three files from ``...old_suffix`` to ``...new_suffix`` (the caller fsyncs).

        An open ``.log`` handle stays valid across the rename.
        """
        for attr in ("log_path", "index_path", "timeindex_path"):
            old = getattr(self, attr)
            assert old.endswith(old_suffix)
            new = old[: len(old) - len(old_suffix)] + new_suffix
            try:
                os.rename(old, new)
            except FileNotFoundError:
                if attr == "log_path":
                    raise
            setattr(self, attr, new)
            if attr == "index_path" and self._offset_index is not None:
                self._offset_index.path = new
            if attr == "timeindex_path" and self._time_index is not None:
                self._time_index.path = new
        self.suffix = new_suffix

    # ------------------------------------------------------------ indexes, lazily

    @property
    def offset_index(self) -> OffsetIndex:
        if self._offset_index is None:
            self._load_indexes()
        assert self._offset_index is not None
        return self._offset_index

    @property
    def time_index(self) -> TimeIndex:
        if self._time_index is None:
            self._load_indexes()
        assert self._time_index is not None
        return self._time_index

    def new_indexes(self) -> tuple[OffsetIndex, TimeIndex]:
        """Empty in-memory indexes over this segment's index files (nothing is read)."""
        limit = self.max_index_bytes
        return (
            OffsetIndex(self.index_path, self.base_offset, max_index_bytes=limit),
            TimeIndex(self.timeindex_path, self.base_offset, max_index_bytes=limit),
        )

    def read_index_files(self) -> tuple[OffsetIndex, TimeIndex]:
        """Both index files as stored; ``CorruptLogError`` if one is missing or not sane."""
        index, tindex = self.new_indexes()
        if not (os.path.exists(self.index_path) and os.path.exists(self.timeindex_path)):
            raise CorruptLogError(
                "index file missing", self.index_path, kind=ErrorKind.INVALID_INDEX
            )
        index.load(self.size)
        tindex.load()
        return index, tindex

    def _load_indexes(self) -> None:
        """Load both index files; rebuild both from the ``.log`` if either is not sane."""
        try:
            self._offset_index, self._time_index = self.read_index_files()
            self.check_last_index_entry()
        except CorruptLogError as exc:
            self._offset_index, self._time_index = self.new_indexes()  # empty: rebuilt below
            logger.info("%s; rebuilding the indexes of %s", exc, os.path.basename(self.log_path))
            self.rebuild_indexes()

    def rebuild_indexes(self) -> RecoveryResult:
        """Rebuild both indexes from the ``.log`` (which is not changed) and write them."""
        result = self.validate(rebuild=True, contiguous=self.contiguous)
        self.write_rebuilt_indexes()
        return result

    def repair_indexes(self, *, end_offset: int | None = None) -> CorruptLogError | None:
        """Rebuild the indexes after a read found one wrong; the log's own damage, if any.

        The owner calls this under its lock. The new indexes replace the old
        ones in memory whole (a concurrent reader never sees half of one); they
        are written only when every batch passed its checks and the segment's
        files are not going away. In a damaged segment they cover the batches
        before the damage (reads raise past it anyway). The facts a log's end
        offset rests on (next offset, sizes) are not changed.
        """
        index, tindex, result, state = self._scan(
            start_offset=None, contiguous=self.contiguous, end_offset=end_offset
        )
        if result.batches and result.error is None:
            tindex.maybe_append(state.max_timestamp, state.offset_of_max_timestamp)  # as sealed
        # Appends (under the same lock) count bytes from the new last entry.
        self._bytes_since_index_entry = state.bytes_since_index_entry
        self._offset_index, self._time_index = index, tindex
        self.index_wrong = False
        if result.error is not None:
            # Entries up to the damage are right; past it reads raise anyway.
            return result.error
        if not self.file.detached:
            for idx in (index, tindex):
                idx.write_all_entries()
                if self.active:
                    idx.preallocate()
        logger.warning("%s: indexes rebuilt from the log", self.index_path)
        return None

    def write_rebuilt_indexes(self) -> None:
        assert self._offset_index is not None and self._time_index is not None
        if self._max_timestamp is not None and self._offset_of_max_timestamp is not None:
            self._time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
        self.before_change()  # the loader's hook: the clean-shutdown marker goes first
        for idx in (self._offset_index, self._time_index):
            idx.write_all_entries()
            if self.active:
                idx.preallocate()

    # ------------------------------------------------------------ facts about the segment

    def _ensure_tail_state(self) -> None:
        """Learn next offset, max timestamp and bytes since the last index entry.

        Reads only the batches after the last offset-index entry (at most about
        ``index_interval_bytes`` plus one batch), plus the first batch's header.
        """
        if self._next_offset is not None and self._max_timestamp is not None:
            return
        position, next_offset, last_time = self.tail_entries()
        max_ts, max_ts_offset = (-1, self.base_offset) if last_time is None else last_time
        for _, header in self.iter_headers(position, self.size):
            # Damage to a base offset is left to reads, which raise; the owner
            # checks the end offset against what it recorded at close.
            next_offset = max(next_offset, header.next_offset)
            if header.max_timestamp > max_ts:
                max_ts, max_ts_offset = header.max_timestamp, header.last_offset
        self._next_offset = next_offset
        self._max_timestamp = max_ts if self.size else None
        self._offset_of_max_timestamp = max_ts_offset
        self._bytes_since_index_entry = self.size - position
        if self.first_timestamp is None and self.size:
            first = self.read_header_at(0)
            self.first_timestamp = None if first is None else first.max_timestamp

    @property
    def next_offset(self) -> int:
        """One past the last offset in this segment (``base_offset`` when empty)."""
        if self._next_offset is None:
            self._ensure_tail_state()
        assert self._next_offset is not None
        return self._next_offset

    @property
    def max_timestamp(self) -> int | None:
        """Largest record timestamp in the segment; ``None`` when empty."""
        if self._next_offset is None:
            self._ensure_tail_state()
        return self._max_timestamp

    @property
    def records(self) -> int:
        """Number of records (from the batch headers; computed once, then maintained)."""
        if self._records is None:
            self._records = sum(h.record_count for _, h in self.iter_headers(0, self.size))
        return self._records

    @property
    def index_full(self) -> bool:
        return self.offset_index.is_full or self.time_index.is_full

    # ------------------------------------------------------------ writing

    def append(self, data: Writable, spans: Sequence[BatchSpan], *, record_count: int) -> None:
        """Write encoded batches at the end of the ``.log`` with one ``pwrite`` (or ``pwritev``).

        Index entries follow Kafka's rule per batch: before a batch, if more than
        ``index_interval_bytes`` were appended since the last entry, add one.
        If the write fails the file is cut back to its previous size and the
        ``OSError`` is raised; nothing is indexed.
        """
        if self._preallocate_pending:
            self._preallocate_pending = False
            self.offset_index.preallocate()
            self.time_index.preallocate()
        start = self.size
        self.file.append(data, start)
        if self.first_timestamp is None:
            self.first_timestamp = spans[0].max_timestamp
        index, tindex = self.offset_index, self.time_index
        interval = self.index_interval_bytes
        position = start
        max_ts = -1 if self._max_timestamp is None else self._max_timestamp
        max_ts_offset = self._offset_of_max_timestamp
        if max_ts_offset is None:  # records without timestamps (-1) so far
            max_ts_offset = spans[0].last_offset
        since = self._bytes_since_index_entry
        for size, last_offset, batch_max_ts in spans:
            if batch_max_ts > max_ts:
                max_ts, max_ts_offset = batch_max_ts, last_offset
            if since > interval:
                index.append(last_offset, position)
                tindex.maybe_append(max_ts, max_ts_offset)
                since = 0
            since += size
            position += size
        self._bytes_since_index_entry = since
        self._max_timestamp, self._offset_of_max_timestamp = max_ts, max_ts_offset
        self.size = position
        self._next_offset = spans[-1].last_offset + 1
        if self._records is not None:
            self._records += record_count

    def truncate_to(self, position: int, next_offset: int) -> None:
        """Cut the ``.log`` at ``position`` (a batch boundary) and drop index entries past it."""
        self.file.truncate(position)
        self.size = position
        self.offset_index.truncate_to_position(position)
        self.time_index.truncate_to_offset(next_offset)
        self._next_offset = None
        self._max_timestamp = None
        self._records = None
        if position == 0:
            self.first_timestamp = None
        self._ensure_tail_state()
        self._next_offset = max(self.base_offset, min(self.next_offset, next_offset))

    # ------------------------------------------------------------ reading

    def read(self, position: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``position`` (fewer at the end of the file)."""
        return self.file.read(position, size)

    def iter_batches(
        self,
        start: int,
        end: int,
        *,
        verify_crc: bool,
        chunk_bytes: int = CHUNK_BYTES,
        check_offsets: bool = False,
    ) -> Iterator[tuple[int, BatchHeader, bytes, int]]:
        """Yield ``(position, header, buffer, offset_in_buffer)`` of whole batches in ``[start, end)``.

        See ``BatchFile.iter_batches``. ``check_offsets`` (a walk from position
        0) checks each batch's offsets with ``check_follows`` within the
        segment, for callers that rewrite what they read (the cleaner).
        """
        assert not check_offsets or start == 0
        return self.file.iter_batches(
            start,
            end,
            verify_crc=verify_crc,
            chunk_bytes=chunk_bytes,
            check_offsets_from=self.base_offset if check_offsets else None,
            contiguous=self.contiguous,
        )

    # ------------------------------------------------------------ validation and recovery

    def validate(
        self,
        *,
        rebuild: bool = False,
        start_offset: int | None = None,
        contiguous: bool = False,
        end_offset: int | None = None,
    ) -> RecoveryResult:
        """Check every batch from position 0; optionally rebuild the indexes in memory.

        Checks: sane length within the file, magic 2, CRC-32C, and offsets
        (``check_follows``): the first batch starts at or after the segment's
        base offset, each batch at or after the previous one's next offset,
        every last offset below ``end_offset`` (the next segment's base) and
        within int32 of the base. ``start_offset`` is the previous segment's
        next offset (``check_segment_start``). With ``contiguous`` (a log that
        was never compacted) each batch must start exactly where the previous
        one ended, the first one at the segment's base. Records are not
        decoded (the CRC guards them). Stops at the first problem and reports
        it; changes no file.
        """
        index, tindex, result, state = self._scan(
            start_offset=start_offset, contiguous=contiguous, end_offset=end_offset
        )
        if rebuild:
            self._offset_index, self._time_index = index, tindex
            self._next_offset = max(state.next_offset, self.base_offset)
            self._max_timestamp = state.max_timestamp if result.batches else None
            self._offset_of_max_timestamp = state.offset_of_max_timestamp
            self._bytes_since_index_entry = state.bytes_since_index_entry
            self._records = state.records
            self.first_timestamp = state.first_timestamp
        return result

    def _scan(
        self, *, start_offset: int | None, contiguous: bool, end_offset: int | None
    ) -> tuple[OffsetIndex, TimeIndex, RecoveryResult, ScanState]:
        """The validating walk (``segmentscan.scan``) into fresh indexes."""
        index, tindex = self.new_indexes()
        result, state = scan(
            self.file,
            self.base_offset,
            index,
            tindex,
            interval=self.index_interval_bytes,
            start_offset=start_offset,
            contiguous=contiguous,
            end_offset=end_offset,
        )
        return index, tindex, result, state

    # ------------------------------------------------------------ rolling and truncation

    def should_roll(
        self,
        size: int,
        max_timestamp: int,
        last_offset: int,
        *,
        segment_bytes: int,
        segment_ms: int | None,
        segment_messages: int | None,
    ) -> str | None:
        """Why a batch of ``size`` bytes must start a new segment, or ``None`` if it fits here.

        Kafka's reasons, in its order: ``"size"``, ``"age"`` (``max_timestamp``
        past the first batch's by more than ``segment_ms``), ``"messages"``,
        ``"index"`` (an index is full), ``"offset"`` (``last_offset`` would not
        fit the index's 32-bit relative offsets). An empty segment takes anything.
        """
        if self.size == 0:
            return None
        if self.size + size > segment_bytes:
            return "size"
        if (
            segment_ms is not None
            and self.first_timestamp is not None
            and (max_timestamp - self.first_timestamp > segment_ms)
        ):
            return "age"
        if segment_messages is not None and self.records >= segment_messages:
            return "messages"
        if self.index_full:
            return "index"
        if last_offset - self.base_offset > INT32_MAX:
            return "offset"
        return None

    def truncate_to_offset(self, offset: int, *, compression_level: int | None) -> None:
        """Drop every record at or after ``offset``; the batch holding it keeps those below.

        That batch is rebuilt with only its records below ``offset`` (same base
        offset, producer fields and codec; its delete horizon dropped).
        """
        position, header = self.find_position(offset, self.size)
        if header is None:
            return
        keep = []
        if header.base_offset < offset:
            buf = self.read(position, header.size)
            keep = [r for r in batch.decode_records(buf, 0) if r.offset < offset]
        if not keep:
            self.truncate_to(position, offset)
            return
        data = batch.rebuild(
            header,
            keep,
            attributes=header.attributes & ~batch.DELETE_HORIZON_BIT,
            last_offset_delta=offset - 1 - header.base_offset,
            compression_level=compression_level,
        )
        # 1. Write the shortened batch over the old one and fsync: a crash after
        #    this leaves it followed by the old batch's remains, which recovery
        #    cuts (and quarantines) as a torn tail; the kept records survive.
        # 2. Only then cut the file after it.
        self.overwrite(position, data)
        self.offset_index.truncate_to_position(position)
        self.truncate_to(position + len(data), offset)
