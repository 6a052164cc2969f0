"""The ``logstore`` command line: look inside logs, check them, and script them.

Uses only the public ``logstore`` API. Every error is one line on stderr and an
exit status (1: problem found or operation failed, 2: usage), never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any, Literal, TypeVar

import click

import logstore
from logstore import diagnostics

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(func: F) -> F:
    """Turn any failure into one line on stderr and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
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
@click.argument("path", type=click.Path(exists=True))
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
    counts, size, timestamps and codecs. Exit 1 if corruption is found.
    """
    path = os.path.normpath(path)
    if os.path.isfile(path):
        found = _inspect_file(path, records=records, as_json=as_json)
    elif diagnostics.is_partition_dir(path):
        found = _inspect_partition(path, records=records, as_json=as_json)
    else:
        parts = diagnostics.partition_dirs(path)
        if not parts:
            raise click.UsageError(f"{path} holds no partition directories or segment files")
        summaries = {p: diagnostics.summarize_partition(p, check_records=records) for p in parts}
        topics: dict[str, list[diagnostics.PartitionSummary]] = {}
        ends: dict[tuple[str, int], int | None] = {}
        for part, summary in summaries.items():
            topic, _, number = os.path.basename(part).rpartition("-")
            topics.setdefault(topic, []).append(summary)
            ends[(topic, int(number))] = summary.end_offset
        for topic, members in sorted(topics.items()):
            line = {
                "topic": topic,
                "partitions": len(members),
                "records": sum(m.records for m in members),
                "size_bytes": sum(m.size_bytes for m in members),
            }
            click.echo(
                json.dumps(line)
                if as_json
                else f"topic {topic}: {line['partitions']} partitions, {line['records']} records, "
                f"{line['size_bytes']} bytes"
            )
        found = False
        for part, summary in summaries.items():
            found |= _inspect_partition(part, records=records, as_json=as_json, summary=summary)
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
        entries = diagnostics.index_entries(path)
        for entry in entries:
            click.echo(
                json.dumps(entry) if as_json else "  ".join(f"{k}: {v}" for k, v in entry.items())
            )
        if not as_json:
            click.echo(f"{path}: {len(entries)} entries")
        return False
    if not name.endswith(".log"):
        raise click.UsageError(f"{path} is not a .log, .index or .timeindex file")
    summary = diagnostics.summarize_segment(
        directory or ".", base, last=True, check_records=records
    )
    _print_segment(summary, as_json=as_json)
    if records:
        _print_records(directory or ".", base, as_json=as_json)
    return summary.problem is not None


def _inspect_partition(
    path: str,
    *,
    records: bool,
    as_json: bool,
    summary: diagnostics.PartitionSummary | None = None,
) -> bool:
    part = summary or diagnostics.summarize_partition(path, check_records=records)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "partition": path,
                    "start_offset": part.start_offset,
                    "end_offset": part.end_offset,
                    "records": part.records,
                    "size_bytes": part.size_bytes,
                    "segments": len(part.segments),
                }
            )
        )
    else:
        click.echo(
            f"{path}: offsets [{part.start_offset}, {part.end_offset}), "
            f"{part.records} records, {len(part.segments)} segments, {part.size_bytes} bytes"
        )
    for seg in part.segments:
        _print_segment(seg, as_json=as_json)
        if records:
            _print_records(path, seg.base_offset, as_json=as_json)
    return bool(part.problems)


def _print_segment(seg: diagnostics.SegmentSummary, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(diagnostics.as_dict(seg)))
        return
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
    if seg.problem:
        click.echo(f"    CORRUPT: {seg.problem}")


def _print_records(directory: str, base: int, *, as_json: bool) -> None:
    for item in diagnostics.iter_segment_records(directory, base):
        if isinstance(item, logstore.CorruptLogError):
            if item.kind not in ("truncated", "zero_fill"):
                click.echo(f"    CORRUPT: {item}")
            return
        if as_json:
            click.echo(
                json.dumps(
                    {
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


@cli.command()
@click.argument("path", type=click.Path(exists=True))
@_one_line_errors
def verify(path: str) -> None:
    """Check every batch (CRC, records, offsets) and every index against its log.

    Exit 0 when clean; 1 at the first problem, naming the file and byte position.
    """
    path = os.path.normpath(path)
    if os.path.isfile(path):
        directory, name = os.path.split(path)
        base = diagnostics.parse_base_offset(name)
        if base is None or not name.endswith(".log"):
            raise click.UsageError(f"{path} is not a segment .log file")
        targets = [(directory or ".", [base])]
    elif diagnostics.is_partition_dir(path):
        targets = [(path, diagnostics.segment_bases(path))]
    else:
        parts = diagnostics.partition_dirs(path)
        if not parts:
            raise click.UsageError(f"{path} holds no partition directories or segment files")
        targets = [(p, diagnostics.segment_bases(p)) for p in parts]
    batches = records = 0
    for directory, bases in targets:
        if len(bases) > 1:
            summaries = diagnostics.summarize_partition(directory, check_records=True).segments
        else:
            summaries = [
                diagnostics.summarize_segment(
                    directory,
                    base,
                    last=True,
                    check_records=True,
                    contiguous=not diagnostics.looks_compacted(directory),
                )
                for base in bases
            ]
        for base, seg in zip(bases, summaries):
            if seg.problem:
                click.echo(f"logstore: {seg.problem}", err=True)
                sys.exit(1)
            problem = diagnostics.verify_index(
                directory, base, seg.size_bytes + seg.incomplete_tail_bytes
            )
            if problem:
                click.echo(f"logstore: {problem}", err=True)
                sys.exit(1)
            batches += seg.batches
            records += seg.records
    click.echo(f"ok: {batches} batches, {records} records verified")


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Report what recovery would change; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per action.")
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
    and rebuilds indexes. Damage below the recovery point is reported, and cut
    only with --force. The log must not be open in another process.
    """
    path = os.path.normpath(path)
    parts = [path] if diagnostics.is_partition_dir(path) else diagnostics.partition_dirs(path)
    if not parts:
        raise click.UsageError(f"{path} holds no partition directories or segment files")
    changed = 0
    for part in parts:
        actions = logstore.Log.recover(part, dry_run=dry_run, force=force)
        for action in actions:
            if action.action == "rebuild_index" and action.reason == "unclean shutdown":
                continue  # every recovered segment's indexes are rebuilt: not news
            changed += 1
            if as_json:
                click.echo(json.dumps({"partition": part, "dry_run": dry_run, **vars(action)}))
            else:
                verb = f"would {action.action}" if dry_run else action.action
                where = "" if action.position is None else f" at byte {action.position}"
                size = f" ({action.bytes} bytes)" if action.bytes else ""
                click.echo(f"{verb}: {action.path}{where}{size}: {action.reason}")
    if not as_json:
        state = "would change" if dry_run else "changed"
        click.echo(f"{len(parts)} partition(s) checked, {changed} thing(s) {state}")


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
    "(default: the LogConfig default, 1 day).",
)
@_one_line_errors
def compact(path: str, dry_run: bool, delete_retention_ms: int | None) -> None:
    """Compact a partition now (or every compacted partition under a root).

    Keeps the newest record of each key; offsets never change; the active
    segment is never touched. Under a root, a partition counts as compacted
    when it has a cleaner checkpoint (it was compacted before). The log must
    not be open in another process.
    """
    path = os.path.normpath(path)
    if diagnostics.is_partition_dir(path):
        parts = [path]
    else:
        parts = [p for p in diagnostics.partition_dirs(path) if diagnostics.looks_compacted(p)]
        if not parts:
            raise click.UsageError(f"{path} holds no compacted partitions")
    fields: dict[str, Any] = {"cleanup_policy": "compact", "fsync": "never"}
    if delete_retention_ms is not None:
        fields["delete_retention_ms"] = delete_retention_ms
    config = logstore.LogConfig(**fields)
    for part in parts:
        with logstore.Log.open(part, config) as log:
            sealed = max(len(log.segments) - 1, 0)
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


