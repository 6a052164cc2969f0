"""``FileRanges``: stored batches as ranges of open files, for a socket's ``sendfile``.

What ``Log.batch_ranges`` hands a server (Kafka's ``FileRecords.slice``, sent
with ``transferTo``): the bytes ``read_batches`` would return, as
``(descriptor, position, length)`` ranges of the segment files. Each
descriptor is a duplicate owned by this object, so the bytes it names stay
readable while it is held, whatever the log does meanwhile: retention unlinking
a segment or compaction swapping in a new file leaves the old inode open
(Linux keeps an unlinked open file readable). Knows nothing of logs, batches
or sockets.
"""

from __future__ import annotations

import errno
import os

from ._fs import Closing


class FileRanges(Closing):
    """Consecutive ranges of open files; ``len()`` is their total size.

    Close it (or use it as a context manager) once sent: it holds one
    descriptor per segment it spans. A file cut shorter under it (a
    ``Log.truncate`` below its end) makes ``read`` raise rather than return
    fewer bytes, and a sender must likewise fail rather than send fewer
    bytes than ``size`` announced.
    """

    __slots__ = ("_fds", "ranges", "size")

    def __init__(self, ranges: list[tuple[int, int, int]], fds: list[int]) -> None:
        #: ``(descriptor, position, length)`` per range, in order.
        self.ranges = ranges
        #: Bytes of all ranges.
        self.size = sum(length for _, _, length in ranges)
        self._fds = fds

    def __len__(self) -> int:
        return self.size

    def read(self) -> bytes:
        """All the ranges' bytes (for a socket ``sendfile`` cannot serve, e.g. TLS).

        Raises:
            OSError: a file ended before its range did (``EIO``), or the read failed.
        """
        pieces = []
        for fd, position, length in self.ranges:
            data = os.pread(fd, length, position)
            while len(data) < length:
                more = os.pread(fd, length - len(data), position + len(data))
                if not more:
                    raise OSError(
                        errno.EIO,
                        f"stored batches shortened under a read: {len(data)} of {length} "
                        f"bytes at position {position}",
                    )
                data += more
            pieces.append(data)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def will_need(self) -> None:
        """Ask the kernel to read the ranges into the page cache now, without waiting.

        ``sendfile`` runs on the event loop's thread, and bytes not in the
        page cache make it wait for the disk there (as Kafka's network threads
        do). ``POSIX_FADV_WILLNEED`` from the fetch's worker thread starts
        those reads early; what has not arrived when it is sent is still waited for.
        """
        advise = getattr(os, "posix_fadvise", None)
        if advise is None:  # pragma: no cover - not on Linux
            return
        for fd, position, length in self.ranges:
            advise(fd, position, length, os.POSIX_FADV_WILLNEED)

    def close(self) -> None:
        """Release the descriptors; idempotent."""
        self._closed = True
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", ()):
            try:
                os.close(fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<FileRanges {len(self.ranges)} range(s), {self.size} bytes>"
