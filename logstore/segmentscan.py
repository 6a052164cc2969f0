"""The validating walk over one segment's ``.log``: recovery's check and index rebuild.

Reads every batch from position 0 with ``BatchFile``'s chunked walk, checks
it (length, magic, CRC-32C, offsets following each other) and builds fresh
indexes as it goes, stopping at the first problem. It changes no file: the
segment decides what to keep, the loader what to cut. Positions in its errors
are absolute positions in the ``.log``.
"""

from __future__ import annotations

from typing import NamedTuple

from ._varint import INT32_MAX
from .batchfile import CHUNK_BYTES, BatchFile, check_follows, check_segment_start
from .errors import CorruptLogError, ErrorKind
from .index import OffsetIndex, TimeIndex


class RecoveryResult(NamedTuple):
    """What validating a segment found: the valid prefix and the first problem."""

    valid_bytes: int
    file_bytes: int
    batches: int
    next_offset: int | None
    error: CorruptLogError | None

    @property
    def dropped_bytes(self) -> int:
        return self.file_bytes - self.valid_bytes


class ScanState(NamedTuple):
    """What a validating walk learnt besides its verdict: the segment's tail facts."""

    next_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    bytes_since_index_entry: int
    records: int
    first_timestamp: int | None


def scan(
    file: BatchFile,
    base_offset: int,
    index: OffsetIndex,
    tindex: TimeIndex,
    *,
    interval: int,
    start_offset: int | None,
    contiguous: bool,
    end_offset: int | None,
) -> tuple[RecoveryResult, ScanState]:
    """Validate every batch of ``file`` (see ``Segment.validate``), filling the empty indexes.

    ``index`` and ``tindex`` get an entry every ``interval`` bytes, as appends
    would have written them; the caller adds the sealed segment's last time entry.
    """
    file_size = file.size_on_disk()
    next_offset = base_offset
    position = 0
    batches = 0
    records = 0
    since = 0
    max_ts, max_ts_offset = -1, base_offset
    first_ts: int | None = None
    error: CorruptLogError | None = None
    path = file.path
    try:
        check_segment_start(start_offset, base_offset, path, contiguous=contiguous)
        for pos, header, _, _ in file.iter_batches(
            0, file_size, verify_crc=True, max_read=CHUNK_BYTES
        ):
            check_follows(
                header, next_offset, path, pos, contiguous=contiguous, end_offset=end_offset
            )
            if header.last_offset - base_offset > INT32_MAX:
                raise CorruptLogError(
                    f"last offset {header.last_offset} is too far from the segment base "
                    f"{base_offset}",
                    path,
                    pos,
                    kind=ErrorKind.OFFSET_MISMATCH,
                )
            if header.max_timestamp > max_ts:
                max_ts, max_ts_offset = header.max_timestamp, header.last_offset
            if since > interval:
                index.append(header.last_offset, pos)
                tindex.maybe_append(max_ts, max_ts_offset)
                since = 0
            since += header.size
            if first_ts is None:
                first_ts = header.max_timestamp
            next_offset = header.next_offset
            position = pos + header.size
            batches += 1
            records += header.record_count
    except CorruptLogError as exc:
        error = exc
    result = RecoveryResult(
        valid_bytes=position,
        file_bytes=file_size,
        batches=batches,
        next_offset=next_offset if batches else None,
        error=error,
    )
    return result, ScanState(next_offset, max_ts, max_ts_offset, since, records, first_ts)
