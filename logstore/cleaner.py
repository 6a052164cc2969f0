"""Key compaction: the key -> latest-offset map, rewriting into ``.cleaned``, the round loop.

A round's rewrite takes segments and returns segments. The round loop
(``compact``) takes them from a log's ``LocalLog`` under the lock it is
handed, and commits through it: the swap of the outputs for their inputs is
``Segments.replace``. Never sees the ``Log``, its threads or its cleaner lock.
Follows Kafka's log cleaner (FORMAT.md section 11):

- the *clean* part [log start, first dirty) was compacted before; the
  *cleanable dirty* part [first dirty, first uncleanable) is what is new, where
  first uncleanable is the active segment's base or the first segment younger
  than ``min_compaction_lag_ms``;
- a round maps every key of the dirty part to its latest offset (as many keys
  as the memory budget holds: a smaller budget means more rounds, never more
  memory), then rewrites every segment from the log start to the round's end:
  a record survives if it has a key, is the latest for that key (or newer than
  the map), and is not a tombstone past its delete horizon;
- offsets never change: batches keep their base offset, last offset delta,
  attributes and producer fields; records keep offset deltas and timestamps;
- transactions (a Kafka producer's): an aborted transaction's records are
  neither mapped nor kept; an unended one's are not mapped and are kept as
  they are (Kafka cleans nothing above its last stable offset); markers are
  copied (``transactions.Verdicts`` over the sealed segments decides);
- a kept batch holding tombstones gets a delete horizon (attribute bit 6,
  base timestamp = now + ``delete_retention_ms``); a later round drops those
  tombstones once the horizon has passed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import NamedTuple

from . import batch
from ._fs import CLEANED_SUFFIX, crash_point, fsync_dir
from ._varint import INT32_MAX
from .batch import BatchHeader, BatchSpan
from .config import LogConfig
from .errors import CodecUnavailableError, CorruptLogError
from .local import LocalLog
from .model import CompactionResult, Record
from .segment import Segment, SegmentSettings
from .transactions import ABORTED, COMMITTED, Markers, Verdicts, whole

#: Bytes one map entry costs besides its key (dict slot, int and bytes headers).
MAP_ENTRY_OVERHEAD = 120
Progress = Callable[[int], None]
#: The log's lock, as the round loop takes it.
Lock = AbstractContextManager[object]


@dataclass
class SegmentReport:
    """What a round did (or would do) to one input segment."""

    base_offset: int
    records_before: int = 0
    records_after: int = 0
    tombstones_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Round:
    """One cleaning round: its inputs, its outputs (as ``.cleaned`` files) and its counts."""

    inputs: list[Segment]
    outputs: list[Segment] = field(default_factory=list)
    end_offset: int = 0  # first dirty offset after this round
    reports: list[SegmentReport] = field(default_factory=list)
    segments_after: int = 0  # output segments written (or, in a dry run, planned)


def sections(
    sealed: Sequence[Segment], first_dirty: int, *, now_ms: int, min_lag_ms: int
) -> tuple[list[Segment], list[Segment]]:
    """Split sealed segments into (clean, cleanable dirty); the rest is uncleanable."""
    clean: list[Segment] = []
    dirty: list[Segment] = []
    for seg in sealed:
        if seg.next_offset <= first_dirty:
            clean.append(seg)
            continue
        newest = seg.max_timestamp
        if min_lag_ms and newest is not None and newest > now_ms - min_lag_ms:
            break  # too young, and so is everything after it
        dirty.append(seg)
    return clean, dirty


def dirty_ratio(clean: Sequence[Segment], dirty: Sequence[Segment]) -> float:
    """Cleanable bytes over clean + cleanable bytes (0 when there is nothing)."""
    dirty_bytes = sum(s.size for s in dirty)
    total = dirty_bytes + sum(s.size for s in clean)
    return dirty_bytes / total if total else 0.0


def has_expired_tombstones(segments: Sequence[Segment], *, now_ms: int) -> bool:
    """Whether a batch holding records has a delete horizon that has passed (headers only)."""
    for seg in segments:
        for _, header in seg.iter_headers(0, seg.size):
            if (
                header.attributes & batch.DELETE_HORIZON_BIT
                and header.record_count
                and now_ms >= header.base_timestamp
            ):
                return True
    return False


def build_offset_map(
    dirty: Sequence[Segment],
    first_dirty: int,
    *,
    budget_bytes: int,
    verify_crc: bool,
    verdicts: Verdicts | None = None,
) -> tuple[dict[bytes, int], int]:
    """Map each key of the dirty part to its latest offset, within ``budget_bytes``.

    Returns the map and the round's end offset: one past the last record mapped
    (at least one record is always mapped, so rounds make progress). With
    ``verdicts``, records of transactions not committed are left out.
    """
    verdicts = verdicts or Verdicts(Markers(), whole(dirty), verify_crc=verify_crc)
    offsets: dict[bytes, int] = {}
    used = 0
    end = first_dirty
    for seg in dirty:
        # Offsets checked too: a damaged base offset must not be rewritten as truth.
        batches = seg.iter_batches(0, seg.size, verify_crc=verify_crc, check_offsets=True)
        for _, header, buf, rel in batches:
            if (
                header.next_offset <= first_dirty
                or header.attributes & batch.CONTROL_BIT
                or not verdicts.delivers(seg, header)
            ):
                end = max(end, header.next_offset)
                continue
            for offset, key in batch.decode_keys(buf, rel, header):
                if key is None or offset < first_dirty:
                    continue
                if key not in offsets:
                    used += len(key) + MAP_ENTRY_OVERHEAD
                    if used > budget_bytes and offsets:
                        return offsets, end
                offsets[key] = offset
                end = offset + 1
            end = max(end, header.next_offset)
    return offsets, end


def group_by_size(segments: Sequence[Segment], config: LogConfig) -> list[list[Segment]]:
    """Consecutive segments merged while they fit one segment (bytes, index, int32 offsets)."""
    groups: list[list[Segment]] = []
    for seg in segments:
        if groups:
            group = groups[-1]
            size = sum(s.size for s in group) + seg.size
            span = seg.next_offset - 1 - group[0].base_offset
            if size <= config.segment_bytes and span <= INT32_MAX:
                group.append(seg)
                continue
        groups.append([seg])
    return groups


@dataclass
class _Planned:
    """An output segment a dry run would write: what decides where the real one ends.

    Mirrors ``Segment.append``'s index rule, so a dry run splits its plan where
    the real run splits its outputs and reports the same segment count.
    """

    base_offset: int
    size: int = 0
    since_index_entry: int = 0
    offset_entries: int = 0
    time_entries: int = 0
    max_timestamp: int = -1
    last_time_entry: int = -1

    def add(self, size: int, max_timestamp: int, index_interval_bytes: int) -> None:
        self.max_timestamp = max(self.max_timestamp, max_timestamp)
        if self.since_index_entry > index_interval_bytes:
            self.offset_entries += 1
            if self.max_timestamp > self.last_time_entry:
                self.time_entries += 1
                self.last_time_entry = self.max_timestamp
            self.since_index_entry = 0
        self.since_index_entry += size
        self.size += size

    def index_full(self, max_index_bytes: int) -> bool:
        # The limits of OffsetIndex.is_full and TimeIndex.is_full (one slot kept for sealing).
        return self.offset_entries >= max_index_bytes // 8 or (
            self.time_entries >= max_index_bytes // 12 - 1
        )


class _Writer:
    """Writes rewritten batches into ``.cleaned`` segments, starting a new one on overflow."""

    def __init__(self, directory: str, config: LogConfig, *, dry_run: bool) -> None:
        self.directory = directory
        self.config = config
        self.dry_run = dry_run
        self.outputs: list[Segment] = []
        self.planned: list[_Planned] = []
        self._planning = False  # the last planned segment still takes batches
        self.bytes_written = 0
        self._group_base: int | None = None

    def write(self, data: bytes, span: BatchSpan, base_offset: int, records: int) -> None:
        self.bytes_written += len(data)
        if self.dry_run:
            self._plan(len(data), span, base_offset)
            return
        out = self.outputs[-1] if self.outputs and self.outputs[-1].active else None
        if out is not None and (
            out.size + len(data) > self.config.segment_bytes
            or out.index_full
            or span.last_offset - out.base_offset > INT32_MAX
        ):
            self._finish(out)  # rewritten batches grew (recompression): split the group
            out = None
        if out is None:
            base = self._group_base if self._group_base is not None else base_offset
            self._group_base = None
            out = Segment.create(
                self.directory,
                base,
                settings=SegmentSettings.of(self.config),
                suffix=CLEANED_SUFFIX,
            )
            self.outputs.append(out)
        out.append(data, (span,), record_count=records)

    def _plan(self, size: int, span: BatchSpan, base_offset: int) -> None:
        """The dry run's ``write``: the same splitting rules, applied to ``_Planned`` segments."""
        config = self.config
        out = self.planned[-1] if self.planned and self._planning else None
        if out is not None and (
            out.size + size > config.segment_bytes
            or out.index_full(config.max_index_bytes)
            or span.last_offset - out.base_offset > INT32_MAX
        ):
            out = None
        if out is None:
            base = self._group_base if self._group_base is not None else base_offset
            self._group_base = None
            out = _Planned(base)
            self.planned.append(out)
            self._planning = True
        out.add(size, span.max_timestamp, config.index_interval_bytes)

    def new_group(self, base_offset: int | None = None) -> None:
        """Start a new output segment, named like the group's first input (as Kafka does)."""
        if self.outputs and self.outputs[-1].active:
            self._finish(self.outputs[-1])
        self._planning = False
        self._group_base = base_offset

    def _finish(self, out: Segment) -> None:
        out.seal()  # writes and fsyncs the indexes
        out.flush()

    def close(self) -> None:
        self.new_group()


