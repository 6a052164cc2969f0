"""Opening a partition directory: leftovers, clean-shutdown marker, tail recovery.

Owns the decisions Kafka's ``LogLoader`` makes (FORMAT.md section 9): finish or
roll back an interrupted segment replacement, delete ``.deleted`` files, and on
an unclean open validate every batch after the recovery point, cutting a bad
tail. Never destroys bytes: whatever recovery cuts is first moved aside into a
``<segment>.log.corrupt-<position>`` quarantine file.

Knows segments and files, not records, and not the ``Log`` that will use them.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
from dataclasses import dataclass, field

from ._fs import (
    CLEANED_SUFFIX,
    CLEANER_CHECKPOINT_FILE,
    CORRUPT_INFIX,
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_START_FILE,
    LOG_SUFFIX,
    RECOVERY_POINT_FILE,
    SEGMENT_SUFFIXES,
    SWAP_SUFFIX,
    TIMEINDEX_SUFFIX,
    fsync_dir,
    parse_base_offset,
    remove_files,
)
from .batchfile import CHUNK_BYTES
from .checkpoints import (
    CleanMarker,
    has_clean_shutdown,
    never_compacted,
    read_offset_checkpoint,
    take_clean_shutdown,
    write_clean_shutdown,
)
from .config import LogConfig
from .errors import CorruptLogError, ErrorKind
from .indexcheck import wrong_index
from .segment import Segment, SegmentSettings

logger = logging.getLogger(__name__)


class RecoveryActionKind(str, enum.Enum):
    """What a :class:`RecoveryAction` does to its file; each is its plain string.

    ``damaged`` is no action: damage that recovery must not cut (below the
    recovery point), reported so ``recover --force`` can be asked for.
    """

    TRUNCATE = "truncate"
    QUARANTINE = "quarantine"
    REBUILD_INDEX = "rebuild_index"
    DELETE = "delete"
    FINISH_SWAP = "finish_swap"
    DAMAGED = "damaged"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


@dataclass(frozen=True)
class RecoveryAction:
    """One thing recovery did (or, in a dry run, would do) to a file."""

    path: str
    action: RecoveryActionKind
    reason: str
    position: int | None = None
    bytes: int = 0
    kind: str = ""


@dataclass
class LoadResult:
    """What ``load`` found and did."""

    segments: list[Segment]
    start_offset: int
    recovery_point: int
    clean: bool
    actions: list[RecoveryAction] = field(default_factory=list)
    cleaner_offset: int = 0
    #: The log was never compacted: its offsets have no gaps (``never_compacted``).
    contiguous: bool = False
    #: The clean-shutdown marker, if the open left it in place (it changed nothing).
    marker: CleanMarker | None = None


def load(
    directory: str,
    config: LogConfig,
    *,
    dry_run: bool = False,
    assume_unclean: bool = False,
    force: bool = False,
) -> LoadResult:
    """Open the segments of ``directory`` (which exists and is locked by the caller).

    With ``dry_run`` (or ``config.recovery == "fail"`` when something is wrong),
    nothing on disk changes: the result lists what recovery would do.
    ``assume_unclean`` runs recovery even after a clean shutdown (``logstore
    recover``); it then also checks the segments below the recovery point and
    reports damage there, which only ``force`` cuts.
    """
    names = sorted(os.listdir(directory))
    clean = has_clean_shutdown(directory)
    # A clean open with nothing to resolve or rebuild keeps the marker until the
    # log's first change (``CleanMarker``); any other takes it now, before changing a file.
    keep = clean and not dry_run and not assume_unclean and _nothing_to_change(names)
    if clean and not dry_run and not keep:
        take_clean_shutdown(directory)
    actions: list[RecoveryAction] = []
    took_marker = clean and not dry_run and not keep  # restored if recovery refuses to cut
    marker = CleanMarker(directory, kept=True) if keep else None
    names = _resolve_leftovers(directory, names, config, actions, dry_run=dry_run)
    if dry_run:  # leftovers were not renamed: look only at files that exist as named
        names = [n for n in names if os.path.exists(os.path.join(directory, n))]

    bases = sorted(
        {b for n in names if n.endswith(LOG_SUFFIX) and (b := parse_base_offset(n)) is not None}
    )
    for n in names:  # index files without a .log are deleted (Kafka does the same)
        base = parse_base_offset(n)
        if base is not None and n.endswith((INDEX_SUFFIX, TIMEINDEX_SUFFIX)) and base not in bases:
            actions.append(
                RecoveryAction(
                    os.path.join(directory, n), RecoveryActionKind.DELETE, "index without a .log"
                )
            )
            if not dry_run:
                remove_files([os.path.join(directory, n)])

    settings = SegmentSettings.of(config)
    segments = [Segment.open_existing(directory, base, settings=settings) for base in bases]
    if marker is not None:
        for seg in segments:  # a lazily found bad index is rewritten: the marker goes first
            seg.before_change = marker.drop
    checkpoint_start = read_offset_checkpoint(directory, LOG_START_FILE)
    checkpoint_recovery = read_offset_checkpoint(directory, RECOVERY_POINT_FILE)
    recovery_point = checkpoint_recovery or 0
    contiguous = never_compacted(directory, compacted_policy=config.compacted)
    for seg in segments:
        seg.contiguous = contiguous

    try:
        if assume_unclean or not clean:
            if clean and not force:
                _check_closed_end(segments, recovery_point, actions)  # before any rebuild
            segments = _recover_tail(
                directory,
                segments,
                0 if force else recovery_point,
                config,
                actions,
                dry_run=dry_run,
                check_below=assume_unclean,
                contiguous=contiguous,
            )
            clean = False
        else:
            for seg in segments:  # a missing index is rebuilt even after a clean shutdown
                if not (os.path.exists(seg.index_path) and os.path.exists(seg.timeindex_path)):
                    actions.append(
                        RecoveryAction(
                            seg.index_path, RecoveryActionKind.REBUILD_INDEX, "index file missing"
                        )
                    )
                    if not dry_run:
                        seg.rebuild_indexes()
            _check_closed_end(segments, recovery_point, actions)
    except FlushedDamageError:
        for seg in segments:
            seg.close_file()
        if took_marker:  # nothing was cut: a log that was clean stays clean
            write_clean_shutdown(directory)
        raise

    if not segments:
        base = checkpoint_start or 0
        if dry_run:
            return LoadResult([], base, base, clean, actions, contiguous=contiguous)
        segments = [Segment.create(directory, base, settings=settings)]
        fsync_dir(directory)
    first_base = segments[0].base_offset
    start_offset = max(checkpoint_start or 0, first_base)
    cleaner_offset = read_offset_checkpoint(directory, CLEANER_CHECKPOINT_FILE)
    if not dry_run:
        _log_actions(actions)
    return LoadResult(
        segments,
        start_offset,
        recovery_point,
        clean,
        actions,
        cleaner_offset or start_offset,
        contiguous=contiguous,
        marker=marker,
    )


def _nothing_to_change(names: list[str]) -> bool:
    """Whether a clean open of a directory listing ``names`` will leave every file as it is.

    No leftover of a deletion, compaction or swap to resolve, at least one
    segment, and every ``.log`` with both its indexes and every index with
    its ``.log`` (anything else is deleted or rebuilt at open).
    """
    if any(n.endswith((DELETED_SUFFIX, CLEANED_SUFFIX, SWAP_SUFFIX)) for n in names):
        return False
    files: dict[int, set[str]] = {}
    for n in names:
        base = parse_base_offset(n)
        if base is not None and n.endswith(SEGMENT_SUFFIXES):
            files.setdefault(base, set()).add(n[n.rindex(".") :])
    return bool(files) and all(
        len(suffixes) == len(SEGMENT_SUFFIXES) for suffixes in files.values()
    )


def _resolve_leftovers(
    directory: str,
    names: list[str],
    config: LogConfig,
    actions: list[RecoveryAction],
    *,
    dry_run: bool,
) -> list[str]:
    """Handle ``.deleted``, ``.cleaned`` and ``.swap`` files as Kafka does (section 9.1)."""
    deleted = [n for n in names if n.endswith(DELETED_SUFFIX)]
    cleaned = [n for n in names if n.endswith(CLEANED_SUFFIX)]
    swaps = [n for n in names if n.endswith(SWAP_SUFFIX)]
    doomed = list(deleted)
    for n in deleted:
        actions.append(
            RecoveryAction(
                os.path.join(directory, n), RecoveryActionKind.DELETE, "deletion was pending"
            )
        )
    min_cleaned = min((b for n in cleaned if (b := parse_base_offset(n)) is not None), default=None)
    kept_swaps = []
    for n in swaps:
        base = parse_base_offset(n)
        if base is None:
            continue
        if min_cleaned is not None and base >= min_cleaned:
            doomed.append(n)  # the swap was never begun for this group: roll back
            actions.append(
                RecoveryAction(
                    os.path.join(directory, n), RecoveryActionKind.DELETE, "swap not begun"
                )
            )
        else:
            kept_swaps.append(n)
    for n in cleaned:
        doomed.append(n)
        actions.append(
            RecoveryAction(
                os.path.join(directory, n), RecoveryActionKind.DELETE, "unfinished cleaner output"
            )
        )
    if not dry_run:
        remove_files(os.path.join(directory, n) for n in doomed)
    names = [n for n in names if n not in doomed]

    swap_logs = sorted(
        b
        for n in kept_swaps
        if n.endswith(LOG_SUFFIX + SWAP_SUFFIX) and (b := parse_base_offset(n)) is not None
    )
    replaced: list[str] = []
    if swap_logs:
        # The new segments are complete: replace every old segment they cover.
        end = 0
        for base in swap_logs:
            seg = Segment(directory, base, settings=SegmentSettings.of(config), suffix=SWAP_SUFFIX)
            seg.size = os.stat(seg.log_path).st_size
            result = seg.validate()
            seg.close_file()
            end = max(end, result.next_offset if result.next_offset is not None else base)
        low = swap_logs[0]
        replaced = [
            n
            for n in names
            if not n.endswith(SWAP_SUFFIX)
            and n.endswith(SEGMENT_SUFFIXES)
            and (b := parse_base_offset(n)) is not None
            and low <= b < max(end, swap_logs[-1] + 1)
        ]
    for n in replaced:
        actions.append(
            RecoveryAction(
                os.path.join(directory, n), RecoveryActionKind.DELETE, "replaced by a swap"
            )
        )
    for n in kept_swaps:  # every remaining .swap file takes its final name (Kafka 9.1 b)
        actions.append(
            RecoveryAction(
                os.path.join(directory, n), RecoveryActionKind.FINISH_SWAP, "swap in progress"
            )
        )
    if not dry_run and (doomed or kept_swaps):
        remove_files(os.path.join(directory, n) for n in replaced)
        for n in kept_swaps:
            os.rename(os.path.join(directory, n), os.path.join(directory, n[: -len(SWAP_SUFFIX)]))
        fsync_dir(directory)
    if kept_swaps:
        names = sorted(
            {n for n in names if n not in replaced and not n.endswith(SWAP_SUFFIX)}
            | {n[: -len(SWAP_SUFFIX)] for n in kept_swaps}
        )
    return names


class FlushedDamageError(CorruptLogError):
    """Recovery met damage below the recovery point, which it never cuts.

    Data below the recovery point was once known flushed, so the damage is not
    a torn write: opening refuses rather than give up acknowledged records
    (``logstore recover --force`` cuts it). ``actions`` are what recovery had
    found, this damage last; nothing was changed by the segment it is in.
    """

    def __init__(
        self, error: CorruptLogError, damaged: RecoveryAction, actions: list[RecoveryAction]
    ) -> None:
        super().__init__(
            f"{error.reason} (below the recovery point, so not a torn write: not cut; "
            "`logstore recover --force` cuts it and everything after it)",
            error.path,
            error.position,
            kind=error.kind,
        )
        self.damaged, self.actions = damaged, actions


def _check_closed_end(
    segments: list[Segment], recovery_point: int, actions: list[RecoveryAction]
) -> None:
    """A log closed cleanly ends exactly at its recovery point, or a base offset is damaged.

    ``close`` writes the end offset as the recovery point before the marker. Base
    offsets lie outside the CRC, so a damaged one can pass every batch check (in a
    compacted log, whose offsets may have gaps); appending after it would reuse or
    skip offsets. The damage is flushed data: reported, never cut.
    """
    if not segments or not recovery_point or segments[-1].next_offset == recovery_point:
        return
    last = segments[-1]
    position: int | None = None
    for pos, header in last.iter_headers(0, last.size):
        if header.next_offset > recovery_point:
            position = pos
            break
    reason = (
        f"the batches end at offset {last.next_offset - 1}, but the log was closed at "
        f"offset {recovery_point} ({RECOVERY_POINT_FILE}): a batch's base offset is damaged"
    )
    error = CorruptLogError(reason, last.log_path, position, kind=ErrorKind.OFFSET_MISMATCH)
    size = 0 if position is None else last.size - position
    damaged = _damaged(last.log_path, reason, position, size, ErrorKind.OFFSET_MISMATCH)
    raise FlushedDamageError(error, damaged, [*actions, damaged])


def _damaged(path: str, reason: str, position: int | None, size: int, kind: str) -> RecoveryAction:
    """Damage below the recovery point, reported and not cut (only ``recover --force`` cuts)."""
    return RecoveryAction(
        path,
        RecoveryActionKind.DAMAGED,
        f"{reason} (below the recovery point: not cut; use recover --force)",
        position=position,
        bytes=size,
        kind=kind,
    )


def _recover_tail(
    directory: str,
    segments: list[Segment],
    recovery_point: int,
    config: LogConfig,
    actions: list[RecoveryAction],
    *,
    dry_run: bool,
    check_below: bool = False,
    contiguous: bool = False,
) -> list[Segment]:
    """Validate every batch from the segment holding the recovery point to the end.

    The first invalid byte ends the log: it and everything after it is
    quarantined, then cut. Legacy formats are refused, never cut. With
    ``recovery="fail"`` any problem raises before a file changes. Data below
    the recovery point was known flushed: damage there is not a torn write and
    is never cut here; ``check_below`` reports it. A batch whose offsets do not
    fit where it lies (``check_follows``; contiguous when the log was never
    compacted) is damage like any other.
    """
    first = 0
    for i, seg in enumerate(segments):
        if seg.base_offset <= recovery_point:
            first = i
    # Each segment's offsets lie below the next one's base offset (its file's name).
    bounds: list[int | None] = [s.base_offset for s in segments[1:]]
    bounds.append(None)
    if check_below:
        below_next: int | None = None
        for i, seg in enumerate(segments[:first]):
            below = seg.validate(
                start_offset=below_next, contiguous=contiguous, end_offset=bounds[i]
            )
            below_next = below.next_offset if below.error is None else None
            wrong = wrong_index(seg) if below.error is None else None
            if wrong is not None:  # indexes carry no checksum: compared with their log
                actions.append(
                    RecoveryAction(seg.index_path, RecoveryActionKind.REBUILD_INDEX, wrong)
                )
                if not dry_run:
                    seg.rebuild_indexes()
                    logger.warning("%s; rebuilt", wrong)
            if below.error is not None:
                actions.append(
                    _damaged(
                        seg.log_path,
                        below.error.reason,
                        below.valid_bytes,
                        below.dropped_bytes,
                        below.error.kind,
                    )
                )
            seg.close_file()
    previous_next: int | None = None
    if first > 0:
        previous_next = segments[first].base_offset
    validated: list[Segment] = []
    for i in range(first, len(segments)):
        seg = segments[i]
        result = seg.validate(
            rebuild=True, start_offset=previous_next, contiguous=contiguous, end_offset=bounds[i]
        )
        error = result.error
        if error is None:
            actions.append(
                RecoveryAction(seg.index_path, RecoveryActionKind.REBUILD_INDEX, "unclean shutdown")
            )
            validated.append(seg)
            previous_next = seg.next_offset
            if i < len(segments) - 1:
                seg.close_file()  # thousands of segments must not mean thousands of handles
            continue
        if error.kind == ErrorKind.UNSUPPORTED_MAGIC:
            raise error  # an old format, not a torn write: refuse, change nothing
        damaged_at = result.next_offset
        if damaged_at is None:
            damaged_at = seg.base_offset if previous_next is None else previous_next
        if damaged_at < recovery_point:
            # The bad batch starts below the recovery point: it was once known
            # flushed, so this is not a torn write. Never cut it here.
            damaged = _damaged(
                seg.log_path, error.reason, result.valid_bytes, result.dropped_bytes, error.kind
            )
            raise FlushedDamageError(error, damaged, [*actions, damaged])
        later = segments[i + 1 :]
        if config.recovery == "fail" and not dry_run:
            raise CorruptLogError(
                f"{error.reason}; {result.dropped_bytes} bytes from here "
                f"and {len(later)} later segment(s) would be dropped (recovery='fail')",
                error.path,
                error.position,
                kind=error.kind,
            )
        quarantine = _unused(f"{seg.log_path}{CORRUPT_INFIX}{result.valid_bytes}")
        what = "torn tail (zero fill)" if error.kind == ErrorKind.ZERO_FILL else error.reason
        actions.append(
            RecoveryAction(
                seg.log_path,
                RecoveryActionKind.TRUNCATE,
                what,
                position=result.valid_bytes,
                bytes=result.dropped_bytes,
                kind=error.kind,
            )
        )
        for other in later:
            actions.append(
                RecoveryAction(
                    other.log_path,
                    RecoveryActionKind.QUARANTINE,
                    f"follows the damage in {os.path.basename(seg.log_path)}",
                    position=0,
                    bytes=other.size,
                    kind=error.kind,
                )
            )
        if dry_run:
            return segments[: i + 1]
        for ok in validated:
            ok.write_rebuilt_indexes()
        _copy_range(seg, result.valid_bytes, quarantine)
        seg.truncate_to(result.valid_bytes, seg.next_offset)
        seg.write_rebuilt_indexes()
        for other in later:
            os.rename(other.log_path, _unused(f"{other.log_path}{CORRUPT_INFIX}0"))
            remove_files([other.index_path, other.timeindex_path])
        fsync_dir(directory)
        logger.warning(
            "%s at byte %d: %s; dropped %d bytes%s (kept in %s)",
            seg.log_path,
            result.valid_bytes,
            what,
            result.dropped_bytes,
            f" and {len(later)} later segment(s)" if later else "",
            os.path.basename(quarantine),
        )
        return segments[: i + 1]
    if not dry_run:
        for ok in validated:
            ok.write_rebuilt_indexes()
    return segments


#: How each action reads in the log; WARNING where records were set aside or are damaged.
_LOGGED = {
    RecoveryActionKind.QUARANTINE: (logging.WARNING, "moved aside (quarantined)"),
    RecoveryActionKind.DAMAGED: (logging.WARNING, "damaged, not cut"),
    RecoveryActionKind.REBUILD_INDEX: (logging.INFO, "indexes rebuilt"),
    RecoveryActionKind.DELETE: (logging.INFO, "removed"),
    RecoveryActionKind.FINISH_SWAP: (logging.INFO, "swap completed"),
}


def _log_actions(actions: list[RecoveryAction]) -> None:
    """Log each action taken, one line naming its file.

    A cut ("truncate") was logged where it happened, with its quarantine file.
    """
    for a in actions:
        level, verb = _LOGGED.get(a.action, (logging.WARNING, a.action))
        if a.action == RecoveryActionKind.TRUNCATE:
            continue
        where = "" if a.position is None else f" at byte {a.position}"
        size = f", {a.bytes} bytes" if a.bytes else ""
        logger.log(level, "%s%s: %s (%s%s)", a.path, where, verb, a.reason, size)


def _unused(path: str) -> str:
    """``path``, or ``path.1``, ``path.2``...: a quarantine never replaces an earlier one."""
    candidate, n = path, 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}.{n}"
    return candidate


def _copy_range(seg: Segment, start: int, target: str) -> None:
    """Copy ``seg``'s ``.log`` from ``start`` to its end into ``target`` durably."""
    with open(seg.log_path, "rb") as src, open(target, "wb") as dst:
        src.seek(start)
        shutil.copyfileobj(src, dst, CHUNK_BYTES)
        dst.flush()
        os.fsync(dst.fileno())
