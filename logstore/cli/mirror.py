"""``logstore mirror``: copy a root's topics to a Kafka cluster, resumably.

The copying is ``logstore.mirror``'s; this module parses the options, turns
SIGINT and SIGTERM into a clean stop, draws the progress bar (on a terminal)
and prints the summary.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from logstore import diagnostics
from logstore import mirror as mirroring

from . import common


def _properties(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="-X")
        out[key.strip()] = value
    return out


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT and SIGTERM set ``stop`` (the mirror then finishes cleanly); the list gets the signal."""
    caught: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def summary_lines(summary: mirroring.MirrorSummary, *, bootstrap: str) -> list[str]:
    """The end-of-run report: totals, then one line per partition."""
    seconds = max(summary.seconds, 1e-9)
    state = "stopped" if summary.interrupted else "caught up"
    lines = [
        f"mirrored {summary.records:,} record(s), {summary.bytes:,} bytes to {bootstrap} in "
        f"{summary.seconds:.1f} s ({summary.records / seconds:,.0f} records/s, "
        f"{summary.bytes / seconds / 1e6:.1f} MB/s); {state}, lag {summary.lag:,}",
    ]
    if summary.partitions:
        width = max(
            len("partition"), *(len(f"{p.topic}-{p.partition}") for p in summary.partitions)
        )
        lines.append(
            f"{'partition':<{width}}  {'records':>10}  {'bytes':>12}  {'position':>10}  {'lag':>8}"
        )
        for p in summary.partitions:
            name = f"{p.topic}-{p.partition}"
            lines.append(
                f"{name:<{width}}  {p.records:>10,}  {p.bytes:>12,}  {p.position:>10,}  {p.lag:>8,}"
            )
    return lines


@click.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--bootstrap-servers",
    "-b",
    required=True,
    metavar="HOST:PORT[,...]",
    help="The Kafka cluster to copy to.",
)
@click.option(
    "--topic", "-t", "topics", multiple=True, help="A topic to copy (repeat); default: all."
)
@click.option("--follow", "-f", is_flag=True, help="Keep copying new records until SIGINT/SIGTERM.")
@click.option(
    "--group",
    default=mirroring.DEFAULT_GROUP,
    show_default=True,
    help="The consumer group of the root that keeps the mirror's position.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to reach the cluster, and for each record to be acknowledged.",
)
@click.option(
    "--commit-interval",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    metavar="MS",
    help="Commit the acknowledged position at most this often.",
)
@click.option(
    "--poll-interval",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    metavar="MS",
    help="With --follow: look for new records this often (the root is free in between).",
)
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    help="Of the topics created on the cluster (default: the cluster's).",
)
@click.option(
    "--offset-header",
    metavar="NAME",
    help="Add a header NAME with each record's source offset (provenance; off by default).",
)
@click.option(
    "--start-over",
    is_flag=True,
    help="Copy again from the source's start a partition that cannot be resumed exactly "
    "(its topic recreated or truncated on the cluster) instead of refusing it.",
)
@click.option(
    "-X",
    "properties",
    multiple=True,
    metavar="KEY=VALUE",
    help="A librdkafka client property (security.protocol=SSL, ...); repeat.",
)
@common.one_line_errors
def mirror(
    root: str,
    bootstrap_servers: str,
    topics: tuple[str, ...],
    follow: bool,
    group: str,
    timeout: float,
    commit_interval: int,
    poll_interval: int,
    replication_factor: int | None,
    offset_header: str | None,
    start_over: bool,
    properties: tuple[str, ...],
) -> None:
    """Copy ROOT's topics to a Kafka cluster, each record to the same partition.

    Topics are created with the source's partition counts (or checked), and
    each record goes with its own key, value, headers and timestamp. The
    position is a consumer group of ROOT, committed only after the cluster
    acknowledged (acks=all, idempotent producer), with the cluster offset it
    corresponds to: run it again after a failure or a kill and it resumes,
    without repeating what the cluster holds.

    The mirror must be the only writer to its target topics: it counts the
    records a cluster partition took after its commit to know where to resume.
    """
    settings = _properties(properties)
    diagnostics.refuse_unless(root, "broker")  # mirroring never creates a root
    stop = threading.Event()
    with _stop_on_signals(stop) as caught, _progress_bar() as bar:

        def progress(done: int, known: int) -> None:
            if bar is not None:
                bar.length = max(known, 1)
                bar.update(done - bar.pos)

        summary = mirroring.mirror(
            root,
            bootstrap_servers,
            topics=list(topics) or None,
            group=group,
            follow=follow,
            stop=stop,
            poll_interval_s=poll_interval / 1000,
            commit_interval_s=commit_interval / 1000,
            timeout_s=timeout,
            offset_header=offset_header,
            start_over=start_over,
            replication_factor=replication_factor,
            properties=settings,
            progress=progress,
        )
    for line in summary_lines(summary, bootstrap=bootstrap_servers):
        click.echo(line)
    if caught and not follow and summary.lag:
        # Stopped before catching up: as an interrupted command, after the summary.
        click.echo("logstore: interrupted; run it again to resume", err=True)
        sys.exit(130)


@contextmanager
def _progress_bar() -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; ``None`` otherwise."""
    if not common.stderr_is_terminal():
        yield None
        return
    bar: Any = click.progressbar(length=1, label="mirroring", file=sys.stderr)
    with bar:
        yield bar
