"""``logstore recover``: crash recovery run now, each change reported once."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

import logstore
from logstore import diagnostics

from . import common

_PAST = {
    logstore.RecoveryActionKind.TRUNCATE: "truncated",
    logstore.RecoveryActionKind.QUARANTINE: "quarantined",
    logstore.RecoveryActionKind.REBUILD_INDEX: "rebuilt index",
    logstore.RecoveryActionKind.DELETE: "deleted",
    logstore.RecoveryActionKind.FINISH_SWAP: "finished swap",
}
_FUTURE = {
    logstore.RecoveryActionKind.TRUNCATE: "would truncate",
    logstore.RecoveryActionKind.QUARANTINE: "would quarantine",
    logstore.RecoveryActionKind.REBUILD_INDEX: "would rebuild index",
    logstore.RecoveryActionKind.DELETE: "would delete",
    logstore.RecoveryActionKind.FINISH_SWAP: "would finish swap",
}


@click.command()
@click.argument("path", type=click.Path())
@click.option("--dry-run", is_flag=True, help="Report what recovery would change; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report.")
@click.option(
    "--force",
    is_flag=True,
    help="Also cut damage below the recovery point (data once known flushed), "
    "quarantining everything from the first bad byte on.",
)
@common.one_line_errors
def recover(path: str, dry_run: bool, as_json: bool, force: bool) -> None:
    """Run crash recovery on a partition (or every partition under a root) now.

    Truncates a bad tail (torn batch, CRC mismatch, zero fill, offset
    regression) after moving the cut bytes into a .corrupt-<position> file,
    and rebuilds indexes found wrong. Damage below the recovery point is
    reported, and cut only with --force. Prints each change once and counts
    only real changes. Exit 0 when the log is sound afterwards, 1 while damage
    remains (or on failure), 2 when PATH is not a log or broker root. The log
    must not be open in another process.
    """
    path = os.path.normpath(path)
    kind = diagnostics.refuse_unless(path, "log", "broker")
    parts = [path] if kind == "log" else diagnostics.partition_dirs(path)
    changes: list[dict[str, Any]] = []
    remaining: list[dict[str, Any]] = []
    for part in parts:
        bad = _bad_indexes(part)
        # The log's own settings (index_interval_bytes...) rebuild its indexes as it wrote them.
        config = logstore.Broker.stored_config(part) or logstore.Log.recorded_config(part)
        with _reported_here("logstore.loader"):
            actions = logstore.Log.recover(
                part,
                config,
                dry_run=dry_run,
                force=force,
                rebuild_indexes=sorted({b for b, _ in bad.values()}),
            )
        seen: set[tuple[str, str, int | None]] = set()
        for action in actions:
            if action.action == logstore.RecoveryActionKind.REBUILD_INDEX:
                continue  # reported below, once per index file that was wrong
            key = (action.path, action.action, action.position)
            if key in seen:
                continue
            seen.add(key)
            entry = {"partition": part, **vars(action)}
            (remaining if action.action == logstore.RecoveryActionKind.DAMAGED else changes).append(
                entry
            )
        still_bad = {} if dry_run else _bad_indexes(part)
        for index_path, (_, problem) in sorted(bad.items()):
            if dry_run or (os.path.exists(index_path) and index_path not in still_bad):
                changes.append(
                    {
                        "partition": part,
                        "path": index_path,
                        "action": logstore.RecoveryActionKind.REBUILD_INDEX,
                        "reason": _reason(problem),
                        "position": problem.position,
                        "bytes": 0,
                        "kind": problem.kind,
                    }
                )
        for index_path, (_, problem) in sorted(still_bad.items()):
            remaining.append(
                {
                    "partition": part,
                    "path": index_path,
                    "action": logstore.RecoveryActionKind.DAMAGED,
                    "reason": _reason(problem),
                    "position": problem.position,
                    "bytes": 0,
                    "kind": problem.kind,
                }
            )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": path,
                    "dry_run": dry_run,
                    "force": force,
                    "partitions": len(parts),
                    "ok": not remaining,
                    "changed": len(changes),
                    "actions": changes,
                    "damage_remaining": remaining,
                }
            )
        )
    else:
        for entry in changes + remaining:
            verb = (_FUTURE if dry_run else _PAST).get(entry["action"], entry["action"])
            where = "" if entry["position"] is None else f" at byte {entry['position']}"
            size = f" ({entry['bytes']} bytes)" if entry["bytes"] else ""
            click.echo(f"{verb}: {entry['path']}{where}{size}: {entry['reason']}")
        state = "would change" if dry_run else "changed"
        click.echo(f"{len(parts)} partition(s) checked, {len(changes)} thing(s) {state}")
    if remaining:
        if not as_json:
            click.echo(
                f"logstore: damage remains in {len({e['path'] for e in remaining})} file(s) "
                "(below the recovery point: cut it with --force)",
                err=True,
            )
        sys.exit(1)


def _bad_indexes(part: str) -> dict[str, tuple[int, diagnostics.Problem]]:
    """Index files of ``part`` that are missing or wrong: path -> (segment base, first problem).

    The index of a damaged segment is left to recovery: rebuilt from a damaged
    ``.log`` it would cover only the part before the damage.
    """
    bad: dict[str, tuple[int, diagnostics.Problem]] = {}
    for seg in diagnostics.iter_partition(part):
        if seg.problems:
            continue
        size = seg.size_bytes + seg.incomplete_tail_bytes
        for problem in diagnostics.check_indexes(part, seg.base_offset, size):
            bad.setdefault(problem.path, (seg.base_offset, problem))
    return bad


def _reason(problem: diagnostics.Problem) -> str:
    """A problem's message without the file and position that the action line already shows."""
    head = f"{problem.path} at byte {problem.position}: "
    for prefix in (head, f"{problem.path}: "):
        if problem.message.startswith(prefix):
            return problem.message[len(prefix) :]
    return problem.message


@contextlib.contextmanager
def _reported_here(logger_name: str) -> Iterator[None]:
    """Drop one library logger's records while a command prints those actions itself.

    ``recover`` reports every recovery action on stdout; the loader's warnings
    of the same actions would print each one a second time on stderr.
    """
    quiet = logging.getLogger(logger_name)
    previous = quiet.disabled
    quiet.disabled = True
    try:
        yield
    finally:
        quiet.disabled = previous
