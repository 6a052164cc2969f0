"""Sparse offset and time indexes (``.index``, ``.timeindex``) in Kafka's layout.

See docs/FORMAT.md sections 6-7.

Integers only: an index never sees a record or a batch. Entries are mirrored in
``array``s so lookups bisect without unpacking.

    .index      entries of 8 bytes:  relative_offset int32 | position int32
    .timeindex  entries of 12 bytes: timestamp int64 | relative_offset int32

All big-endian. An offset-index entry ``(O, P)`` says "the batch starting at
byte P of the .log ends at offset O" (the *last* offset, as Kafka writes it).
A time-index entry ``(T, O)`` says "the largest timestamp up to the batch ending
at O is T". The file of the active segment is preallocated (zero-filled, sparse)
to ``max_index_bytes`` and trimmed to its entries on roll and on close, so a
crashed process leaves a zero tail: entries are counted from the data, never
from the file size.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from bisect import bisect_right

from ._fs import write_all
from .errors import CorruptLogError, ErrorKind

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _entries_before_padding(data: bytes, entry_size: int) -> int | None:
    """Entries before the first all-zero one, if only zeros follow it; ``None`` if not.

    ``None`` sends the caller to its entry-by-entry check, which names the fault.
    """
    zero = bytes(entry_size)
    at = data.find(zero)
    while at != -1 and at % entry_size:  # zeros across two entries: not an entry
        at = data.find(zero, at + 1)
    if at == -1:
        return len(data) // entry_size
    if data.count(0, at) != len(data) - at:
        return None
    return at // entry_size


def _increasing(relative: array[int], positions: array[int], count: int, log_size: int) -> bool:
    """The offset index's sanity, for ``count`` entries: both columns rising, inside the log."""
    if not count:
        return True
    return (
        relative[0] >= 0
        and positions[0] >= 0
        and positions[count - 1] < log_size
        and _rising(relative[:count].tolist())
        and _rising(positions[:count].tolist())
    )


def _rising(values: list[int]) -> bool:
    """Strictly increasing: sorted, and no value twice (C-level passes, no Python loop)."""
    return values == sorted(values) and len(set(values)) == len(values)


