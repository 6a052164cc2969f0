"""``logstore compact``: a partition (or every compacted one under a root) compacted now."""

from __future__ import annotations

import dataclasses
import os
import sys

import click

import logstore
from logstore import diagnostics

from . import common


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


@click.command()
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
@common.one_line_errors
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
            if not common.stderr_is_terminal():  # a bar only where someone watches it
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
