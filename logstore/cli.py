"""The ``logstore`` command line: look inside logs, check them, and script them.

Uses only the public ``logstore`` API. Every error is one line on stderr and an
exit status (1: problem found or operation failed, 2: usage), never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import wraps
from typing import Any, Literal, TypeVar

import click

import logstore
from logstore import diagnostics

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(func: F) -> F:
    """Turn any failure into one line on stderr and exit status 1 (2 for a path of the wrong kind)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except logstore.NotALogError as exc:  # the wrong kind of path: a usage error
            click.echo(f"logstore: {_describe(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("logstore: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        except Exception as exc:  # the CLI boundary: never a traceback (unless --debug)
            if _debugging():
                traceback.print_exc()
            click.echo(f"logstore: {_describe(exc)}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")


def show_bytes(data: bytes | None, limit: int = 200) -> str:
    """Printable text when the bytes are UTF-8 text, else hex; long values are cut."""
    if data is None:
        return "null"
    try:
        text = data.decode("utf-8")
        printable = text.isprintable()
    except UnicodeDecodeError:
        printable = False
    shown = json.dumps(text, ensure_ascii=False) if printable else "0x" + data.hex()
    if len(shown) > limit:
        shown = shown[:limit] + f"...({len(data)} bytes)"
    return shown


def _json_bytes(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return {"utf8": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"hex": data.hex()}


def _version_text() -> str:
    return f"logstore {logstore.__version__} (codec: {logstore.__speedups__})"


def _debugging() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


class _LineHandler(logging.Handler):
    """Each log record as one line on stderr, ``logstore: warning: <message>``.

    With ``--debug`` a record's traceback follows it; without, only the error's text.
    """

    def __init__(self, debug: bool) -> None:
        super().__init__(logging.DEBUG if debug else logging.WARNING)
        self.debug = debug

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            error = record.exc_info[1] if record.exc_info else None
            if error is not None and not self.debug:
                text = f"{text}: {_describe(error)}"
            text = text.replace("\n", " ")
            if error is not None and self.debug and record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            click.echo(f"logstore: {record.levelname.lower()}: {text}", err=True)
        except Exception:  # logging must never break the command
            self.handleError(record)


def _show_logs(ctx: click.Context, debug: bool) -> None:
    """Route the library's log records to stderr for this command only."""
    package = logging.getLogger("logstore")
    handler = _LineHandler(debug)
    package.addHandler(handler)
    previous = package.level
    if debug:
        package.setLevel(logging.DEBUG)

    def restore() -> None:
        package.removeHandler(handler)
        package.setLevel(previous)

    ctx.call_on_close(restore)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(message=_version_text())
@click.option(
    "--debug", is_flag=True, help="Show debug logs, and a traceback with an error's line."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Look inside, check and script logstore (Kafka-format) logs.

    Warnings the library logs (a torn tail cut, a file set aside) are shown
    on stderr, one line each.
    """
    _show_logs(ctx, debug)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run ``cli``; a usage error is one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="logstore", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except click.UsageError as exc:
        click.echo(f"logstore: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"logstore: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("logstore: aborted", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--records", is_flag=True, help="Print every record.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and the active codec implementation.",
)
@_one_line_errors
def inspect(path: str, records: bool, as_json: bool) -> None:
    """Summarise a broker root, a partition directory, or one .log/.index/.timeindex file.

    Like Kafka's kafka-dump-log: per segment its offsets, record and batch
    counts, size, timestamps and codecs, and any damage found in it or its
    indexes. Prints as it walks: a partition's totals follow its segments, a
    topic's follow its partitions. Exit 1 if corruption is found, 2 if PATH is
    not a log, a broker root or a segment file.
    """
    path = os.path.normpath(path)
    kind = diagnostics.refuse_unless(path, "log", "broker", "file")
    if kind == "file":
        found = _inspect_file(path, records=records, as_json=as_json)
    elif kind == "log":
        found = _inspect_partition(path, records=records, as_json=as_json).found
    else:
        found = False
        ends: dict[tuple[str, int], int | None] = {}
        by_topic: dict[str, list[str]] = {}
        names: dict[str, tuple[str, int]] = {}
        for part in diagnostics.partition_dirs(path):  # each is named topic-N
            names[part] = diagnostics.parse_partition_dir(os.path.basename(part)) or ("", 0)
            by_topic.setdefault(names[part][0], []).append(part)
        for topic, parts in sorted(by_topic.items()):
            totals = [_inspect_partition(p, records=records, as_json=as_json) for p in parts]
            found |= any(t.found for t in totals)
            for part, t in zip(parts, totals):
                ends[names[part]] = t.end_offset
            line = {
                "type": "topic",
                "topic": topic,
                "partitions": len(parts),
                "records": sum(t.records for t in totals),
                "size_bytes": sum(t.size_bytes for t in totals),
            }
            click.echo(
                json.dumps(line)
                if as_json
                else f"topic {topic}: {line['partitions']} partitions, {line['records']} records, "
                f"{line['size_bytes']} bytes"
            )
        _print_group_lag(path, ends, as_json=as_json)
    if found:
        sys.exit(1)


def _print_group_lag(root: str, ends: dict[tuple[str, int], int | None], *, as_json: bool) -> None:
    """Consumer groups of a broker root: committed offset and lag per partition."""
    committed = diagnostics.group_offsets(root)
    if not committed:
        return
    if not as_json:
        click.echo("consumer groups:")
    for (group, topic, partition), offset in sorted(committed.items()):
        end = ends.get((topic, partition))
        lag = None if end is None else max(end - offset, 0)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "type": "group",
                        "group": group,
                        "topic": topic,
                        "partition": partition,
                        "committed": offset,
                        "end_offset": end,
                        "lag": lag,
                    }
                )
            )
        else:
            click.echo(f"  {group}  {topic}-{partition}  committed {offset}  end {end}  lag {lag}")


def _inspect_file(path: str, *, records: bool, as_json: bool) -> bool:
    directory, name = os.path.split(path)
    base = logstore.diagnostics.parse_base_offset(name)
    if base is None:
        raise click.UsageError(f"{path} is not a segment file (expected <20-digit offset>.log)")
    if name.endswith((".index", ".timeindex")):
        count = 0
        for entry in diagnostics.iter_index_entries(path):
            count += 1
            click.echo(
                json.dumps({"type": "index_entry", **entry})
                if as_json
                else "  ".join(f"{k}: {v}" for k, v in entry.items())
            )
        if not as_json:
            click.echo(f"{path}: {count} entries")
        return False
    if not name.endswith(".log"):
        raise click.UsageError(f"{path} is not a .log, .index or .timeindex file")
    directory = directory or "."
    seg = diagnostics.summarize_segment(directory, base, last=True, check_records=records)
    found = _print_segment(seg, directory=directory, as_json=as_json)
    if records:
        found |= _print_records(directory, base, as_json=as_json)
    return found


@dataclass
class _Totals:
    found: bool = False
    records: int = 0
    size_bytes: int = 0
    segments: int = 0
    start_offset: int | None = None
    end_offset: int | None = None


def _inspect_partition(path: str, *, records: bool, as_json: bool) -> _Totals:
    """Print each segment as it is walked, then the partition's totals."""
    totals = _Totals()
    for seg in diagnostics.iter_partition(path, check_records=records):
        totals.found |= _print_segment(seg, directory=path, as_json=as_json)
        if records:
            totals.found |= _print_records(path, seg.base_offset, as_json=as_json)
        totals.segments += 1
        totals.records += seg.records
        totals.size_bytes += seg.size_bytes
        if totals.start_offset is None:
            totals.start_offset = seg.base_offset
        if seg.next_offset is not None:
            totals.end_offset = max(totals.end_offset or 0, seg.next_offset)
    if totals.end_offset is None:
        totals.end_offset = totals.start_offset
    if as_json:
        click.echo(
            json.dumps(
                {
                    "type": "partition",
                    "partition": path,
                    "start_offset": totals.start_offset,
                    "end_offset": totals.end_offset,
                    "records": totals.records,
                    "size_bytes": totals.size_bytes,
                    "segments": totals.segments,
                }
            )
        )
    else:
        click.echo(
            f"{path}: offsets [{totals.start_offset}, {totals.end_offset}), "
            f"{totals.records} records, {totals.segments} segments, {totals.size_bytes} bytes"
        )
    return totals


def _problem_json(problem: diagnostics.Problem) -> dict[str, Any]:
    return {
        "file": problem.path,
        "position": problem.position,
        "kind": problem.kind,
        "message": problem.message,
    }


def _print_segment(seg: diagnostics.SegmentSummary, *, directory: str, as_json: bool) -> bool:
    """One segment's line, its damage and its indexes' damage; whether there was damage."""
    log_size = os.path.getsize(seg.path) if seg.problems else seg.size_bytes
    index_problems = diagnostics.check_indexes(
        directory,
        seg.base_offset,
        log_size + (0 if seg.problems else seg.incomplete_tail_bytes),
        log_damaged=bool(seg.problems),
    )
    problems = seg.problems + index_problems
    if as_json:
        click.echo(json.dumps({"type": "segment", **diagnostics.as_dict(seg)}))
        for problem in index_problems:
            click.echo(json.dumps({"type": "problem", **_problem_json(problem)}))
        return bool(problems)
    codecs = ",".join(f"{k}:{v}" for k, v in sorted(seg.codecs.items())) or "-"
    line = (
        f"  {os.path.basename(seg.path)}  offsets [{seg.base_offset}, {seg.next_offset})  "
        f"records {seg.records}  batches {seg.batches}  bytes {seg.size_bytes}  "
        f"timestamps {seg.first_timestamp}..{seg.max_timestamp}  codecs {codecs}"
    )
    click.echo(line)
    if seg.incomplete_tail_bytes:
        click.echo(
            f"    incomplete tail: {seg.incomplete_tail_bytes} bytes (in-flight or torn write)"
        )
    for problem in problems:
        click.echo(f"    CORRUPT: {problem.message}")
    for codec, count in _count_codecs(seg.unchecked).items():
        click.echo(f"    could not check {count} batches ({codec} not installed)")
    return bool(problems)


def _count_codecs(unchecked: list[diagnostics.Unchecked]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for u in unchecked:
        counts[u.codec] = counts.get(u.codec, 0) + 1
    return counts


def _print_records(directory: str, base: int, *, as_json: bool) -> bool:
    """Print a segment's records; whether a corrupt batch stopped them."""
    for item in diagnostics.iter_segment_records(directory, base):
        if isinstance(item, logstore.CodecUnavailableError):
            click.echo(f"    could not decode: {item}")
            return False
        if isinstance(item, logstore.CorruptLogError):
            return False  # the segment's line reported it already
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "type": "record",
                        "offset": item.offset,
                        "timestamp": item.timestamp,
                        "key": _json_bytes(item.key),
                        "value": _json_bytes(item.value),
                        "headers": [[k, _json_bytes(v)] for k, v in item.headers],
                    }
                )
            )
        else:
            headers = "".join(f" {k}={show_bytes(v, 60)}" for k, v in item.headers)
            click.echo(
                f"    offset {item.offset}  ts {item.timestamp}  key {show_bytes(item.key, 80)}  "
                f"value {show_bytes(item.value)}{'  headers' + headers if headers else ''}"
            )
    return False


#: A progress bar is worth drawing only for work of at least this many bytes.
PROGRESS_MIN_BYTES = 64 << 20


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report.")
@click.option(
    "--max-problems",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Stop after this many problems.",
)
@_one_line_errors
def verify(path: str, as_json: bool, max_problems: int) -> None:
    """Check every batch (CRC, records, offsets) and every index against its log.

    Lists every problem (up to --max-problems), one line each with file and
    byte position, and goes on after each where it can. Exit 0 only when every
    segment and index was checked and found good; 1 when problems were found
    or batches could not be checked (their codec is not installed); 2 when
    PATH is not a log, a broker root or a segment .log file.
    """
    path = os.path.normpath(path)
    total = diagnostics.total_bytes(path)
    if total >= PROGRESS_MIN_BYTES and _stderr_is_terminal():
        with click.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
            report = diagnostics.verify(path, max_problems=max_problems, progress=bar.update)
    else:
        report = diagnostics.verify(path, max_problems=max_problems)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        for problem in report.problems:
            click.echo(problem.message)
        by_file: dict[str, list[diagnostics.Unchecked]] = {}
        for u in report.unchecked:
            by_file.setdefault(u.path, []).append(u)
        for file, items in by_file.items():
            for codec, count in _count_codecs(items).items():
                click.echo(
                    f"{file}: could not check {count} batches from byte {items[0].position} "
                    f"({codec} not installed; install logstore[{codec}])"
                )
    checked = f"{report.batches} batches, {report.records} records"
    if report.ok:
        if not as_json:
            click.echo(f"ok: {checked} verified")
        return
    parts = []
    if report.problems:
        files = len({p.path for p in report.problems})
        limit = f", stopped at the limit of {max_problems}" if report.stopped_at_limit else ""
        parts.append(f"{len(report.problems)} problem(s) in {files} file(s){limit}")
    if report.unchecked:
        codecs = ", ".join(sorted({u.codec for u in report.unchecked}))
        parts.append(f"could not check {len(report.unchecked)} batches ({codecs} not installed)")
    click.echo(f"logstore: {'; '.join(parts)} ({checked} read)", err=True)
    sys.exit(1)


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


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--dry-run", is_flag=True, help="Report what recovery would change; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report.")
@click.option(
    "--force",
    is_flag=True,
    help="Also cut damage below the recovery point (data once known flushed), "
    "quarantining everything from the first bad byte on.",
)
@_one_line_errors
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


def _compaction_config(
    part: str, policy: logstore.CleanupPolicy | None
) -> tuple[logstore.LogConfig | None, str]:
    """The config the library applies to ``part``, and where it came from.

    The broker root's topic metadata wins; then what ``Log.open`` recorded in
    the partition; then ``--policy`` over the defaults. ``(None, why)`` when
    nothing says what the policy is.
    """
    config = logstore.Broker.stored_config(part)
    if config is not None:
        return config, "the topic metadata of its broker root"
    config = logstore.Log.recorded_config(part)
    if config is not None:
        return config, "the config recorded in it"
    if policy is not None:
        return logstore.LogConfig(cleanup_policy=policy), "--policy"
    return None, (
        f"{part}: its cleanup policy is unknown (no broker root metadata names it and no "
        f"config is recorded in it, e.g. written by an older version or by Kafka); "
        f"give --policy compact to compact it anyway"
    )


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--dry-run", is_flag=True, help="Report what compaction would remove; change nothing."
)
@click.option(
    "--delete-retention-ms",
    type=click.IntRange(min=0),
    default=None,
    help="How long tombstones survive after the compaction that first kept them "
    "(default: the log's own setting).",
)
@click.option(
    "--policy",
    type=click.Choice(["compact", "compact,delete"]),
    default=None,
    help="The cleanup policy of a log whose own policy cannot be known (no broker root "
    "metadata names it, no config is recorded in it). Never overrides a known policy.",
)
@_one_line_errors
def compact(
    path: str, dry_run: bool, delete_retention_ms: int | None, policy: logstore.CleanupPolicy | None
) -> None:
    """Compact a partition now (or every partition under a root whose policy compacts).

    Keeps the newest record of each key; offsets never change; the active
    segment is never touched. A log is compacted only when its cleanup policy
    contains compact, with the settings the library applies to it
    (min_compaction_lag_ms, delete_retention_ms, ...): from the broker root's
    topic metadata, else from the config the log recorded when last opened. A
    log whose policy cannot be known is refused (see --policy). The log must
    not be open in another process.
    """
    path = os.path.normpath(path)
    single = diagnostics.is_partition_dir(path)
    candidates = [path] if single else diagnostics.partition_dirs(path)
    if not candidates:
        raise click.UsageError(f"{path} holds no partition directories or segment files")
    plan: list[tuple[str, logstore.LogConfig]] = []
    for part in candidates:  # decide for every partition before changing any
        config, source = _compaction_config(part, policy)
        if config is None:
            raise click.ClickException(source)
        if config.compacted:
            plan.append((part, config))
        elif single:
            raise click.ClickException(
                f"{part}: cleanup_policy is {config.cleanup_policy!r} (from {source}); "
                f"only a log whose policy contains 'compact' is compacted"
            )
    if not plan:
        click.echo(f"{path}: no partition has a cleanup policy that contains 'compact'")
        return
    for part, config in plan:
        if delete_retention_ms is not None:
            config = dataclasses.replace(config, delete_retention_ms=delete_retention_ms)
        if dry_run:  # a torn tail is an error to report, not a thing to cut
            config = dataclasses.replace(config, recovery="fail")
        with logstore.Log.open(
            part, config, record_config=False, maintenance_interval_ms=None
        ) as log:
            sealed = max(len(log.segments) - 1, 0)
            if not _stderr_is_terminal():  # a bar only where someone watches it
                result = log.compact(dry_run=dry_run)
            else:
                with click.progressbar(
                    length=sealed, label=os.path.basename(part), file=sys.stderr
                ) as bar:
                    result = log.compact(dry_run=dry_run, progress=bar.update)
        verb = "would keep" if dry_run else "kept"
        click.echo(
            f"{part}: {verb} {result.records_after} of {result.records_before} records "
            f"({result.tombstones_removed} tombstones removed), "
            f"{result.bytes_before} -> {result.bytes_after} bytes, "
            f"segments {result.segments_before} -> {result.segments_after}, "
            f"dirty ratio was {result.dirty_ratio:.2f}, {result.seconds:.2f} s"
        )