def _time_columns(data: bytes) -> tuple[array[int], array[int]]:
    """The two columns of time-index entries (int64 timestamp, int32 offset, big-endian).

    Sliced as int32 words, without a Python loop: a timestamp is its two
    words in the machine's order, reinterpreted as one int64.
    """
    words = array("i", data)
    if sys.byteorder == "little":
        words.byteswap()
    pairs = array("i", bytes(len(words) // 3 * 8))
    high, low = words[0::3], words[1::3]
    pairs[0::2], pairs[1::2] = (low, high) if sys.byteorder == "little" else (high, low)
    stamps = array("q")
    stamps.frombytes(pairs.tobytes())
    return stamps, words[2::3]


class _Index:
    """What both indexes share: a fixed-width entry file, preallocation and trimming."""

    ENTRY_SIZE = 0

    def __init__(self, path: str, base_offset: int, *, max_index_bytes: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max_index_bytes // self.ENTRY_SIZE
        self._written = 0  # entries [0, _written) are in the file; the rest only in memory

    @property
    def entries(self) -> int:
        raise NotImplementedError

    def _open(self) -> int:
        """Open the file for writing (no handle is kept between writes: see the module doc).

        A file shorter than the entries counted as written (deleted or cut
        meanwhile) is rewritten from its first entry.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(fd).st_size < self._written * self.ENTRY_SIZE:
            self._written = 0
        return fd

    def preallocate(self) -> None:
        """Extend the file to its full size (zero-filled) so appends never grow it."""
        fd = self._open()
        try:
            os.ftruncate(fd, max(self.max_entries, self.entries) * self.ENTRY_SIZE)
        finally:
            os.close(fd)

    def peek_last(self) -> tuple[int, int] | bool | None:
        """The file's last entry without loading the rest: what an open needs of the tail.

        ``None`` for a file with no entries, ``False`` when a peek cannot tell (a
        zero tail, a partial entry or no file: the caller loads the whole index).
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            if size % self.ENTRY_SIZE:
                return False
            if not size:
                return None
            data = os.pread(fd, self.ENTRY_SIZE, size - self.ENTRY_SIZE)
        finally:
            os.close(fd)
        if len(data) != self.ENTRY_SIZE or not any(data):
            return False
        return self._decode_entry(data)

    def _decode_entry(self, data: bytes) -> tuple[int, int]:
        raise NotImplementedError

    def trim(self) -> None:
        """Write the pending entries, cut the file to exactly its entries, fsync.

        Runs on roll and close. The fsync matters for retention: a sealed
        segment's largest timestamp is its time index's last entry.
        """
        fd = self._open()
        try:
            self._write_pending(fd)
            os.ftruncate(fd, self.entries * self.ENTRY_SIZE)
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_all_entries(self) -> None:
        """Rewrite the whole file from memory (after a rebuild), trimmed, and fsync it.

        The fsync keeps a rebuilt index from being lost to a power loss after a
        clean-shutdown marker that says the indexes can be trusted.
        """
        fd = self._open()
        try:
            os.ftruncate(fd, 0)
            self._written = 0
            self._write_pending(fd)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_pending(self, fd: int) -> None:
        """Write the entries appended since the last write, in one ``pwrite``."""
        if self.entries > self._written:
            write_all(fd, self._encode(self._written), self._written * self.ENTRY_SIZE)
            self._written = self.entries

    def _forget_from(self, entry: int) -> None:
        """Entries from ``entry`` on were dropped in memory: zero any already written.

        The zeros keep the file's data showing the count (a zero entry ends them).
        """
        if self._written > entry:
            # Lowered first: even if zeroing fails, the next trim rewrites these
            # slots or cuts them off, and an unclean open rebuilds the index.
            stale, self._written = self._written, entry
            try:
                fd = os.open(self.path, os.O_WRONLY)
            except FileNotFoundError:
                self._written = 0  # gone: the next write rewrites it whole
                return
            try:
                write_all(fd, bytes((stale - entry) * self.ENTRY_SIZE), entry * self.ENTRY_SIZE)
            finally:
                os.close(fd)

    def _encode(self, start: int) -> bytes:
        """Entries from ``start`` on, in the file's layout."""
        raise NotImplementedError

    @property
    def is_full(self) -> bool:
        return self.entries >= self.max_entries


class OffsetIndex(_Index):
    """Relative offset -> byte position of the batch that ends there."""

    ENTRY_SIZE = _OFFSET_ENTRY.size

    def __init__(self, path: str, base_offset: int, *, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes=max_index_bytes)
        self._relative = array("i")
        self._positions = array("i")

    @property
    def entries(self) -> int:
        return len(self._relative)

    def load(self, log_size: int) -> None:
        """Read the file; raise ``CorruptLogError(kind=ErrorKind.INVALID_INDEX)`` if it is not sane.

        Sane: a whole number of entries, offsets and positions strictly increasing,
        every position inside the ``.log`` (of ``log_size`` bytes). A zero tail
        after the last entry (preallocation) ends the entries.
        """
        data = _read_file(self.path)
        if len(data) % self.ENTRY_SIZE:
            raise CorruptLogError(
                f"size {len(data)} is not a multiple of {self.ENTRY_SIZE}",
                self.path,
                kind=ErrorKind.INVALID_INDEX,
            )
        ints = array("i", data)
        if sys.byteorder == "little":
            ints.byteswap()
        relative, positions = ints[0::2], ints[1::2]
        count = _entries_before_padding(data, self.ENTRY_SIZE)
        if count is not None and _increasing(relative, positions, count, log_size):
            # The common case, checked in C-level passes; the loops below find
            # (and name) the first bad entry when there is one.
            self._relative = relative[:count]
            self._positions = positions[:count]
            self._written = count
            return
        count = len(relative)
        # The first batch of a segment never gets an entry, so (0, 0) is padding.
        for i in range(count):
            if relative[i] == 0 and positions[i] == 0:
                if any(ints[2 * i :]):
                    raise CorruptLogError(
                        f"entry {i} is zero but entries follow it",
                        self.path,
                        kind=ErrorKind.INVALID_INDEX,
                    )
                count = i
                break
        prev_rel = prev_pos = -1
        for i in range(count):
            rel, pos = relative[i], positions[i]
            if rel <= prev_rel or pos <= prev_pos or pos >= log_size or rel < 0:
                raise CorruptLogError(
                    f"entry {i} ({rel}, {pos}) is out of order or past the end of the log "
                    f"({log_size} bytes)",
                    self.path,
                    position=i * self.ENTRY_SIZE,
                    kind=ErrorKind.INVALID_INDEX,
                )
            prev_rel, prev_pos = rel, pos
        self._relative = relative[:count]
        self._positions = positions[:count]
        self._written = count

    def _decode_entry(self, data: bytes) -> tuple[int, int]:
        """``(absolute last offset, position)`` of one entry as stored."""
        rel, pos = _OFFSET_ENTRY.unpack(data)
        return self.base_offset + rel, pos

    def append(self, last_offset: int, position: int) -> None:
        """Add an entry (written behind: see the module docstring)."""
        self._relative.append(last_offset - self.base_offset)
        self._positions.append(position)

    def clear(self) -> None:
        self._relative = array("i")
        self._positions = array("i")
        self._written = 0  # the next write rewrites the file from its start

    def lookup(self, offset: int) -> tuple[int, int]:
        """``(last_offset, position)`` of the largest entry <= ``offset``; ``(base, 0)`` if none.

        The batch containing ``offset`` starts at or after the returned position.
        """
        i = bisect_right(self._relative, offset - self.base_offset)
        if i == 0:
            return self.base_offset, 0
        return self.base_offset + self._relative[i - 1], self._positions[i - 1]

    def last_entry(self) -> tuple[int, int] | None:
        if not self._relative:
            return None
        return self.base_offset + self._relative[-1], self._positions[-1]

    def truncate_to_position(self, position: int) -> None:
        """Drop entries pointing at or after ``position`` (the log is cut there)."""
        i = bisect_right(self._positions, position - 1)
        del self._relative[i:]
        del self._positions[i:]
        self._forget_from(i)

    def as_list(self) -> list[tuple[int, int]]:
        """Entries as ``(absolute last offset, position)``, for tests and diagnostics."""
        return [(self.base_offset + r, p) for r, p in zip(self._relative, self._positions)]

    def _encode(self, start: int) -> bytes:
        ints = array("i", bytes(8 * (len(self._relative) - start)))
        ints[0::2] = array("i", self._relative[start:])
        ints[1::2] = array("i", self._positions[start:])
        if sys.byteorder == "little":
            ints.byteswap()
        return ints.tobytes()


class TimeIndex(_Index):
    """Largest timestamp so far -> relative offset of the batch that first reached it."""

    ENTRY_SIZE = _TIME_ENTRY.size

    def __init__(self, path: str, base_offset: int, *, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes=max_index_bytes)
        self._timestamps = array("q")
        self._relative = array("i")

    @property
    def entries(self) -> int:
        return len(self._timestamps)

    @property
    def is_full(self) -> bool:
        # One slot is kept for the final entry written when the segment is sealed.
        return self.entries >= self.max_entries - 1

    def load(self, next_relative_offset: int | None = None) -> None:
        """Read the file; raise ``CorruptLogError(kind=ErrorKind.INVALID_INDEX)`` if it is not sane.

        Sane: timestamps strictly increasing, offsets non-decreasing and below
        ``next_relative_offset`` when given. A zero tail ends the entries.
        """
        data = _read_file(self.path)
        if len(data) % self.ENTRY_SIZE:
            raise CorruptLogError(
                f"size {len(data)} is not a multiple of {self.ENTRY_SIZE}",
                self.path,
                kind=ErrorKind.INVALID_INDEX,
            )
        count = _entries_before_padding(data, self.ENTRY_SIZE)
        if count is not None:
            stamps, offsets = _time_columns(data[: count * self.ENTRY_SIZE])
            if not count or (
                offsets[0] >= 0
                and stamps[0] > -(1 << 63)
                and (next_relative_offset is None or offsets[-1] < next_relative_offset)
                and _rising(stamps.tolist())
                and (listed := offsets.tolist()) == sorted(listed)
            ):
                self._timestamps, self._relative = stamps, offsets
                self._written = count
                return
        timestamps, relative = array("q"), array("i")
        prev_ts, prev_rel = -(1 << 63), -1
        for i, (ts, rel) in enumerate(_TIME_ENTRY.iter_unpack(data)):
            if ts == 0 and rel == 0:  # padding (a real (0, base) entry is only advisory)
                if any(data[i * self.ENTRY_SIZE :]):
                    raise CorruptLogError(
                        f"entry {i} is zero but entries follow it",
                        self.path,
                        kind=ErrorKind.INVALID_INDEX,
                    )
                break
            bad_next = next_relative_offset is not None and rel >= next_relative_offset
            if ts <= prev_ts or rel < prev_rel or rel < 0 or bad_next:
                raise CorruptLogError(
                    f"entry {i} ({ts}, {rel}) is out of order or past the end of the log",
                    self.path,
                    position=i * self.ENTRY_SIZE,
                    kind=ErrorKind.INVALID_INDEX,
                )
            timestamps.append(ts)
            relative.append(rel)
            prev_ts, prev_rel = ts, rel
        self._timestamps, self._relative = timestamps, relative
        self._written = len(timestamps)

    def _decode_entry(self, data: bytes) -> tuple[int, int]:
        """``(timestamp, absolute offset)`` of one entry as stored."""
        ts, rel = _TIME_ENTRY.unpack(data)
        return ts, self.base_offset + rel

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add ``(timestamp, offset)`` if ``timestamp`` exceeds the last entry's.

        As in Kafka, an empty index starts from "no timestamp" (-1), so records
        without timestamps never produce an entry.
        """
        if timestamp <= (self._timestamps[-1] if self._timestamps else -1):
            return
        self._timestamps.append(timestamp)
        self._relative.append(offset - self.base_offset)

    def clear(self) -> None:
        self._timestamps = array("q")
        self._relative = array("i")
        self._written = 0  # the next write rewrites the file from its start

    def lookup(self, timestamp: int) -> int:
        """Offset of the largest entry with timestamp <= ``timestamp``; the base offset if none."""
        entry = self.floor_entry(timestamp)
        return self.base_offset if entry is None else entry[1]

    def floor_entry(self, timestamp: int) -> tuple[int, int] | None:
        """``(timestamp, offset)`` of the largest entry with timestamp <= ``timestamp``, if any.

        The entry says the batch ending at that offset first reached that
        timestamp, and nothing before it is later: a caller confirms the first
        part against the log (the file has no checksum).
        """
        return self._entry(bisect_right(self._timestamps, timestamp) - 1)

    def entry_before_floor(self, timestamp: int) -> tuple[int, int] | None:
        """The entry before ``floor_entry(timestamp)``, if any (what confirms it starts from)."""
        return self._entry(bisect_right(self._timestamps, timestamp) - 2)

    def _entry(self, i: int) -> tuple[int, int] | None:
        if i < 0:
            return None
        return self._timestamps[i], self.base_offset + self._relative[i]

    def last_entry(self) -> tuple[int, int] | None:
        if not self._timestamps:
            return None
        return self._timestamps[-1], self.base_offset + self._relative[-1]

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries whose offset is >= ``offset``."""
        i = bisect_right(self._relative, offset - self.base_offset - 1)
        del self._timestamps[i:]
        del self._relative[i:]
        self._forget_from(i)

    def as_list(self) -> list[tuple[int, int]]:
        return [(t, self.base_offset + r) for t, r in zip(self._timestamps, self._relative)]

    def _encode(self, start: int) -> bytes:
        pack = _TIME_ENTRY.pack
        return b"".join(
            pack(t, r) for t, r in zip(self._timestamps[start:], self._relative[start:])
        )
