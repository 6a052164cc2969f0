"""Read-only inspection and verification of a broker root, a partition or one file.

Everything here only reads: it is safe on a log a live process is writing. A
batch cut short at the very end of the last segment is a writer's in-flight
tail (or a torn write that recovery will cut), not damage, and is reported as
``incomplete_tail_bytes``. Knows files, segments and batches; never opens a
``Log`` (that would take the directory lock and may change files).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _offsets, batch, compression
from ._fs import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    is_locked,
    parse_base_offset,
)
from .errors import CorruptLogError
from .index import OffsetIndex, TimeIndex
from .loader import never_compacted
from .model import Record
from .segment import Segment, check_follows

__all__ = [
    "PartitionSummary",
    "SegmentSummary",
    "as_dict",
    "index_entries",
    "is_partition_dir",
    "iter_segment_records",
    "looks_compacted",
    "parse_base_offset",
    "partition_dirs",
    "segment_bases",
    "summarize_partition",
    "summarize_segment",
    "group_offsets",
    "verify_index",
]

_INCOMPLETE = ("truncated", "zero_fill")


@dataclass
class SegmentSummary:
    """One segment as ``inspect`` reports it."""

    path: str
    base_offset: int
    next_offset: int | None = None
    batches: int = 0
    records: int = 0
    size_bytes: int = 0
    first_timestamp: int | None = None
    max_timestamp: int | None = None
    codecs: dict[str, int] = field(default_factory=dict)
    incomplete_tail_bytes: int = 0
    problem: str | None = None
    problem_position: int | None = None


@dataclass
class PartitionSummary:
    path: str
    segments: list[SegmentSummary]

    @property
    def start_offset(self) -> int | None:
        return self.segments[0].base_offset if self.segments else None

    @property
    def end_offset(self) -> int | None:
        ends = [s.next_offset for s in self.segments if s.next_offset is not None]
        return max(ends) if ends else self.start_offset

    @property
    def records(self) -> int:
        return sum(s.records for s in self.segments)

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.segments)

    @property
    def problems(self) -> list[SegmentSummary]:
        return [s for s in self.segments if s.problem is not None]


def is_partition_dir(path: str) -> bool:
    return os.path.isdir(path) and any(
        n.endswith(LOG_SUFFIX) and parse_base_offset(n) is not None for n in os.listdir(path)
    )


def partition_dirs(root: str) -> list[str]:
    """Partition directories directly under a broker root, sorted by topic then partition."""
    found = []
    for name in os.listdir(root):
        full = os.path.join(root, name)
        topic, sep, number = name.rpartition("-")
        if os.path.isdir(full) and sep and number.isdigit():
            found.append((topic, int(number), full))
    return [full for _, _, full in sorted(found)]


def segment_bases(directory: str) -> list[int]:
    return sorted(
        b
        for n in os.listdir(directory)
        if n.endswith(LOG_SUFFIX) and (b := parse_base_offset(n)) is not None
    )


def _open_segment(directory: str, base: int) -> Segment:
    return Segment.open_existing(
        directory, base, max_index_bytes=1 << 62, index_interval_bytes=4096
    )


def looks_compacted(directory: str) -> bool:
    """Whether the partition was ever compacted (``loader.never_compacted``'s rule).

    Offsets of a log that was never compacted are contiguous, which is what
    exposes a damaged base offset (it is outside the CRC); compaction leaves
    legal gaps.
    """
    return not never_compacted(directory)


def summarize_segment(
    directory: str,
    base: int,
    *,
    last: bool,
    check_records: bool,
    contiguous: bool = False,
    end_offset: int | None = None,
) -> SegmentSummary:
    """Walk one segment's batches (CRC checked; records decoded with ``check_records``).

    A batch cut short at the end of the ``last`` segment is a writer's in-flight
    tail while a live ``Log`` holds the directory, and a torn write (damage that
    recovery will cut) otherwise.
    """
    seg = _open_segment(directory, base)
    live = last and is_locked(directory)
    summary = SegmentSummary(path=seg.log_path, base_offset=base)
    codecs: Counter[str] = Counter()
    next_offset = base
    try:
        for position, header, buf, rel in seg.iter_batches(0, seg.size, verify_crc=True):
            check_follows(
                header,
                next_offset,
                seg.log_path,
                position,
                contiguous=contiguous,
                end_offset=end_offset,
            )
            if check_records:
                try:
                    batch.decode_records(buf, rel, header)
                except CorruptLogError as exc:
                    raise exc.located(seg.log_path, position - rel) from None
            summary.batches += 1
            summary.records += header.record_count
            summary.size_bytes = position + header.size
            if summary.first_timestamp is None:
                summary.first_timestamp = header.base_timestamp
            if summary.max_timestamp is None or header.max_timestamp > summary.max_timestamp:
                summary.max_timestamp = header.max_timestamp
            codecs[compression.CODEC_NAMES.get(header.codec, str(header.codec))] += 1
            next_offset = header.next_offset
    except CorruptLogError as exc:
        if live and exc.kind in _INCOMPLETE:
            summary.incomplete_tail_bytes = seg.size - (exc.position or 0)
        else:
            summary.problem = str(exc)
            summary.problem_position = exc.position
    finally:
        seg.close_file()
    summary.next_offset = next_offset if summary.batches else base
    summary.codecs = dict(codecs)
    return summary


def summarize_partition(directory: str, *, check_records: bool = False) -> PartitionSummary:
    """Summaries of every segment; segments of a never-compacted log must be contiguous."""
    bases = segment_bases(directory)
    contiguous = not looks_compacted(directory)
    summaries: list[SegmentSummary] = []
    for i, base in enumerate(bases):
        summary = summarize_segment(
            directory,
            base,
            last=(i == len(bases) - 1),
            check_records=check_records,
            contiguous=contiguous,
            end_offset=bases[i + 1] if i + 1 < len(bases) else None,
        )
        previous = summaries[-1] if summaries else None
        if (
            previous is not None
            and previous.problem is None
            and previous.next_offset is not None
            and summary.problem is None
            and (
                base < previous.next_offset
                or (contiguous and base != previous.next_offset and summary.batches)
            )
        ):
            summary.problem = (
                f"{summary.path}: segment base offset {base} does not follow the previous "
                f"segment's end {previous.next_offset}"
            )
            summary.problem_position = 0
        summaries.append(summary)
    return PartitionSummary(path=directory, segments=summaries)


def group_offsets(root: str) -> dict[tuple[str, str, int], int]:
    """Committed offsets of every consumer group in a broker root (read-only)."""
    directory = os.path.join(root, f"{_offsets.OFFSETS_TOPIC}-0")
    if not os.path.isdir(directory):
        return {}
    pairs = (
        (item.key, item.value)
        for base in segment_bases(directory)
        for item in iter_segment_records(directory, base)
        if isinstance(item, Record)
    )
    return _offsets.latest(pairs)


def iter_segment_records(directory: str, base: int) -> Iterator[Record | CorruptLogError]:
    """Records of one segment in order; a problem is yielded (not raised) and ends it."""
    seg = _open_segment(directory, base)
    try:
        for position, header, buf, rel in seg.iter_batches(0, seg.size, verify_crc=True):
            if header.attributes & batch.CONTROL_BIT:
                continue
            try:
                yield from batch.decode_records(buf, rel, header)
            except CorruptLogError as exc:
                yield exc.located(seg.log_path, position - rel)
                return
    except CorruptLogError as exc:
        yield exc
    finally:
        seg.close_file()


def verify_index(directory: str, base: int, log_size: int) -> str | None:
    """Check a segment's index files against its ``.log``; the problem found, or ``None``.

    Sane files, and every entry what the log says (``Segment.index_mismatch``).
    """
    seg = _open_segment(directory, base)
    index_path = os.path.join(directory, f"{base:020d}{INDEX_SUFFIX}")
    time_path = os.path.join(directory, f"{base:020d}{TIMEINDEX_SUFFIX}")
    try:
        if not os.path.exists(index_path) or not os.path.exists(time_path):
            return f"{index_path if not os.path.exists(index_path) else time_path}: missing"
        index = OffsetIndex(index_path, base, max_index_bytes=1 << 62)
        tindex = TimeIndex(time_path, base, max_index_bytes=1 << 62)
        index.load(log_size)
        tindex.load()
        return seg.index_mismatch(index, tindex, log_size)
    except CorruptLogError as exc:
        return str(exc)
    finally:
        seg.close_file()


def index_entries(path: str) -> list[dict[str, int]]:
    """Entries of one ``.index`` or ``.timeindex`` file, for ``inspect``."""
    base = parse_base_offset(os.path.basename(path)) or 0
    if path.endswith(TIMEINDEX_SUFFIX):
        tindex = TimeIndex(path, base, max_index_bytes=1 << 62)
        tindex.load()
        return [{"timestamp": t, "offset": o} for t, o in tindex.as_list()]
    index = OffsetIndex(path, base, max_index_bytes=1 << 62)
    log_path = path[: -len(INDEX_SUFFIX)] + LOG_SUFFIX
    index.load(os.path.getsize(log_path) if os.path.exists(log_path) else 1 << 62)
    return [{"offset": o, "position": p} for o, p in index.as_list()]


def as_dict(summary: SegmentSummary) -> dict[str, Any]:
    return asdict(summary)
