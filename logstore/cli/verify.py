"""``logstore verify``: every batch and index checked, every problem listed."""

from __future__ import annotations

import json
import os
import sys

import click

from logstore import diagnostics

from . import common

#: A progress bar is worth drawing only for work of at least this many bytes.
PROGRESS_MIN_BYTES = 64 << 20


@click.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report.")
@click.option(
    "--max-problems",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Stop after this many problems.",
)
@common.one_line_errors
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
    if total >= PROGRESS_MIN_BYTES and common.stderr_is_terminal():
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
            for codec, count in common.count_codecs(items).items():
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