class _BadLine(Exception):
    """An input line that cannot become a record; the message says why."""


def _key_of(line: bytes, key_field: str | None, key: str | None) -> bytes | None:
    """The key of one input line: a fixed ``--key``, or a field of the line.

    ``--key-field NAME`` takes a JSON object's field; ``--key-field N`` the N-th
    whitespace-separated field (1-based), as in an access-log line.

    Raises:
        _BadLine: the line has no such field.
    """
    if key is not None:
        return key.encode()
    if key_field is None:
        return None
    if key_field.isdigit():
        fields = line.split()
        n = int(key_field)
        if not 1 <= n <= len(fields):
            raise _BadLine(f"no field {n}: {line[:80]!r}")
        return fields[n - 1]
    try:
        value = json.loads(line)[key_field]
    except (ValueError, KeyError, TypeError):
        raise _BadLine(f"not a JSON object with field {key_field!r}: {line[:80]!r}") from None
    return value if isinstance(value, bytes) else str(value).encode()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _FdLines:
    """Lines of a file descriptor as they arrive; a wait ends at a timeout or a stop signal.

    Reads with ``select`` and ``os.read`` rather than a buffered reader, which
    would block until a whole buffer or line came: ``tail -f | logstore
    produce`` needs the partial batch written when the linger expires while
    stdin is idle. While it is open, SIGINT and SIGTERM only set ``stopped_by``
    (a wakeup pipe ends the ``select``), so the caller writes what was read
    and closes the broker instead of dying with lines in memory.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._partial = b""  # bytes after the last newline read
        self.eof = False
        self.stopped_by: int | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # set_wakeup_fd requires it
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w)
        self._old_handlers = {
            s: signal.signal(s, self._on_signal)
            for s in _STOP_SIGNALS
            if signal.getsignal(s) is not signal.SIG_IGN  # e.g. nohup: ignored stays ignored
        }

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopped_by = signum

    @property
    def unfinished_bytes(self) -> int:
        """Bytes read after the last newline (a line still being written)."""
        return len(self._partial)

    def read(self, timeout: float | None) -> list[bytes]:
        """The complete lines that arrive within ``timeout`` seconds (``None``: no limit).

        At end of input a last line without a newline counts as complete.
        """
        if self.eof or self.stopped_by is not None:
            return []
        ready, _, _ = select.select([self._fd, self._wake_r], [], [], timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 512)  # drain: only our handlers' flag matters
        if self._fd not in ready or self.stopped_by is not None:
            return []
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            self.eof = True
            last, self._partial = self._partial, b""
            return [last] if last else []
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return lines

    def close(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        os.close(self._wake_r)
        os.close(self._wake_w)


class _StreamLines:
    """The same interface over a Python stream without a file descriptor (a test's stdin)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.eof = False
        self.stopped_by: int | None = None
        self.unfinished_bytes = 0

    def read(self, timeout: float | None) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(1 << 16)
        if not lines:
            self.eof = True
        return [line[:-1] if line.endswith(b"\n") else line for line in lines]

    def close(self) -> None:
        pass


def _stdin_lines() -> _FdLines | _StreamLines:
    stream = sys.stdin.buffer
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return _StreamLines(stream)
    return _FdLines(fd)


def _lines(n: int, noun: str = "line") -> str:
    """``1 line``, ``2,500 lines``: counts as an operator reads them."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


class _LineWriter:
    """Turns lines into records and writes them in batches, counting exactly what is stored."""

    def __init__(
        self,
        broker: logstore.Broker,
        topic: str,
        *,
        key_field: str | None,
        key: str | None,
        skip_bad: bool,
    ) -> None:
        self._broker = broker
        self._topic = topic
        self._logs = [
            broker.topic(topic).partition(p) for p in range(broker.topic(topic).partitions)
        ]
        self._compacted = broker.topic(topic).config.compacted
        self._key_field = key_field
        self._key = key
        self._skip_bad = skip_bad
        self.pending: list[logstore.Message] = []
        self.lines = 0  # lines read
        self.written = 0  # lines stored
        self.skipped = 0
        self.first_bad: str | None = None

    def add(self, line: bytes) -> None:
        """Queue one line; a bad line is skipped, or ends the run after what came before it."""
        self.lines += 1
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            key = _key_of(line, self._key_field, self._key)
            if key is None and self._compacted:
                raise _BadLine(f"no key, and topic {self._topic} is compacted")
        except _BadLine as exc:
            where = f"line {self.lines:,}: {exc}"
            if self._skip_bad:
                self.skipped += 1
                self.first_bad = self.first_bad or where
                return
            self.flush()
            raise click.ClickException(f"wrote {_lines(self.written)}; {where}") from None
        self.pending.append(logstore.Message(line, key=key))

    def flush(self) -> None:
        """Write the pending lines; on failure say exactly how many of them were stored."""
        if not self.pending:
            return
        ends = [log.end_offset for log in self._logs]
        try:
            self._broker.produce_many(self._topic, self.pending)
        except (logstore.LogStoreError, OSError) as exc:
            stored = sum(log.end_offset - end for log, end in zip(self._logs, ends))
            self.written += stored
            raise click.ClickException(
                f"wrote {_lines(self.written)}; {len(self.pending) - stored:,} of the last "
                f"{_lines(len(self.pending))} read were not written: {_describe(exc)}"
            ) from None
        self.written += len(self.pending)
        self.pending = []

    def summary(self) -> str:
        text = f"wrote {_lines(self.written)} to {self._topic}"
        if self.skipped:
            text += f", skipped {_lines(self.skipped, 'bad line')} (first: {self.first_bad})"
        return text


@cli.command()
@click.argument("root", type=click.Path(file_okay=False))
@click.argument("topic")
@click.option(
    "--key-field", help="Key each line by a JSON field NAME, or by whitespace field N (1-based)."
)
@click.option("--key", help="Use this key for every line.")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="Create the topic with N partitions if missing.",
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=1000, show_default=True, help="Lines per batch."
)
@click.option(
    "--linger-ms",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Write a partial batch once its first line has waited this long.",
)
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Skip lines that cannot become records (no such key field, no key for a compacted "
    "topic) and count them, "
    "instead of stopping at the first (exit 1, after writing the lines before it).",
)
@_one_line_errors
def produce(
    root: str,
    topic: str,
    key_field: str | None,
    key: str | None,
    partitions: int | None,
    batch: int,
    linger_ms: int,
    skip_bad: bool,
) -> None:
    """Append one record per stdin line to TOPIC under ROOT, routed by key.

    Lines are written in batches of --batch lines, and at least every
    --linger-ms, so a slow stream (tail -f) is stored as it comes. A line
    that cannot become a record stops the run (exit 1) after every line
    before it is written, or with --skip-bad is counted and skipped. SIGINT
    and SIGTERM write every complete line already read, close the log
    cleanly and exit 130 or 143.
    """
    if key is not None and key_field is not None:
        raise click.UsageError("use --key or --key-field, not both")
    linger_s = linger_ms / 1000
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        if topic not in broker.topics(include_internal=True):
            if partitions is None:
                raise click.ClickException(
                    f"no topic {topic!r} in {root} (give --partitions to create it)"
                )
            broker.create_topic(topic, partitions)
        if broker.topic(topic).config.compacted and key is None and key_field is None:
            raise click.UsageError(f"topic {topic} is compacted: give --key or --key-field")
        writer = _LineWriter(broker, topic, key_field=key_field, key=key, skip_bad=skip_bad)
        source = _stdin_lines()
        try:
            deadline: float | None = None  # when the oldest pending line must be written
            while not source.eof and source.stopped_by is None:
                wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                for line in source.read(wait):
                    writer.add(line)
                    if len(writer.pending) >= batch:
                        writer.flush()
                        deadline = None
                if not writer.pending:
                    deadline = None
                elif deadline is None:
                    deadline = time.monotonic() + linger_s
                if deadline is not None and time.monotonic() >= deadline:
                    writer.flush()
                    deadline = None
            writer.flush()
        finally:
            source.close()
    if source.stopped_by is None:
        click.echo(writer.summary(), err=True)
        return
    text = f"stopped by {signal.Signals(source.stopped_by).name}: {writer.summary()}"
    if source.unfinished_bytes:
        text += f"; an unfinished last line ({source.unfinished_bytes} bytes) was not written"
    click.echo(text, err=True)
    sys.exit(128 + source.stopped_by)


def _parse_start(value: str) -> Literal["earliest", "latest"] | int:
    if value == "earliest":
        return "earliest"
    if value == "latest":
        return "latest"
    if value.lstrip("-").isdigit():
        return int(value)
    raise click.BadParameter("use earliest, latest or a timestamp in ms", param_hint="--from")


@cli.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("topic")
@click.option("--group", help="Consume as this group: resume from and commit its offsets.")
@click.option(
    "--from",
    "start",
    default="earliest",
    show_default=True,
    help="earliest, latest or TIMESTAMP (ms) for a group with no commits.",
)
@click.option("--max", "limit", type=click.IntRange(min=1), help="Stop after N records.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@_one_line_errors
def consume(
    root: str, topic: str, group: str | None, start: str, limit: int | None, as_json: bool
) -> None:
    """Print TOPIC's records (values, one per line) until caught up.

    With --group the group's committed offsets are the starting point and are
    committed as records are printed; without, a throwaway group is used.
    """
    begin = _parse_start(start)
    diagnostics.refuse_unless(root, "broker")  # consuming never creates a root
    out = sys.stdout.buffer
    printed = 0
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        name = group or f"logstore-cli-{os.getpid()}"
        with broker.consumer(name, [topic], start=begin) as consumer:
            while limit is None or printed < limit:
                want = 500 if limit is None else min(500, limit - printed)
                records = consumer.poll(want)
                if not records:
                    break
                for item in records:
                    r = item.record
                    if as_json:
                        line = json.dumps(
                            {
                                "topic": item.topic,
                                "partition": item.partition,
                                "offset": r.offset,
                                "timestamp": r.timestamp,
                                "key": _json_bytes(r.key),
                                "value": _json_bytes(r.value),
                            }
                        ).encode()
                    else:
                        line = r.value if r.value is not None else b""
                    out.write(line + b"\n")
                printed += len(records)
                out.flush()
                if group is not None:
                    consumer.commit()
