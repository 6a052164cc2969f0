"""Retention: which oldest segments go and under which rule, the archive hook, what stays.

``plan`` is the pure decision over segment facts (sizes, record counts,
timestamps), in the order Kafka applies them (FORMAT.md section 12);
``plan_removal`` gathers those facts from segments, ``archive`` hands the
planned ones to the hook (outside the log's lock: it may run a script), and
``still_oldest`` keeps only what is, unchanged, still the log's oldest after
that. ``apply`` is one pass over a log's ``LocalLog``, under the lock it is
handed: it rolls and removes through the ``LocalLog``. Never sees the ``Log``,
its threads or its retention lock.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .config import LogConfig
from .errors import ArchiveError
from .local import LocalLog
from .model import RemovedSegment, RetentionResult, RetentionRule
from .segment import Segment

#: Segments retention takes, oldest first, each with what the result reports of it.
Planned = list[tuple[Segment, RemovedSegment]]


@dataclass(frozen=True)
class SegmentFacts:
    """What the rules need to know of one segment."""

    base_offset: int
    next_offset: int
    records: int
    size_bytes: int
    max_timestamp: int | None
    mtime_ms: int


def plan(
    segments: Sequence[SegmentFacts],
    *,
    start_offset: int,
    config: LogConfig,
    now_ms: int,
) -> list[tuple[SegmentFacts, RetentionRule]]:
    """The oldest segments to delete, each with its rule; the active segment may be among them.

    Rules, checked per segment from the oldest, stopping at the first segment
    no rule deletes (only a prefix of the log ever goes):

    - ``start_offset``: the next segment starts at or below the log start offset
      (the active segment has no next one, so this rule never takes it);
    - ``bytes``: the log would still hold at least ``retention_bytes`` without it;
    - ``messages``: the log would still hold at least ``retention_messages`` records;
    - ``age``: its largest timestamp (or, with none, its file's mtime) is more
      than ``retention_ms`` old.

    The active segment is judged by the same rules as a sealed one, as in
    Kafka's ``UnifiedLog.deletableSegments``: when every segment is due, an idle
    log would otherwise keep its expired records forever. The caller then rolls
    first (the log must keep one segment) and deletes it, so the log becomes one
    empty segment at its end offset. An empty active segment is never planned.
    The three limits apply only when ``cleanup_policy`` contains ``delete``.
    """
    doomed: list[tuple[SegmentFacts, RetentionRule]] = []
    total_bytes = sum(s.size_bytes for s in segments)
    total_records = sum(s.records for s in segments)
    limits = config.deletes
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        following = segments[i + 1] if i < last else None
        if following is None and seg.size_bytes == 0:
            break  # nothing to delete, and a log always keeps a segment
        rule: RetentionRule | None = None
        if following is not None and following.base_offset <= start_offset:
            rule = RetentionRule.START_OFFSET
        elif (
            limits
            and config.retention_bytes is not None
            and total_bytes - seg.size_bytes >= config.retention_bytes
        ):
            rule = RetentionRule.BYTES
        elif (
            limits
            and config.retention_messages is not None
            and total_records - seg.records >= config.retention_messages
        ):
            rule = RetentionRule.MESSAGES
        elif limits and config.retention_ms is not None:
            newest = (
                seg.max_timestamp
                if seg.max_timestamp is not None and seg.max_timestamp >= 0
                else seg.mtime_ms
            )
            if now_ms - newest > config.retention_ms:
                rule = RetentionRule.AGE
        if rule is None:
            break
        doomed.append((seg, rule))
        total_bytes -= seg.size_bytes
        total_records -= seg.records
    return doomed


def run_archive(hook: object, paths: list[str]) -> None:
    """Hand a segment's files to the archive hook; raise ``ArchiveError`` if it fails.

    A callable gets the list of paths; a string or path names an executable
    that gets them as arguments and must exit 0.
    """
    if callable(hook):
        try:
            hook(list(paths))
        except Exception as exc:  # any failure of user code keeps the segment
            raise ArchiveError(f"archive callable failed: {type(exc).__name__}: {exc}") from exc
        return
    executable = os.fspath(hook)  # type: ignore[call-overload]
    try:
        done = subprocess.run([executable, *paths], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ArchiveError(f"archive executable {executable} could not run: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ArchiveError(
            f"archive executable {executable} exited {done.returncode}"
            + (f": {detail[-1]}" if detail else "")
        )


def plan_removal(
    segments: Sequence[Segment],
    *,
    start_offset: int,
    end_offset: int,
    config: LogConfig,
    now_ms: int,
) -> tuple[Planned, bool]:
    """The log's ``segments`` (active last) that ``plan`` takes, and whether the active is one.

    Reads each file's mtime only when ``retention_ms`` needs it. Under the lock.
    """
    count_records = config.deletes and config.retention_messages is not None
    by_age = config.deletes and config.retention_ms is not None
    facts = [
        SegmentFacts(
            base_offset=s.base_offset,
            next_offset=nxt.base_offset if nxt is not None else end_offset,
            records=s.records if count_records else 0,
            size_bytes=s.size,
            max_timestamp=s.max_timestamp if by_age else None,
            mtime_ms=int(os.stat(s.log_path).st_mtime * 1000) if by_age else 0,
        )
        for s, nxt in zip(segments, [*segments[1:], None])
    ]
    doomed = plan(facts, start_offset=start_offset, config=config, now_ms=now_ms)
    by_base = {s.base_offset: s for s in segments[: len(doomed)]}
    planned = []
    for fact, rule in doomed:
        seg = by_base[fact.base_offset]
        info = RemovedSegment(
            base_offset=fact.base_offset,
            next_offset=fact.next_offset,
            records=fact.records if count_records else seg.records,
            size_bytes=fact.size_bytes,
            max_timestamp=seg.max_timestamp,
            rule=rule,
        )
        planned.append((seg, info))
    rolled = bool(doomed) and doomed[-1][0].base_offset == segments[-1].base_offset
    return planned, rolled


def archive(hook: object, planned: Planned) -> tuple[Planned, list[int], list[str]]:
    """Hand planned segments to the archive hook in order; stop at the first refusal.

    Returns the archived prefix, the base offset refused and what the hook said.
    """
    if hook is None:
        return planned, [], []
    for i, (seg, info) in enumerate(planned):
        try:
            run_archive(hook, seg.paths)
        except ArchiveError as exc:
            return planned[:i], [info.base_offset], [f"{seg.log_path}: {exc}"]
    return planned, [], []


def still_oldest(archived: Planned, current: Iterable[Segment], active: Segment) -> Planned:
    """The prefix of ``archived`` that is still, unchanged, the log's oldest sealed segments.

    Compaction swaps in new ``Segment`` objects and a sealed one never changes,
    so identity says "unchanged". Under the lock, after the hook ran unlocked.
    """
    still = 0
    for (seg, _), now in zip(archived, current):
        if seg is not now or seg is active:
            break
        still += 1
    return archived[:still]


def apply(
    local: LocalLog,
    lock: AbstractContextManager[object],
    *,
    dry_run: bool = False,
    sealed_only: bool = False,
) -> RetentionResult:
    """One retention pass of a log: plan, archive, remove, taking ``lock`` for each change.

    Without an archive hook (or in a dry run) everything happens in one hold
    of ``lock``. With one, the hook runs with ``lock`` released (a slow
    archive script must not stall appends), and only what is afterwards
    still, unchanged, the log's oldest (``still_oldest``) goes; a truncation
    meanwhile voids the plan (the next pass plans again). The caller holds
    its retention lock: one archiving pass at a time. ``sealed_only`` (the
    pass a roll made due) keeps the active segment whatever the rules say.

    Raises:
        LogClosedError: the log is (or was meanwhile) closed.
    """
    hook = local.config.archive
    if hook is None or dry_run:
        with lock:
            planned, rolled, token = _plan_locked(local, dry_run=dry_run, sealed_only=sealed_only)
            going, start_offset = _remove_locked(local, planned, token, dry_run=dry_run)
            return RetentionResult(
                removed=tuple(info for _, info in going),
                kept_by_archive_failure=(),
                start_offset=start_offset,
                dry_run=dry_run,
                errors=(),
                rolled=rolled,
            )
    with lock:
        planned, rolled, token = _plan_locked(local, dry_run=False, sealed_only=sealed_only)
    archived, kept, errors = archive(hook, planned)
    with lock:
        still = still_oldest(archived, local.segments, local.segments.active)
        going, start_offset = _remove_locked(local, still, token, dry_run=False)
        return RetentionResult(
            removed=tuple(info for _, info in going),
            kept_by_archive_failure=tuple(kept),
            start_offset=start_offset,
            dry_run=False,
            errors=tuple(errors),
            rolled=rolled,
        )


def _plan_locked(local: LocalLog, *, dry_run: bool, sealed_only: bool) -> tuple[Planned, bool, int]:
    """Under the lock: what retention takes, whether it rolled, and the truncation token.

    When the active segment is among them it is rolled now (not in a dry run):
    the log keeps one segment, so the doomed one is sealed (and whole for the
    archive hook) before it goes. A crash after the roll leaves a sealed
    segment and an empty active one; the next pass deletes it.
    """
    local.check_open()
    planned, rolled = plan_removal(
        list(local.segments),
        start_offset=local.start_offset,
        end_offset=local.end_offset,
        config=local.config,
        now_ms=local.clock(),
    )
    if rolled and sealed_only:
        return planned[:-1], False, local.truncations  # the records just appended stay
    if rolled and not dry_run:
        local.roll()
    return planned, rolled, local.truncations


def _remove_locked(
    local: LocalLog, going: Planned, truncations: int, *, dry_run: bool
) -> tuple[Planned, int]:
    """Under the lock: delete ``going`` (a prefix of the log); what went and the new start."""
    local.check_open()
    if local.truncations != truncations:
        going = []  # a truncation voids the plan; the next pass plans again
    start = local.start_offset
    if going:  # the first segment that stays starts the log
        start = max(start, going[-1][1].next_offset)
    if not dry_run and going:
        local.remove_oldest([seg for seg, _ in going], start)
    return going, start