def clean_round(
    directory: str,
    inputs: Sequence[Segment],
    offsets: dict[bytes, int],
    end_offset: int,
    config: LogConfig,
    *,
    now_ms: int,
    dry_run: bool = False,
    progress: Progress | None = None,
    verdicts: Verdicts | None = None,
) -> Round:
    """Rewrite ``inputs`` (log start to the round's end) into ``.cleaned`` segments.

    Nothing replaces the inputs yet: ``compact`` commits them. With ``dry_run`` nothing is
    written and the reports say what would be removed. ``verdicts`` decides on
    transactional batches (by default over ``inputs`` alone).
    """
    verdicts = verdicts or Verdicts(Markers(), whole(inputs), verify_crc=True)
    result = Round(inputs=list(inputs), end_offset=end_offset)
    writer = _Writer(directory, config, dry_run=dry_run)
    horizon = now_ms + config.delete_retention_ms
    verify = True  # whatever verify_crc_on_read says: never rewrite damage under a fresh CRC
    try:
        for group in group_by_size(inputs, config):
            writer.new_group(group[0].base_offset)
            for seg in group:
                report = SegmentReport(base_offset=seg.base_offset, bytes_before=seg.size)
                before = writer.bytes_written
                is_last_segment = seg is group[-1]
                batches = seg.iter_batches(0, seg.size, verify_crc=verify, check_offsets=True)
                headers = list(batches)
                for n, (position, header, buf, rel) in enumerate(headers):
                    keep_empty = is_last_segment and n == len(headers) - 1
                    try:
                        fate = verdicts.fate(seg, header)
                        _clean_batch(
                            header,
                            buf,
                            rel,
                            offsets,
                            writer,
                            report,
                            now_ms=now_ms,
                            horizon=horizon,
                            keep_empty=keep_empty,
                            compression_level=config.compression_level,
                            fate=fate,
                        )
                    except (CorruptLogError, CodecUnavailableError) as exc:
                        raise exc.located(seg.log_path, position - rel) from None
                report.bytes_after = writer.bytes_written - before
                result.reports.append(report)
                if progress is not None:
                    progress(1)
        writer.close()
    except BaseException:
        for out in writer.outputs:
            out.delete_files()
        raise
    result.outputs = writer.outputs
    result.segments_after = len(writer.planned if dry_run else writer.outputs)
    if not dry_run:
        fsync_dir(directory)
        crash_point("cleaned-written")
    return result


