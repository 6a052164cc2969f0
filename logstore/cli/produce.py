"""``logstore produce``: stdin lines appended as records, in batches, routed by key."""

from __future__ import annotations

import json
import signal
import sys
import time

import click

import logstore

from . import common
from .lines import stdin_lines


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
                f"{_lines(len(self.pending))} read were not written: {common.describe(exc)}"
            ) from None
        self.written += len(self.pending)
        self.pending = []

    def summary(self) -> str:
        text = f"wrote {_lines(self.written)} to {self._topic}"
        if self.skipped:
            text += f", skipped {_lines(self.skipped, 'bad line')} (first: {self.first_bad})"
        return text


@click.command()
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
@common.one_line_errors
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
        source = stdin_lines()
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
