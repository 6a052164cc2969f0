"""Retention rules: which oldest segments go, and under which rule; the archive hook.

Pure decisions over segment facts (sizes, record counts, timestamps), in the
order Kafka applies them (FORMAT.md section 12); the ``Log`` does the deleting.
Knows no files but the ones it hands to the archive hook.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from .config import LogConfig


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
) -> list[tuple[SegmentFacts, str]]:
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
    doomed: list[tuple[SegmentFacts, str]] = []
    total_bytes = sum(s.size_bytes for s in segments)
    total_records = sum(s.records for s in segments)
    limits = config.deletes
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        following = segments[i + 1] if i < last else None
        if following is None and seg.size_bytes == 0:
            break  # nothing to delete, and a log always keeps a segment
        rule = None
        if following is not None and following.base_offset <= start_offset:
            rule = "start_offset"
        elif (
            limits
            and config.retention_bytes is not None
            and total_bytes - seg.size_bytes >= config.retention_bytes
        ):
            rule = "bytes"
        elif (
            limits
            and config.retention_messages is not None
            and total_records - seg.records >= config.retention_messages
        ):
            rule = "messages"
        elif limits and config.retention_ms is not None:
            newest = (
                seg.max_timestamp
                if seg.max_timestamp is not None and seg.max_timestamp >= 0
                else seg.mtime_ms
            )
            if now_ms - newest > config.retention_ms:
                rule = "age"
        if rule is None:
            break
        doomed.append((seg, rule))
        total_bytes -= seg.size_bytes
        total_records -= seg.records
    return doomed


class ArchiveError(Exception):
    """The archive hook refused a segment; its files must stay."""


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