def _clean_batch(
    header: BatchHeader,
    buf: bytes,
    rel: int,
    offsets: dict[bytes, int],
    writer: _Writer,
    report: SegmentReport,
    *,
    now_ms: int,
    horizon: int,
    keep_empty: bool,
    compression_level: int | None,
    fate: str = COMMITTED,
) -> None:
    span = BatchSpan(header.size, header.last_offset, header.max_timestamp)
    records = (
        [] if header.attributes & batch.CONTROL_BIT else batch.decode_records(buf, rel, header)
    )
    report.records_before += len(records)
    report.records_after += len(records) if fate not in (COMMITTED, ABORTED) else 0
    if header.attributes & batch.CONTROL_BIT or fate not in (COMMITTED, ABORTED):
        # Transaction markers, and an unended transaction's data: copied as they are.
        writer.write(bytes(buf[rel : rel + header.size]), span, header.base_offset, len(records))
        return
    has_horizon = bool(header.attributes & batch.DELETE_HORIZON_BIT)
    tombstones_expired = has_horizon and now_ms >= header.base_timestamp
    kept: list[Record] = []
    for r in records if fate == COMMITTED else ():  # an aborted transaction's: none kept
        if r.key is None or offsets.get(r.key, -1) > r.offset:
            if r.value is None:
                report.tombstones_removed += 1
            continue
        if r.value is None and tombstones_expired:
            report.tombstones_removed += 1
            continue
        kept.append(r)
    report.records_after += len(kept)
    set_horizon = not has_horizon and any(r.value is None for r in kept)
    if not kept and not keep_empty:
        return  # Kafka's DELETE_EMPTY: also a batch an earlier round emptied
    unchanged = len(kept) == len(records) and not set_horizon and not tombstones_expired
    if unchanged and (kept or header.max_timestamp == batch.NO_TIMESTAMP):
        writer.write(bytes(buf[rel : rel + header.size]), span, header.base_offset, len(kept))
        return
    attributes = header.attributes | (batch.DELETE_HORIZON_BIT if set_horizon else 0)
    if tombstones_expired:  # its tombstones are gone: the horizon has done its job
        attributes &= ~batch.DELETE_HORIZON_BIT
        has_horizon = False
    log_append_time = header.attributes & batch.TIMESTAMP_TYPE_BIT
    if kept:
        base_ts = (
            horizon
            if set_horizon
            else (header.base_timestamp if has_horizon else kept[0].timestamp)
        )
        max_ts = header.max_timestamp if log_append_time else max(r.timestamp for r in kept)
    else:
        # Kept empty so the segment's end offset survives, as Kafka keeps a producer's
        # last batch. No timestamp: no record has one, and a max timestamp here would
        # put a time index entry on a batch without records (Kafka's DumpLogSegments:
        # "Found timestamp mismatch ... log timestamp: -1"; its index rebuild would too).
        base_ts = max_ts = batch.NO_TIMESTAMP
        attributes &= ~batch.DELETE_HORIZON_BIT
    data = batch.rebuild(
        header,
        kept,
        attributes=attributes,
        base_timestamp=base_ts,
        max_timestamp=max_ts,
        compression_level=compression_level,
    )
    writer.write(
        data, BatchSpan(len(data), header.last_offset, max_ts), header.base_offset, len(kept)
    )


