"""Read-only inspection and verification of a broker root, a partition or one file.

The public face of the diagnostics (``logstore.diagnostics``): what a path is,
and ``verify`` over it, which adds up the walks of ``inspection`` (segments,
records, indexes; re-exported here with their report types) into one report.
Everything here only reads: it is safe on a log a live process is writing.
Never opens a ``Log`` (that would take the directory lock and may change files).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._dirkind import DirectoryKind, describe, directory_kind
from ._fs import LOG_SUFFIX, parse_base_offset, segment_name
from .checkpoints import parse_partition_dir
from .errors import NotALogError
from .inspection import (
    PartitionSummary,
    Problem,
    SegmentSummary,
    Unchecked,
    as_dict,
    check_indexes,
    group_offsets,
    index_entries,
    iter_index_entries,
    iter_partition,
    iter_segment_records,
    looks_compacted,
    segment_bases,
    summarize_partition,
    summarize_segment,
    verify_index,
)

__all__ = [
    "PartitionSummary",
    "Problem",
    "SegmentSummary",
    "Unchecked",
    "VerifyReport",
    "as_dict",
    "check_indexes",
    "group_offsets",
    "index_entries",
    "is_partition_dir",
    "iter_index_entries",
    "iter_partition",
    "iter_segment_records",
    "kind_of",
    "looks_compacted",
    "parse_base_offset",
    "parse_partition_dir",
    "partition_dirs",
    "refuse_unless",
    "segment_bases",
    "summarize_partition",
    "summarize_segment",
    "total_bytes",
    "verify",
    "verify_index",
    "verify_targets",
]


def kind_of(path: str) -> DirectoryKind:
    """What ``path`` is: ``"log"``, ``"broker"``, ``"file"``, ``"empty"``, ``"foreign"``..."""
    return directory_kind(path)


def refuse_unless(path: str, *kinds: DirectoryKind) -> DirectoryKind:
    """The kind of ``path``; ``NotALogError`` (naming it and what it is) if not one of ``kinds``."""
    kind = directory_kind(path)
    if kind not in kinds:
        raise NotALogError(describe(path, kind), path, kind)
    return kind


def is_partition_dir(path: str) -> bool:
    return directory_kind(path) == "log"


def partition_dirs(root: str) -> list[str]:
    """Partition directories directly under a broker root, sorted by topic then partition."""
    found = []
    for name in os.listdir(root):
        full = os.path.join(root, name)
        parsed = parse_partition_dir(name)
        if parsed is not None and os.path.isdir(full):
            found.append((*parsed, full))
    return [full for _, _, full in sorted(found)]


# ---------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """What ``verify`` checked and found. ``as_dict`` is the documented ``--json`` shape.

    ``ok`` only when every segment and index was checked and nothing was wrong:
    problems, unchecked batches (a codec not installed) or stopping at the
    problem limit each make it false.
    """

    path: str
    kind: str
    max_problems: int
    segments_checked: int = 0
    indexes_checked: int = 0
    batches: int = 0
    records: int = 0
    problems: list[Problem] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    stopped_at_limit: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unchecked and not self.stopped_at_limit

    def add(self, problems: list[Problem]) -> None:
        room = self.max_problems - len(self.problems)
        self.problems.extend(problems[:room])
        if len(problems) > room:
            self.stopped_at_limit = True

    @property
    def full(self) -> bool:
        return len(self.problems) >= self.max_problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "ok": self.ok,
            "segments_checked": self.segments_checked,
            "indexes_checked": self.indexes_checked,
            "batches": self.batches,
            "records": self.records,
            "problems": [
                {"file": p.path, "position": p.position, "kind": p.kind, "message": p.message}
                for p in self.problems
            ],
            "stopped_at_limit": self.stopped_at_limit,
            "unchecked_batches": len(self.unchecked),
            "unchecked": [
                {"file": u.path, "position": u.position, "codec": u.codec, "message": u.message}
                for u in self.unchecked[: self.max_problems]
            ],
        }


def verify_targets(path: str) -> tuple[DirectoryKind, list[tuple[str, list[int]]]]:
    """What ``verify`` will walk: ``(kind, [(partition directory, segment bases)])``.

    Raises ``NotALogError`` for anything but a log, a broker root or a segment ``.log``.
    """
    kind = refuse_unless(path, "log", "broker", "file")
    if kind == "file":
        directory, name = os.path.split(path)
        base = parse_base_offset(name)
        if base is None or not name.endswith(LOG_SUFFIX):
            raise NotALogError(
                f"{path} is not a segment .log file (expected <20-digit offset>.log)", path, kind
            )
        return kind, [(directory or ".", [base])]
    if kind == "log":
        return kind, [(path, segment_bases(path))]
    return kind, [(p, segment_bases(p)) for p in partition_dirs(path)]


def verify(
    path: str, *, max_problems: int = 100, progress: Callable[[int], None] | None = None
) -> VerifyReport:
    """Check every batch (CRC, records, offsets) and every index of ``path``; list every problem.

    Like SQLite's ``PRAGMA integrity_check``: goes on after a problem (at the
    next batch when the bad one's length is plausible, else at the next
    segment) and stops after ``max_problems``. ``progress`` is called with the
    ``.log`` bytes of each segment once it is checked.

    Raises:
        NotALogError: ``path`` is not a log, a broker root or a segment ``.log``.
    """
    kind, targets = verify_targets(path)
    report = VerifyReport(
        path=path, kind="segment" if kind == "file" else kind, max_problems=max_problems
    )
    for directory, bases in targets:
        contiguous = not looks_compacted(directory)
        if kind == "file":
            summaries: Iterator[SegmentSummary] = iter(
                [
                    summarize_segment(
                        directory,
                        bases[0],
                        last=True,
                        check_records=True,
                        contiguous=contiguous,
                        max_problems=max_problems,
                    )
                ]
            )
        else:
            summaries = iter_partition(directory, check_records=True, max_problems=max_problems)
        for seg in summaries:  # by its own base: a live log may roll or delete meanwhile
            base = seg.base_offset
            report.segments_checked += 1
            report.batches += seg.batches
            report.records += seg.records
            report.unchecked.extend(seg.unchecked)
            report.add(seg.problems)
            log_size = seg.size_bytes + seg.incomplete_tail_bytes
            if seg.problems:  # entries may point anywhere in the file
                log_size = os.path.getsize(seg.path)
            if not report.full:
                report.add(check_indexes(directory, base, log_size, log_damaged=bool(seg.problems)))
                report.indexes_checked += 2
            if progress is not None:
                progress(log_size)
            if report.full:
                report.stopped_at_limit = report.stopped_at_limit or _more_to_check(
                    targets, directory, base
                )
                return report
    return report


def _more_to_check(targets: list[tuple[str, list[int]]], directory: str, base: int) -> bool:
    """Whether segments remain after ``(directory, base)``: the limit then hid some."""
    for i, (d, bases) in enumerate(targets):
        if d == directory:
            return bases[-1] != base or i < len(targets) - 1
    return False


def total_bytes(path: str) -> int:
    """The ``.log`` bytes ``verify`` would read (for a progress bar's length)."""
    _, targets = verify_targets(path)
    return sum(
        os.path.getsize(os.path.join(d, segment_name(b, LOG_SUFFIX)))
        for d, bases in targets
        for b in bases
    )
