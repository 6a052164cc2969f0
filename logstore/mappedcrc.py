"""CRC-32C of stored batches read through a read-only mapping: no copy of their bytes.

What ``batch_ranges`` needs to keep the promise ``read_batches`` keeps (no
batch that fails its CRC is served) without reading the bytes it hands to
``sendfile``: the range of a file is mapped (``mmap``, read-only, its offset
rounded down to ``mmap.ALLOCATIONGRANULARITY``) and ``crc32c`` runs over a
``memoryview`` of each batch in the page cache itself (it releases the GIL
over large buffers; the faulting in, which cannot, goes in small pieces). Knows a batch's length prefix and where its CRC lies;
not files, segments, locks or what to do with a failure (the caller's
checking walk says what is wrong).

Touching a mapped page that the file no longer holds, or that the disk cannot
give back, raises ``SIGBUS`` (the process dies) where ``pread`` would have
raised ``OSError``. So the caller holds off truncation while checking (and
checks the file's size first), and the pages are faulted in first with
``madvise(MADV_POPULATE_READ)`` (Linux 5.14), which reports those failures as
an ``OSError`` instead; here that is a ``False``, and the walk then reads the
bytes with ``pread`` and raises as ``read_batches`` would.
"""

from __future__ import annotations

import errno
import mmap
import struct
import sys

import crc32c

from .batch import LOG_OVERHEAD

#: Batch length (bytes 8..12) and stored CRC (bytes 17..21) of a v2 batch.
_LENGTH_AND_CRC = struct.Struct(">8xi5xI")
#: The CRC covers the batch from its attributes (byte 21) to its end.
_CRC_FROM = 21
#: ``madvise`` advice that faults a mapping in and fails where an access would fault.
_MADV_POPULATE_READ: int | None = getattr(
    mmap, "MADV_POPULATE_READ", 22 if sys.platform.startswith("linux") else None
)

#: Bytes faulted in per ``madvise``: a stall of the GIL stays one small read long.
_POPULATE_PIECE = 256 * 1024


def batches_hold_crc(fd: int, position: int, length: int) -> bool:
    """Whether the batches filling ``[position, position + length)`` of ``fd`` hold their CRC.

    ``False`` too when a length prefix does not tile the range or the pages
    could not be faulted in. The caller makes sure the file holds the range
    and stays that long while this runs.
    """
    if length <= 0:
        return True
    aligned = position - position % mmap.ALLOCATIONGRANULARITY
    start, end = position - aligned, position + length - aligned
    with mmap.mmap(fd, end, access=mmap.ACCESS_READ, offset=aligned) as mapped:
        if not _populate(mapped):
            return False
        with memoryview(mapped) as view:
            return _crcs_hold(view, start, end)


def _populate(mapped: mmap.mmap) -> bool:
    """Fault the mapping in now; ``False`` where touching it would raise ``SIGBUS``.

    In pieces: ``mmap.madvise`` holds the GIL, and pages not in the page
    cache are read from the disk under it, which would stall the server's
    event loop for the whole range; between pieces the GIL can change hands.
    """
    if _MADV_POPULATE_READ is None:  # pragma: no cover - not on Linux
        return True
    size = len(mapped)
    try:
        for start in range(0, size, _POPULATE_PIECE):
            mapped.madvise(_MADV_POPULATE_READ, start, min(_POPULATE_PIECE, size - start))
    except OSError as exc:
        # EINVAL: a kernel before 5.14 (the pages are faulted in as the CRC runs).
        return exc.errno == errno.EINVAL
    return True


def _crcs_hold(view: memoryview, pos: int, end: int) -> bool:
    while pos < end:
        if end - pos < _CRC_FROM:
            return False
        batch_length, stored = _LENGTH_AND_CRC.unpack_from(view, pos)
        whole = LOG_OVERHEAD + batch_length
        if whole < _CRC_FROM or whole > end - pos:
            return False
        if crc32c.crc32c(view[pos + _CRC_FROM : pos + whole]) != stored:
            return False
        pos += whole
    return True