def _key_of(line: bytes, key_field: str | None, key: str | None) -> bytes | None:
    """The key of one input line: a fixed ``--key``, or a field of the line.

    ``--key-field NAME`` takes a JSON object's field; ``--key-field N`` the N-th
    whitespace-separated field (1-based), as in an access-log line.
    """
    if key is not None:
        return key.encode()
    if key_field is None:
        return None
    if key_field.isdigit():
        fields = line.split()
        n = int(key_field)
        if not 1 <= n <= len(fields):
            raise click.ClickException(f"line has no field {n}: {line[:80]!r}")
        return fields[n - 1]
    try:
        value = json.loads(line)[key_field]
    except (ValueError, KeyError, TypeError):
        raise click.ClickException(
            f"line is not a JSON object with field {key_field!r}: {line[:80]!r}"
        ) from None
    return value if isinstance(value, bytes) else str(value).encode()


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
@_one_line_errors
def produce(
    root: str,
    topic: str,
    key_field: str | None,
    key: str | None,
    partitions: int | None,
    batch: int,
) -> None:
    """Append one record per stdin line to TOPIC under ROOT, routed by key."""
    if key is not None and key_field is not None:
        raise click.UsageError("use --key or --key-field, not both")
    count = 0
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        if topic not in broker.topics(include_internal=True):
            if partitions is None:
                raise click.ClickException(
                    f"no topic {topic!r} in {root} (give --partitions to create it)"
                )
            broker.create_topic(topic, partitions)
        stream = sys.stdin.buffer
        pending: list[logstore.Message] = []
        for raw in stream:
            line = raw.rstrip(b"\r\n")
            pending.append(logstore.Message(line, key=_key_of(line, key_field, key)))
            if len(pending) >= batch:
                broker.produce_many(topic, pending)
                count += len(pending)
                pending = []
        if pending:
            broker.produce_many(topic, pending)
            count += len(pending)
    click.echo(f"produced {count} records to {topic}", err=True)


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
