"""``BatchFile``: one ``.log`` file of stored batches (Kafka's ``FileRecords``).

Owns the file handle and its place in the owner's ``HandleCache``, positioned
reads and writes (``pread``/``pwrite``, truncate, fsync), and the ONE chunked
walk over the batches it stores (``iter_batches``), which recovery, reads,
the cleaner, ``verify`` and ``inspect`` all use. Knows batch *headers* and
their offset rules (``check_follows``); knows nothing of indexes, segments'
roles or records. Positions in its errors are absolute positions in the file.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator

import crc32c

from . import batch
from ._fs import (
    HandleCache,
    Writable,
    fsync_data,
    start_writeback,
    write_all,
    write_size,
)
from ._native import speedups
from .batch import HEADER_SIZE, LOG_OVERHEAD, BatchHeader
from .errors import CorruptLogError, ErrorKind
from .rangecrc import batches_hold_crc

#: Read size for scans and recovery: large enough to amortise the syscall,
#: small enough that a scan's memory stays flat.
CHUNK_BYTES = 1 << 20
#: Appended bytes handed to the kernel's writeback at a time (``BatchFile.append``).
WRITEBACK_BYTES = 4 << 20
#: Read size of a headers-only walk: headers are 61 bytes, bodies are skipped.
HEADER_CHUNK_BYTES = 64 * 1024
_CRC_FROM = 21
#: What ``read_stored`` checks of each batch: base offset, length, magic, CRC,
#: last offset delta (the record count is at byte 57).
_STORED = struct.Struct(">qi4xbIxxi")
_PREFIX = struct.Struct(">8xi")
_COUNT = struct.Struct(">i")
#: Length prefixes ``read_stored`` reads to size its one copy exactly.
STORED_MAX_HOPS = 64
#: ``read_stored``'s status: every byte available served; the budget ended the
#: batches; anything else (damage, a torn batch, a file shorter than the
#: snapshot): walk again with ``iter_batches``, which says what is wrong.
STORED_ALL, STORED_BUDGET, STORED_OTHER = 0, 1, 2


def _py_read_stored(
    fd: int,
    position: int,
    available: int,
    budget: int,
    at_least_one: bool,
    expected: int,
    end_offset: int,
    crc: Callable[[memoryview], int] | None,
) -> tuple[bytes, int, int]:
    """``_speedups.read_stored``: ``(whole checked batches, next expected offset, status)``.

    The batches from ``position`` that fit in ``budget`` (the first whatever
    its size with ``at_least_one``), within the ``available`` bytes there,
    found by their length prefixes (at most ``STORED_MAX_HOPS`` small reads)
    and read with one ``pread`` of exactly their size: no copy after the
    kernel's. Past the hops the rest is read to the budget and sliced.
    Each batch kept is a sane v2 batch starting exactly at ``expected``,
    ending below ``end_offset``, holding its CRC-32C when ``crc`` is given.
    """
    if position < 0 or available < 0:
        raise ValueError("negative position or size")
    span, size = 0, -1
    for _ in range(STORED_MAX_HOPS):
        if span >= available:
            break
        prefix = _pread_all(fd, 12, position + span)
        if len(prefix) < 12:
            break
        (length,) = _PREFIX.unpack(prefix)
        whole = LOG_OVERHEAD + length
        if length < batch.MIN_BATCH_LENGTH or whole > available - span:
            break
        if span + whole > budget and not (span == 0 and at_least_one):
            size = span
            break
        span += whole
    exact = size >= 0
    if not exact:
        size = span if span == available else (min(budget, available) if budget > span else span)
    data = _pread_all(fd, size, position)
    got, pos, status = len(data), 0, STORED_OTHER
    view = memoryview(data)
    while True:
        left = got - pos
        if pos == available:
            status = STORED_ALL
            break
        if left < 12:
            if (
                got == size < available
                and (exact or size >= budget)
                and (pos > 0 or not at_least_one)
            ):
                status = STORED_BUDGET
            break
        (length,) = _PREFIX.unpack_from(view, pos)
        whole = LOG_OVERHEAD + length
        if length < batch.MIN_BATCH_LENGTH or whole > available - pos:
            break
        if whole > left or left < HEADER_SIZE:
            if got == size and pos + whole > budget and (pos > 0 or not at_least_one):
                status = STORED_BUDGET
            break
        base, length, magic, stored, delta = _STORED.unpack_from(view, pos)
        (count,) = _COUNT.unpack_from(view, pos + 57)
        if magic != 2 or delta < 0 or count < 0 or base != expected or base + delta >= end_offset:
            break
        if crc is not None and crc(view[pos + _CRC_FROM : pos + whole]) != stored:
            break
        expected = base + delta + 1
        pos += whole
    view.release()
    return (data if pos == got else data[:pos]), expected, status


def _pread_all(fd: int, size: int, position: int) -> bytes:
    """``size`` bytes at ``position`` (fewer only at the end of the file)."""
    data = os.pread(fd, size, position) if size else b""
    while 0 < len(data) < size:  # a short read before the end: read on
        more = os.pread(fd, size - len(data), position + len(data))
        if not more:
            break
        data += more
    return data


def check_follows(
    header: BatchHeader,
    expected: int,
    path: str,
    position: int,
    *,
    contiguous: bool = False,
    end_offset: int | None = None,
) -> int:
    """The offset expected after ``header``; raise unless its offsets fit where it lies.

    ``expected`` is the lowest base offset the batch may have: the previous
    batch's next offset or, for the first batch of a segment, the segment's
    base offset (its file's name). Batches never overlap or go back; in a log
    that was never compacted each starts exactly at ``expected``.
    ``end_offset`` (the next segment's base offset, or the log's end) bounds
    the batch's last offset. The base offset is outside the CRC: these integer
    comparisons, once per batch, are what catch damage to it.
    """
    base = header.base_offset
    if base < expected:
        raise CorruptLogError(
            f"batch base offset {base} overlaps or goes back (expected at least {expected})",
            path,
            position,
            kind=ErrorKind.OFFSET_MISMATCH,
        )
    if contiguous and base != expected:
        raise CorruptLogError(
            f"batch base offset {base} does not follow offset {expected - 1} "
            "(a gap in a log that was never compacted)",
            path,
            position,
            kind=ErrorKind.OFFSET_MISMATCH,
        )
    next_offset = header.next_offset
    if end_offset is not None and next_offset > end_offset:
        raise CorruptLogError(
            f"batch offsets {base}..{next_offset - 1} reach past offset {end_offset - 1}, "
            "the last one before the next segment (or the end of the log)",
            path,
            position,
            kind=ErrorKind.OFFSET_MISMATCH,
        )
    return next_offset


def check_segment_start(
    previous_next: int | None, base_offset: int, path: str, *, contiguous: bool
) -> int:
    """The lowest base offset of a segment's first batch: its file's base offset.

    ``previous_next`` is the offset after the previous segment's last batch,
    when known. In a log that was never compacted it must be exactly this
    segment's base offset (a gap means the previous segment lost its tail).
    """
    if previous_next is not None and (
        previous_next > base_offset or (contiguous and previous_next != base_offset)
    ):
        raise CorruptLogError(
            f"segment base offset {base_offset} does not follow the previous segment, "
            f"which ends at offset {previous_next - 1}",
            path,
            0,
            kind=ErrorKind.OFFSET_MISMATCH,
        )
    return base_offset


class BatchFile:
    """The ``.log`` file at ``path``: its handle, positioned I/O and the batch walk.

    The handle opens on first use (read-write when ``writable``) and joins the
    owner's ``HandleCache``, which may close it again (``evict``) when too
    many are open; the next use reopens it. Every use holds ``lock``, so the
    cache never closes a handle under a read, a write or an fsync.
    """

    def __init__(self, path: str, *, writable: bool = False) -> None:
        self.path = path
        self.writable = writable
        self.lock = threading.Lock()
        self.handles: HandleCache | None = None  # set by adopt to bound open files
        # Until its data is fsynced, keep the handle that wrote it: a writeback
        # error is reported only to handles open when it happened.
        self.keep_open_until_flushed = True
        self.unflushed = False  # written to since the last fsync
        self.broken = False  # a failed write could not be cut back: garbage may follow
        self.detached = False  # files about to go: pinned open, out of the cache
        self._fd: int | None = None
        self._writeback_from: int | None = None  # first byte appended and not yet handed over

    # ------------------------------------------------------------ the handle

    @classmethod
    def create(cls, path: str) -> BatchFile:
        """Create (or empty) the file, writable (the caller fsyncs the directory)."""
        file = cls(path, writable=True)
        file._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        return file

    def fd(self) -> int:
        """The handle, opened on first use; the caller holds ``lock``."""
        fd = self._fd
        if fd is None:
            fd = self._fd = os.open(self.path, os.O_RDWR if self.writable else os.O_RDONLY)
            if self.handles is not None and not self.detached:
                self.handles.opened(self)
        elif self.handles is not None and not self.detached:
            self.handles.touch(self)
        return fd

    def adopt(self, handles: HandleCache | None, *, keep_open_until_flushed: bool) -> None:
        """Join an owner's handle cache, which bounds the open handles of all its files."""
        self.handles = handles
        self.keep_open_until_flushed = keep_open_until_flushed
        if handles is not None and self._fd is not None and not self.detached:
            handles.opened(self)

    def evict(self) -> bool:
        """Close the handle for the handle cache, unless it is in use or must stay open.

        Declines while a read or write holds the handle, and while data it
        wrote waits for an fsync that should see its errors. A detached
        file (about to be unlinked) has left the cache.
        """
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.unflushed and self.keep_open_until_flushed:
                return False
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)
            return True
        finally:
            self.lock.release()

    def close(self) -> None:
        """Release the handle (reopened on the next use)."""
        with self.lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)
                if self.handles is not None:
                    self.handles.closed(self)

    def reopen(self, *, writable: bool) -> None:
        """Close the handle and reopen it (on next use) read-write or read-only."""
        self.close()
        self.writable = writable

    def detach(self) -> None:
        """Open the handle and pin it: the files are about to be renamed and unlinked.

        A reader that snapshotted the owner keeps reading through this handle;
        the data lives until the last reader drops the object (``__del__``).
        """
        with self.lock:  # the handle cache must not close it between open and pin
            self.fd()
            self.detached = True
        if self.handles is not None:
            self.handles.closed(self)

    def __del__(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    # ------------------------------------------------------------ positioned I/O

    def read(self, position: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``position`` (fewer at the end of the file)."""
        with self.lock:
            return os.pread(self.fd(), size, position)

    def read_stored(
        self,
        position: int,
        available: int,
        budget: int,
        *,
        at_least_one: bool,
        expected: int,
        end_offset: int,
        verify_crc: bool,
    ) -> tuple[bytes, int, int]:
        """Whole batches from ``position`` within ``budget`` bytes, checked, in one copy.

        ``(bytes, next expected base offset, status)`` (``_py_read_stored``):
        the batches of the ``available`` bytes at ``position`` that start
        exactly at ``expected`` (a log never compacted), end below
        ``end_offset`` and hold their CRC (``verify_crc``). A fetch's fast
        path (``Log.read_batches``); ``STORED_OTHER`` asks for the checking walk.
        """
        crc = crc32c.crc32c if verify_crc else None
        with self.lock:
            result = _read_stored(
                self.fd(), position, available, budget, at_least_one, expected, end_offset, crc
            )
        return result

    def crcs_hold(self, fd: int, position: int, length: int) -> bool:
        """Whether the batches in ``[position, position + length)`` of ``fd`` (a ``dup``
        of this file) hold their CRC-32C (``rangecrc``: read through a small buffer).

        Under ``lock``, after checking the file still holds the range: this
        file's truncation (which takes the lock) cannot change the bytes
        mid-check. ``False`` at any doubt; the checking walk then says what is
        wrong.
        """
        with self.lock:
            if os.fstat(fd).st_size < position + length:
                return False
            return batches_hold_crc(fd, position, length)

    def dup(self) -> int:
        """A new descriptor of this file: it stays open and names these bytes whatever
        happens to the handle (the cache closing it) or the path (an unlink, a rename)."""
        with self.lock:
            return os.dup(self.fd())

    def append(self, data: Writable, position: int) -> None:
        """Write ``data`` at ``position`` (the end); on failure cut back and re-raise.

        If the cut fails too, ``broken`` is set: garbage may follow the last
        batch and the owner must stop appending.
        """
        with self.lock:
            fd = self.fd()
            try:
                write_all(fd, data, position)
            except OSError:
                try:
                    os.ftruncate(fd, position)
                except OSError:
                    self.broken = True
                raise
            self.unflushed = True
            self._maybe_start_writeback(fd, position, write_size(data))

    def _maybe_start_writeback(self, fd: int, position: int, size: int) -> None:
        """Hand appended bytes to the kernel's writeback once ``WRITEBACK_BYTES`` gathered.

        So the fsync of a close (or of ``fsync="interval"``) finds most of them
        already written instead of waiting for all of them.
        """
        start = self._writeback_from
        if start is None or start > position:
            start = position
        end = position + size
        if end - start >= WRITEBACK_BYTES:
            start_writeback(fd, start, end - start)
            start = end
        self._writeback_from = start

    def overwrite(self, position: int, data: bytes) -> None:
        """Write ``data`` at ``position`` (inside the file) and fsync (truncation's rewrite)."""
        with self.lock:
            write_all(self.fd(), data, position)
            self.unflushed = True
        self.flush()

    def truncate(self, position: int) -> None:
        """Cut the file at ``position`` (through the handle when writable).

        Under ``lock`` either way: ``crcs_hold`` maps the file under it.
        """
        with self.lock:
            if self.writable:
                os.ftruncate(self.fd(), position)
            else:
                os.truncate(self.path, position)

    def flush(self) -> None:
        """fsync the data (the handle cache must not close the handle under it)."""
        with self.lock:
            fsync_data(self.fd())
            self.unflushed = False

    def size_on_disk(self) -> int:
        return os.stat(self.path).st_size

    def header_at(self, position: int) -> BatchHeader | None:
        """The header of the batch at ``position``, or ``None`` if it is not a sane header."""
        data = self.read(position, HEADER_SIZE)
        if len(data) < HEADER_SIZE:
            return None
        header = batch.peek_header(data)
        if header.magic != 2 or header.batch_length < batch.MIN_BATCH_LENGTH:
            return None
        return header

    # ------------------------------------------------------------ the walk

    def iter_batches(
        self,
        start: int,
        end: int,
        *,
        verify_crc: bool,
        headers_only: bool = False,
        chunk_bytes: int = CHUNK_BYTES,
        max_read: int | None = None,
        check_offsets_from: int | None = None,
        contiguous: bool = False,
        budget: int | None = None,
        at_least_one: bool = True,
    ) -> Iterator[tuple[int, BatchHeader, bytes, int]]:
        """Yield ``(position, header, buffer, offset_in_buffer)`` of each batch in ``[start, end)``.

        The one walk over stored batches. Reads ``chunk_bytes`` first, then
        twice as much at each refill up to ``CHUNK_BYTES``: a short read (a
        consumer's poll) does not pull a megabyte, a long one makes few calls.
        A batch straddling a chunk is read whole, so ``buffer[offset:]``
        holds it; past ``max_read`` bytes (recovery: memory stays flat
        whatever a batch's size) its CRC is computed in pieces instead and the
        buffer yielded is empty.

        ``headers_only`` reads 64 KiB chunks and skips bodies: headers are
        checked for sanity (magic, length, within ``end``), never the CRC, and
        the buffer may not hold the body. ``check_offsets_from`` (a walk from
        position 0: the segment's base offset) checks each batch's offsets
        with ``check_follows``. Raises ``CorruptLogError`` (this file, absolute
        position) at the first bad batch; a zero run that is followed by
        other bytes before ``end`` is ``invalid_length``, not ``zero_fill``.

        ``budget`` (a fetch: bytes it may serve) ends the walk before the
        first batch that would take the batches yielded past it, before that
        batch is read: a bounded read pulls from disk only what it serves
        (the batch straddling a chunk's end is not read again just to be
        dropped). With ``at_least_one`` the walk's first batch is yielded
        whatever its size.
        """
        path = self.path
        expected = check_offsets_from
        position = start
        buf = b""
        buf_start = start
        assert budget is None or not headers_only
        stop = None if budget is None else start + budget
        # Whether the batch at ``position`` may pass ``stop``: the first one, if asked.
        free = at_least_one
        if headers_only:
            chunk_bytes = HEADER_CHUNK_BYTES
        while position < end:
            rel = position - buf_start
            if rel + HEADER_SIZE > len(buf):
                buf_start, rel = position, 0
                want = min(end - position, chunk_bytes)
                if stop is not None and not free:
                    if stop - position < HEADER_SIZE:
                        return  # not even a header fits: nothing more is served
                    want = min(want, stop - position)
                buf = self.read(position, want)
                if not headers_only:
                    chunk_bytes = min(chunk_bytes * 2, max(chunk_bytes, CHUNK_BYTES))
            if headers_only:
                header = self._sane_header(buf, rel, position, buf_start, end)
            else:
                if rel + HEADER_SIZE <= len(buf):
                    header = batch.peek_header(buf, rel)
                    size = LOG_OVERHEAD + header.batch_length
                    if stop is not None and not free and position + size > stop:
                        return  # past the budget: not read (a next walk starts here)
                    if rel + size > len(buf) and HEADER_SIZE <= size <= end - position:
                        if max_read is not None and size > max_read and header.magic == 2:
                            # Larger than a chunk: CRC it in pieces, never whole in memory.
                            if verify_crc:
                                self._check_crc_in_pieces(position, header)
                            buf, buf_start = b"", position + size
                            yield position, header, buf, 0
                            position += size
                            continue
                        # Straddles the chunk (or is larger than one): read it whole.
                        buf_start, rel = position, 0
                        buf = self.read(position, min(max(size, chunk_bytes), end - position))
                try:
                    header = batch.read_header(buf, rel, verify_crc=verify_crc)
                except CorruptLogError as exc:
                    if exc.kind == ErrorKind.ZERO_FILL and not self._is_zero(position, end):
                        exc = CorruptLogError(
                            exc.reason, kind=ErrorKind.INVALID_LENGTH, position=rel
                        )
                    raise exc.located(path, buf_start) from None
            if expected is not None:
                expected = check_follows(header, expected, path, position, contiguous=contiguous)
            yield position, header, buf, rel
            position += header.size
            free = False

    def _sane_header(
        self, buf: bytes, rel: int, position: int, buf_start: int, end: int
    ) -> BatchHeader:
        """The header at ``buf[rel]`` if sane (magic 2, length, within ``end``); else raise."""
        if rel + HEADER_SIZE > len(buf):
            raise CorruptLogError(
                f"{len(buf) - rel} bytes left, too few for a batch header",
                self.path,
                position,
                kind=ErrorKind.TRUNCATED,
            )
        header = batch.peek_header(buf, rel)
        if header.magic != 2 or header.batch_length < batch.MIN_BATCH_LENGTH:
            try:
                batch.read_header(buf, rel, verify_crc=False)
            except CorruptLogError as exc:
                raise exc.located(self.path, buf_start) from None
        size = LOG_OVERHEAD + header.batch_length
        if position + size > end:
            raise CorruptLogError(
                f"batch of {size} bytes runs past the end of the data ({end - position} bytes left)",
                self.path,
                position,
                kind=ErrorKind.TRUNCATED,
            )
        return header

    def _is_zero(self, position: int, end: int) -> bool:
        """Whether every byte from ``position`` to ``end`` is zero."""
        while position < end:
            piece = self.read(position, min(CHUNK_BYTES, end - position))
            if not piece:
                return True
            if any(piece):
                return False
            position += len(piece)
        return True

    def _check_crc_in_pieces(self, position: int, header: BatchHeader) -> None:
        crc = 0
        at, end = position + _CRC_FROM, position + header.size
        while at < end:
            piece = self.read(at, min(CHUNK_BYTES, end - at))
            if not piece:
                raise CorruptLogError(
                    "file shrank while reading", self.path, at, kind=ErrorKind.TRUNCATED
                )
            crc = crc32c.crc32c(piece, crc)
            at += len(piece)
        if crc != header.crc:
            raise CorruptLogError(
                f"CRC mismatch: stored {header.crc:#010x}, computed {crc:#010x}",
                self.path,
                position,
                kind=ErrorKind.CRC_MISMATCH,
            )


_read_stored = _py_read_stored if speedups is None else speedups.read_stored
