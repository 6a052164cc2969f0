"""Read-only walks of one partition's files: segments, records and indexes, and what they found.

Everything here only reads: it is safe on a log a live process is writing. A
batch cut short at the very end of the last segment is a writer's in-flight
tail (or a torn write that recovery will cut), not damage, and is reported as
``incomplete_tail_bytes``. Knows files, segments and batches; never opens a
``Log`` (that would take the directory lock and may change files), and knows
nothing of broker roots or of how ``verify`` adds up what it finds.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _offsets, batch, compression
from ._fs import (
    CLEAN_SHUTDOWN_FILE,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    RECOVERY_POINT_FILE,
    TIMEINDEX_SUFFIX,
    is_locked,
    parse_base_offset,
    read_checkpoint,
    segment_name,
)
from .batchfile import check_follows
from .checkpoints import never_compacted
from .errors import CodecUnavailableError, CorruptLogError
from .index import OffsetIndex, TimeIndex
from .indexcheck import index_mismatches
from .model import Record
from .segment import Segment, SegmentSettings

_INCOMPLETE = ("truncated", "zero_fill")
#: Damage after which the next batch cannot be found: the rest of the segment is not walked.
_NO_RESUME = ("truncated", "zero_fill", "invalid_length", "unsupported_magic")


@dataclass(frozen=True)
class Problem:
    """One thing found wrong: where (file, byte position in it), what kind, the whole message."""

    path: str
    position: int | None
    kind: str
    message: str


@dataclass(frozen=True)
class Unchecked:
    """A batch that could not be checked (its codec is not installed): not damage, not good."""

    path: str
    position: int
    codec: str
    message: str


@dataclass
class SegmentSummary:
    """One segment as ``inspect`` and ``verify`` report it.

    ``problem``/``problem_position`` repeat the first of ``problems`` for a
    one-line summary.
    """

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
    problems: list[Problem] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)

    def add_problem(self, problem: Problem) -> None:
        if self.problem is None:
            self.problem, self.problem_position = problem.message, problem.position
        self.problems.append(problem)


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


def segment_bases(directory: str) -> list[int]:
    return sorted(
        b
        for n in os.listdir(directory)
        if n.endswith(LOG_SUFFIX) and (b := parse_base_offset(n)) is not None
    )


#: Diagnostics never write indexes: no size limit; the interval is only nominal.
_READ_ONLY = SegmentSettings(max_index_bytes=1 << 62, index_interval_bytes=4096)


def _open_segment(directory: str, base: int) -> Segment:
    return Segment.open_existing(directory, base, settings=_READ_ONLY)


def looks_compacted(directory: str) -> bool:
    """Whether the partition was ever compacted (``checkpoints.never_compacted``'s rule).

    Offsets of a log that was never compacted are contiguous, which is what
    exposes a damaged base offset (it is outside the CRC); compaction leaves
    legal gaps.
    """
    return not never_compacted(directory)


def _problem(exc: CorruptLogError, path: str) -> Problem:
    return Problem(exc.path or path, exc.position, exc.kind, str(exc))


def _resume_after(seg: Segment, exc: CorruptLogError) -> int | None:
    """Where the walk can go on after the bad batch ``exc`` names, or ``None`` (give up here).

    Only when the batch's length field is plausible (a whole header, at least
    the v2 minimum, inside the file): then the next batch most likely starts
    right after it. A cut or zero-filled tail, a length that overruns the file
    and a legacy segment (every message would be reported) end the segment.
    """
    if exc.position is None or exc.kind in _NO_RESUME:
        return None
    data = seg.read(exc.position, batch.HEADER_SIZE)
    if len(data) < batch.HEADER_SIZE:
        return None
    length = batch.peek_header(data).batch_length
    end = exc.position + batch.LOG_OVERHEAD + length
    if length < batch.MIN_BATCH_LENGTH or end > seg.size:
        return None
    return end


def summarize_segment(
    directory: str,
    base: int,
    *,
    last: bool,
    check_records: bool,
    contiguous: bool = False,
    max_problems: int | None = None,
    end_offset: int | None = None,
) -> SegmentSummary:
    """Walk one segment's batches (CRC checked; records decoded with ``check_records``).

    Goes on after a bad batch whose length is plausible (see ``_resume_after``),
    so every damaged batch is listed, up to ``max_problems``. A batch cut short
    at the end of the ``last`` segment is a writer's in-flight tail while a live
    ``Log`` holds the directory, and a torn write (damage that recovery will
    cut) otherwise. A batch whose codec is not installed is ``unchecked``.
    """
    seg = _open_segment(directory, base)
    live = last and is_locked(directory)
    summary = SegmentSummary(path=seg.log_path, base_offset=base)
    codecs: Counter[str] = Counter()
    next_offset = base
    position = 0
    strict = contiguous  # after a skipped batch its record count is unknown: only ">=" holds
    try:
        while position < seg.size:
            try:
                for pos, header, buf, rel in seg.iter_batches(position, seg.size, verify_crc=True):
                    check_follows(
                        header,
                        next_offset,
                        seg.log_path,
                        pos,
                        contiguous=strict,
                        end_offset=end_offset,
                    )
                    strict = contiguous
                    if check_records and not header.attributes & batch.CONTROL_BIT:
                        try:
                            batch.decode_records(buf, rel, header)
                        except CorruptLogError as exc:
                            raise exc.located(seg.log_path, pos - rel) from None
                        except CodecUnavailableError as exc:
                            where = exc.located(seg.log_path, pos - rel)
                            summary.unchecked.append(
                                Unchecked(seg.log_path, pos, exc.codec, str(where))
                            )
                    summary.batches += 1
                    summary.records += header.record_count
                    summary.size_bytes = pos + header.size
                    if summary.first_timestamp is None:
                        summary.first_timestamp = header.base_timestamp
                    if (
                        summary.max_timestamp is None
                        or header.max_timestamp > summary.max_timestamp
                    ):
                        summary.max_timestamp = header.max_timestamp
                    codecs[compression.CODEC_NAMES.get(header.codec, str(header.codec))] += 1
                    next_offset = header.next_offset
                    position = pos + header.size
                break
            except CorruptLogError as exc:
                if live and exc.kind in _INCOMPLETE:
                    summary.incomplete_tail_bytes = seg.size - (exc.position or 0)
                    break
                summary.add_problem(_problem(exc, seg.log_path))
                resume = _resume_after(seg, exc)
                if resume is None or (
                    max_problems is not None and len(summary.problems) >= max_problems
                ):
                    break
                position, strict = resume, False
    finally:
        seg.close_file()
    summary.next_offset = next_offset if summary.batches else base
    summary.codecs = dict(codecs)
    return summary


def iter_partition(
    directory: str, *, check_records: bool = False, max_problems: int | None = None
) -> Iterator[SegmentSummary]:
    """Summaries of every segment, one at a time as each is walked (``inspect`` streams them).

    Segments of a never-compacted log must be contiguous, and no segment may
    start below the previous one's end.
    """
    bases = segment_bases(directory)
    contiguous = not looks_compacted(directory)
    # A log closed cleanly ends at its recovery point (close writes it): no batch
    # of the last segment may reach past it, even where gaps are legal.
    closed_end = None
    if os.path.exists(os.path.join(directory, CLEAN_SHUTDOWN_FILE)):
        entries = read_checkpoint(os.path.join(directory, RECOVERY_POINT_FILE))
        closed_end = entries[0][2] if entries else None
    previous: SegmentSummary | None = None
    for i, base in enumerate(bases):
        summary = summarize_segment(
            directory,
            base,
            last=(i == len(bases) - 1),
            check_records=check_records,
            contiguous=contiguous,
            max_problems=max_problems,
            end_offset=bases[i + 1] if i + 1 < len(bases) else closed_end,
        )
        if (
            previous is not None
            and not previous.problems
            and previous.next_offset is not None
            and not summary.problems
            and (
                base < previous.next_offset
                or (contiguous and base != previous.next_offset and summary.batches)
            )
        ):
            summary.add_problem(
                Problem(
                    summary.path,
                    0,
                    "offset_regression",
                    f"{summary.path}: segment base offset {base} does not follow the previous "
                    f"segment's end {previous.next_offset}",
                )
            )
        previous = summary
        yield summary


def summarize_partition(directory: str, *, check_records: bool = False) -> PartitionSummary:
    """Summaries of every segment (see ``iter_partition``), as one list."""
    return PartitionSummary(
        path=directory, segments=list(iter_partition(directory, check_records=check_records))
    )


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


def iter_segment_records(
    directory: str, base: int
) -> Iterator[Record | CorruptLogError | CodecUnavailableError]:
    """Records of one segment in order; a problem is yielded (not raised) and ends it."""
    seg = _open_segment(directory, base)
    try:
        for position, header, buf, rel in seg.iter_batches(0, seg.size, verify_crc=True):
            if header.attributes & batch.CONTROL_BIT:
                continue
            try:
                yield from batch.decode_records(buf, rel, header)
            except (CorruptLogError, CodecUnavailableError) as exc:
                yield exc.located(seg.log_path, position - rel)
                return
    except CorruptLogError as exc:
        yield exc
    finally:
        seg.close_file()


def check_indexes(
    directory: str,
    base: int,
    log_size: int,
    *,
    next_offset: int | None = None,
    log_damaged: bool = False,
) -> list[Problem]:
    """Check a segment's ``.index`` and ``.timeindex`` against its ``.log``.

    The files must be sane, and indexes carry no checksum, so every entry is
    checked against the batch it names (``indexcheck.index_mismatches``). At most
    one problem per file (the first bad entry; the position is that entry's
    byte in the index file), with the count of bad entries. ``log_size`` is the
    bytes of the ``.log`` the entries may point into. With ``log_damaged`` (the
    walk of the ``.log`` found problems) only the files' own sanity is checked:
    entries judged against damaged batches would report the log's damage again,
    as if the index were wrong.
    """
    seg = _open_segment(directory, base)
    index_path = os.path.join(directory, segment_name(base, INDEX_SUFFIX))
    time_path = os.path.join(directory, segment_name(base, TIMEINDEX_SUFFIX))
    problems: list[Problem] = []
    try:
        for path in (index_path, time_path):
            if not os.path.exists(path):
                problems.append(Problem(path, None, "missing_index", f"{path}: missing"))
        if problems:
            return problems
        index = OffsetIndex(index_path, base, max_index_bytes=1 << 62)
        tindex = TimeIndex(time_path, base, max_index_bytes=1 << 62)
        try:
            index.load(log_size)
        except CorruptLogError as exc:
            problems.append(_problem(exc, index_path))  # a file that fails loads no entries
        try:
            tindex.load(None if next_offset is None else next_offset - base)
        except CorruptLogError as exc:
            problems.append(_problem(exc, time_path))
        if log_damaged:
            return problems
        mismatches = index_mismatches(seg, index, tindex, log_size)
        for path in (index_path, time_path):
            bad = [m for m in mismatches if m.path == path]
            if bad:
                more = f" ({len(bad)} bad entries)" if len(bad) > 1 else ""
                problems.append(
                    Problem(path, bad[0].position, "invalid_index", bad[0].message + more)
                )
        return problems
    finally:
        seg.close_file()


def verify_index(directory: str, base: int, log_size: int) -> str | None:
    """The first problem of a segment's indexes (see ``check_indexes``), or ``None``."""
    problems = check_indexes(directory, base, log_size)
    return problems[0].message if problems else None


def iter_index_entries(path: str) -> Iterator[dict[str, int]]:
    """Entries of one ``.index`` or ``.timeindex`` file, for ``inspect``."""
    base = parse_base_offset(os.path.basename(path)) or 0
    if path.endswith(TIMEINDEX_SUFFIX):
        tindex = TimeIndex(path, base, max_index_bytes=1 << 62)
        tindex.load()
        for t, o in tindex.as_list():
            yield {"timestamp": t, "offset": o}
        return
    index = OffsetIndex(path, base, max_index_bytes=1 << 62)
    log_path = path[: -len(INDEX_SUFFIX)] + LOG_SUFFIX
    index.load(os.path.getsize(log_path) if os.path.exists(log_path) else 1 << 62)
    for o, p in index.as_list():
        yield {"offset": o, "position": p}


def index_entries(path: str) -> list[dict[str, int]]:
    """Entries of one ``.index`` or ``.timeindex`` file, as a list."""
    return list(iter_index_entries(path))


def as_dict(summary: SegmentSummary) -> dict[str, Any]:
    return asdict(summary)
