"""Finding batches in a segment by offset and by timestamp, headers only.

A segment's indexes carry no checksum, so every entry a lookup starts from is
confirmed against the log: the batch at the entry's position must end at its
offset (a damaged base offset no longer does). An entry the log contradicts
is not used; the lookup walks from the segment's start, a warning names the
index file and ``index_wrong`` asks the owner to rebuild the indexes. Every
batch walked over is checked to follow the one before, so damage raises
``CorruptLogError`` instead of moving records. Kafka's ``LogSegment``
``translateOffset`` and ``findOffsetByTimestamp``, over ``BatchFile``'s walk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from .batch import BatchHeader
from .batchfile import BatchFile, check_follows
from .errors import CorruptLogError, ErrorKind
from .index import OffsetIndex, TimeIndex

logger = logging.getLogger("logstore.segment")


class SegmentLookups:
    """The lookups ``Segment`` inherits; it provides the file, the base and the indexes."""

    file: BatchFile
    base_offset: int
    index_path: str
    timeindex_path: str
    size: int
    #: Batches follow each other with no gap (a log never compacted).
    contiguous: bool
    #: Set when an index entry proved wrong: the owner rebuilds the indexes.
    index_wrong: bool
    max_index_bytes: int
    _offset_index: OffsetIndex | None  # None until loaded (``offset_index`` loads it)
    #: The last offset-index entry as peeked and confirmed by ``tail_entries`` (not loaded).
    _peeked: tuple[int, int] | None = None
    _peeked_valid = False

    @property
    def offset_index(self) -> OffsetIndex:
        raise NotImplementedError

    @property
    def time_index(self) -> TimeIndex:
        raise NotImplementedError

    @property
    def log_path(self) -> str:
        return self.file.path

    def read_header_at(self, position: int) -> BatchHeader | None:
        """The header of the batch at ``position``, or ``None`` if it is not a sane header."""
        return self.file.header_at(position)

    def iter_headers(self, start: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
        """Yield ``(position, header)`` of each batch in ``[start, end)``, no CRC check.

        Raises ``CorruptLogError`` at a header that is not sane (bad magic or
        length, or a batch running past ``end``).
        """
        for position, header, _, _ in self.file.iter_batches(
            start, end, verify_crc=False, headers_only=True
        ):
            yield position, header

    def index_lookup(self, offset: int) -> tuple[int, int]:
        """``offset_index.lookup``, from the peeked last entry while the index is not loaded.

        At or past the last entry the answer is that entry, so a read of the
        tail after an open (the last record) loads no index.
        """
        if self._offset_index is None and self._peeked_valid:
            if self._peeked is None:
                return self.base_offset, 0
            if offset >= self._peeked[0]:
                return self._peeked
        return self.offset_index.lookup(offset)

    def tail_entries(self) -> tuple[int, int, tuple[int, int] | None]:
        """``(position, lowest base offset)`` to walk the tail from, and the last time entry.

        What an open needs of the indexes. When they are not loaded yet, only
        their last entries are read and confirmed against the log (the offset
        entry's batch ends at its offset; the time entry's batch has that
        timestamp as its largest); the whole indexes load, and are checked, on
        first use. Anything a peek cannot confirm loads them now.
        """
        if self._offset_index is None:
            peeked = self._peek_tail()
            if peeked is not None:
                return peeked
        entry = self.offset_index.last_entry()
        position, next_offset = (
            (0, self.base_offset) if entry is None else self.walk_start(entry[0])
        )
        return position, next_offset, self.time_index.last_entry()

    def _peek_tail(self) -> tuple[int, int, tuple[int, int] | None] | None:
        limit = self.max_index_bytes
        entry = OffsetIndex(self.index_path, self.base_offset, max_index_bytes=limit).peek_last()
        last_time = TimeIndex(
            self.timeindex_path, self.base_offset, max_index_bytes=limit
        ).peek_last()
        if entry is False or last_time is False:
            return None
        position, next_offset = 0, self.base_offset
        if entry is not None:
            assert not isinstance(entry, bool)
            header = self.read_header_at(entry[1])
            if header is None or header.last_offset != entry[0]:
                return None  # the full load finds the index wrong and rebuilds it
            position, next_offset = entry[1], header.base_offset
        if last_time is not None:
            assert not isinstance(last_time, bool)
            timestamp, offset = last_time
            if entry is not None and offset < entry[0]:
                return None  # its batch lies before the offset entry's: confirmed by a full load
            holds = False
            try:
                for _, header in self.iter_headers(position, self.size):
                    if header.last_offset >= offset:
                        holds = header.last_offset == offset and header.max_timestamp == timestamp
                        break
            except CorruptLogError:
                return None  # the tail walk after the full load reports it
            if not holds:
                return None
        self._peeked, self._peeked_valid = entry, True
        return position, next_offset, last_time

    def walk_start(self, offset: int) -> tuple[int, int]:
        """``(position, lowest base offset)`` to walk from toward ``offset``, from the offset index.

        The index carries no checksum, so its entry is confirmed against the
        log: the batch at its position must end at its offset. A batch whose
        base offset was damaged no longer ends there either, so a confirmed
        entry also vouches for that batch's base. An entry the log contradicts
        is not used: the walk starts at byte 0, a warning names the index file
        and ``index_wrong`` asks the owner to rebuild the indexes.
        """
        entry_offset, position = self.index_lookup(offset)
        if not position:
            return 0, self.base_offset
        header = self.read_header_at(position)
        if header is not None and header.last_offset == entry_offset:
            return position, header.base_offset
        self.distrust_index(self.index_path, f"entry ({entry_offset}, {position})")
        return 0, self.base_offset

    def distrust_index(self, path: str, what: str) -> None:
        """Warn that an index entry is wrong (the log says otherwise) and ask for a rebuild."""
        logger.warning("%s: %s does not match the log; reading without it", path, what)
        self.index_wrong = True

    def find_position(
        self, offset: int, end: int, *, end_offset: int | None = None
    ) -> tuple[int, BatchHeader | None]:
        """Position of the first batch (below ``end``) whose last offset >= ``offset``.

        Returns ``(end, None)`` when no such batch exists. The walk starts at
        the offset index's entry, confirmed as ``walk_start`` does but with the
        walk's own first header; an entry the log contradicts is not used.
        Every batch on the way is checked to follow the one before
        (``check_follows``, with ``end_offset`` the next segment's base offset),
        so a damaged base offset raises ``CorruptLogError`` instead of moving records.
        """
        entry_offset, position = self.index_lookup(offset)
        path, contiguous = self.log_path, self.contiguous
        headers = self.iter_headers(position, end)
        expected = self.base_offset
        if position:
            # Confirm the entry with the walk's own first header (no extra read).
            try:
                pos, header = next(headers)
            except (CorruptLogError, StopIteration):
                header = None  # not a batch boundary, or past the end: the entry is wrong
            if header is None or header.last_offset != entry_offset:
                self.distrust_index(self.index_path, f"entry ({entry_offset}, {position})")
                headers = self.iter_headers(0, end)
            else:
                expected = check_follows(
                    header, header.base_offset, path, pos, end_offset=end_offset
                )
                if header.last_offset >= offset:
                    return pos, header
        for pos, header in headers:
            expected = check_follows(
                header, expected, path, pos, contiguous=contiguous, end_offset=end_offset
            )
            if header.last_offset >= offset:
                return pos, header
        return end, None

    def confirm_time_entry(
        self, entry: tuple[int, int], previous: tuple[int, int] | None, end: int, *, end_offset: int
    ) -> tuple[int, BatchHeader] | None:
        """Position and header of the batch a time-index entry names, if the log agrees.

        An entry ``(T, O)`` says: the batch ending at ``O`` is the first to
        reach timestamp ``T``. Checked from the ``previous`` entry's batch on
        (from the start without one): every batch in between is earlier than
        ``T``, and the batch ending at ``O`` has ``T`` as its largest. That is
        the entry's claim given the previous entry's, and it includes "the
        batch before the answer is earlier than the asked time". ``None`` when
        the log says otherwise. Headers only, below position ``end``.
        """
        timestamp, offset = entry
        position, expected = 0, self.base_offset
        if previous is not None:
            position, header = self.find_position(previous[1] + 1, end, end_offset=end_offset)
            if header is None:
                return None
            expected = header.base_offset
        path, contiguous = self.log_path, self.contiguous
        for pos, header in self.iter_headers(position, end):
            expected = check_follows(
                header, expected, path, pos, contiguous=contiguous, end_offset=end_offset
            )
            if header.last_offset >= offset:
                if header.last_offset == offset and header.max_timestamp == timestamp:
                    return pos, header
                return None
            if header.max_timestamp >= timestamp:
                return None
        return None

    def time_entry_holds(self, timestamp: int, offset: int, end: int) -> bool:
        """Whether a batch (below position ``end``) ends at ``offset`` with ``timestamp`` its largest.

        That is what a time-index entry ``(timestamp, offset)`` says of the log.
        Raises ``CorruptLogError`` if the log itself fails its checks on the way.
        """
        position, _ = self.walk_start(offset)
        for _, header in self.iter_headers(position, end):
            if header.last_offset >= offset:
                return header.last_offset == offset and header.max_timestamp == timestamp
        return False

    def check_last_index_entry(self) -> None:
        """The last entry of each index must say what the log says (they carry no checksum).

        The last offset-index entry must point at a batch ending at its offset;
        the batch ending at the last time-index entry's offset must have that
        entry's timestamp as its largest (it is the batch that first reached
        it). Retention and ``offset_for_timestamp`` trust that last entry.
        """
        entry = self.offset_index.last_entry()
        if entry is not None:
            last_offset, position = entry
            header = self.read_header_at(position)
            if header is None or header.last_offset != last_offset:
                raise CorruptLogError(
                    f"last entry ({last_offset}, {position}) does not match the log",
                    self.index_path,
                    kind=ErrorKind.INVALID_INDEX,
                )
        time_entry = self.time_index.last_entry()
        if time_entry is not None:
            timestamp, offset = time_entry
            if not self.time_entry_holds(timestamp, offset, self.size):
                raise CorruptLogError(
                    f"last entry ({timestamp}, {offset}) does not match the log",
                    self.timeindex_path,
                    kind=ErrorKind.INVALID_INDEX,
                )