def discard(outputs: Sequence[Segment]) -> None:
    """Remove a round's ``.cleaned`` outputs (the round was abandoned)."""
    for seg in outputs:
        seg.delete_files()


class _Taken(NamedTuple):
    """What a round starts from, taken under the log's lock."""

    sealed: list[Segment]  # every segment but the active one, oldest first
    first_dirty: int  # the cleaner checkpoint, reset into the log's range
    now_ms: int
    truncations: int  # a truncation since voids the round


def _take(local: LocalLog, lock: Lock) -> _Taken:
    with lock:
        local.check_open()
        sealed, first_dirty, now = local.cleanable()
        return _Taken(sealed, first_dirty, now, local.truncations)


def _commit(local: LocalLog, lock: Lock, taken: _Taken, done: Round) -> bool:
    """Swap a round's outputs in under the lock, unless its inputs changed meanwhile.

    False when the log closed, a truncation happened, or an input is no longer
    in the map (retention) or became active.
    """
    with lock:
        inputs = done.inputs
        segments = local.segments
        if (
            local.closed
            or local.truncations != taken.truncations
            or any(s is segments.active for s in inputs)
            or not all(segments.holds(s) for s in inputs)
        ):
            return False
        local.replace(inputs, done.outputs, done.end_offset)
        return True


