"""``logstore produce``: stdin lines appended as records, in batches, routed by key."""

from __future__ import annotations

import collections
import json
import signal
import sys
from typing import NoReturn

import click

import logstore

from . import common
from .lines import stdin_lines

#: ``max_block_ms`` of the producer: a full buffer waits for the disk, however slow.
_FOREVER_MS = 365 * 24 * 3600 * 1000
#: The longest the read loop sleeps without looking at the handles.
_MIN_WAKE_S = 0.1


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
    """Turns lines into records and sends them through a producer, counting exactly what is stored.

    Each line's handle is kept until it resolves; the first that failed ends
    the run, after the producer is closed and every other line's fate is known.
    """

    def __init__(
        self,
        broker: logstore.Broker,
        topic: str,
        *,
        key_field: str | None,
        key: str | None,
        skip_bad: bool,
        batch: int,
        linger_ms: int,
    ) -> None:
        self._topic = topic
        self._compacted = broker.topic(topic).config.compacted
        self._key_field = key_field
        self._key = key
        self._skip_bad = skip_bad
        # Blocks (a pipe's back-pressure) rather than failing while the disk is slow.
        self._producer = broker.producer(
            topic, linger_ms=linger_ms, batch_records=batch, max_block_ms=_FOREVER_MS
        )
        self.pending: collections.deque[logstore.SendHandle[tuple[int, int]]] = collections.deque()
        self.lines = 0  # lines read
        self.written = 0  # lines stored
        self.skipped = 0
        self.first_bad: str | None = None

    def add(self, line: bytes) -> None:
        """Send one line; a bad line is skipped, or ends the run after what came before it."""
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
            self.finish()
            raise click.ClickException(f"wrote {_lines(self.written)}; {where}") from None
        try:
            self.pending.append(self._producer.send(line, key=key))
        except (logstore.LogStoreError, OSError) as exc:  # refused at once (too large)
            self._fail(exc)
        self.count(wait=False)

    def count(self, *, wait: bool) -> None:
        """Count the lines resolved so far (all of them, if ``wait``); stop at a failure."""
        if wait:
            self._producer.flush()
        pending = self.pending
        while pending and pending[0].done():
            error = pending.popleft().exception()
            if error is not None:
                self._fail(error)
            self.written += 1

    def _fail(self, error: BaseException) -> NoReturn:
        """Stop: close the producer (writing what it holds), count what was stored, say so."""
        self._producer.close()
        outcomes = [handle.exception() for handle in self.pending]
        self.written += outcomes.count(None)
        sent = self.lines - self.skipped
        raise click.ClickException(
            f"wrote {_lines(self.written)}; {sent - self.written:,} of {_lines(sent)} read "
            f"were not written: {common.describe(error)}"
        ) from None

    def finish(self) -> None:
        """Write every line sent and count them all."""
        self.count(wait=True)
        self._producer.close()
        self.count(wait=False)

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
    "--batch",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Lines per batch (of one partition).",
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

    Lines are written in batches of --batch lines per partition, and at
    least every --linger-ms, so a slow stream (tail -f) is stored as it comes. A line
    that cannot become a record stops the run (exit 1) after every line
    before it is written, or with --skip-bad is counted and skipped. SIGINT
    and SIGTERM write every complete line already read, close the log
    cleanly and exit 130 or 143.
    """
    if key is not None and key_field is not None:
        raise click.UsageError("use --key or --key-field, not both")
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        if topic not in broker.topics(include_internal=True):
            if partitions is None:
                raise click.ClickException(
                    f"no topic {topic!r} in {root} (give --partitions to create it)"
                )
            broker.create_topic(topic, partitions)
        if broker.topic(topic).config.compacted and key is None and key_field is None:
            raise click.UsageError(f"topic {topic} is compacted: give --key or --key-field")
        writer = _LineWriter(
            broker,
            topic,
            key_field=key_field,
            key=key,
            skip_bad=skip_bad,
            batch=batch,
            linger_ms=linger_ms,
        )
        source = stdin_lines()
        try:
            # The producer writes a partial batch once its linger is up; this loop
            # only reads, and wakes now and then to notice a failed write.
            while not source.eof and source.stopped_by is None:
                for line in source.read(max(linger_ms / 1000, _MIN_WAKE_S)):
                    writer.add(line)
                writer.count(wait=False)
            writer.finish()
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
