"""``logstore inspect``: a root, a partition or one segment file, as kafka-dump-log shows it."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import click

import logstore
from logstore import diagnostics

from . import common


@click.command()
@click.argument("path", type=click.Path())
@click.option("--records", is_flag=True, help="Print every record.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=common.print_version,
    help="Print the version and the active codec implementation.",
)
@common.one_line_errors
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
    for codec, count in common.count_codecs(seg.unchecked).items():
        click.echo(f"    could not check {count} batches ({codec} not installed)")
    return bool(problems)


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
                        "key": common.json_bytes(item.key),
                        "value": common.json_bytes(item.value),
                        "headers": [[k, common.json_bytes(v)] for k, v in item.headers],
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