def log_dirty_ratio(local: LocalLog, lock: Lock) -> float:
    """The share of a log's bytes not yet compacted (what auto-compaction compares).

    Raises:
        LogClosedError: the log is closed.
    """
    taken = _take(local, lock)
    clean, dirty = sections(
        taken.sealed,
        taken.first_dirty,
        now_ms=taken.now_ms,
        min_lag_ms=local.config.min_compaction_lag_ms,
    )
    return dirty_ratio(clean, dirty)


def compact(
    local: LocalLog,
    lock: Lock,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CompactionResult:
    """Run cleaning rounds until the dirty part is clean (Kafka's ``LogCleaner.doClean`` loop).

    Each round starts from the log's sealed segments taken under ``lock``, is
    written outside it, and is committed under it again (``LocalLog.replace``:
    the swap, then the cleaner checkpoint at the round's end), or discarded
    when a truncation, retention or close got there first (and the loop stops).
    Rounds repeat while the dirty part has more keys than
    ``compaction_memory_bytes`` maps at once. The caller holds its cleaner lock.
    """
    config = local.config
    markers = Markers()  # a round's segments are sealed: what it finds holds for the next
    started = time.perf_counter()
    totals = CompactionResult(dry_run=dry_run)
    reports: list[dict[str, int]] = []
    first_ratio: float | None = None
    while True:
        taken = _take(local, lock)
        sealed, first_dirty, now = taken.sealed, taken.first_dirty, taken.now_ms
        clean, dirty = sections(
            sealed, first_dirty, now_ms=now, min_lag_ms=config.min_compaction_lag_ms
        )
        if first_ratio is None:
            first_ratio = dirty_ratio(clean, dirty)
        verdicts = Verdicts(markers, whole(sealed), verify_crc=True)
        if dirty:
            offsets, end = build_offset_map(
                dirty,
                first_dirty,
                budget_bytes=config.compaction_memory_bytes,
                verify_crc=True,  # never rewrite damaged bytes under a fresh CRC
                verdicts=verdicts,
            )
            inputs = [s for s in sealed if s.base_offset < end]
        elif not reports and has_expired_tombstones(clean, now_ms=now):
            # Nothing new, but tombstones passed their horizon: clean the clean part.
            offsets, end, inputs = {}, first_dirty, clean
        else:
            break
        done = clean_round(
            local.path,
            inputs,
            offsets,
            end,
            config,
            now_ms=now,
            dry_run=dry_run,
            progress=progress,
            verdicts=verdicts,
        )
        reports += [r.as_dict() for r in done.reports]
        totals = _add_round(totals, done, len(inputs))
        if dry_run:
            break
        if not _commit(local, lock, taken, done):
            discard(done.outputs)  # truncation or retention got there first
            break
        if not dirty or end >= dirty[-1].next_offset:
            break
    return dataclasses.replace(
        totals,
        dirty_ratio=first_ratio or 0.0,
        seconds=time.perf_counter() - started,
        details=tuple(reports),
    )


def _add_round(totals: CompactionResult, done: Round, segments_before: int) -> CompactionResult:
    return dataclasses.replace(
        totals,
        records_before=totals.records_before + sum(r.records_before for r in done.reports),
        records_after=totals.records_after + sum(r.records_after for r in done.reports),
        bytes_before=totals.bytes_before + sum(r.bytes_before for r in done.reports),
        bytes_after=totals.bytes_after + sum(r.bytes_after for r in done.reports),
        tombstones_removed=totals.tombstones_removed
        + sum(r.tombstones_removed for r in done.reports),
        segments_before=totals.segments_before + segments_before,
        segments_after=totals.segments_after + done.segments_after,
    )
