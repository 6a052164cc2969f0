"""``logstore consume``: a topic's records printed until caught up."""

from __future__ import annotations

import json
import os
import sys
from typing import Literal, cast

import click

import logstore
from logstore import diagnostics

from . import common


def _parse_start(
    value: str | None, offset: int | None
) -> Literal["earliest", "latest", "last"] | logstore.AtOffset | int:
    """``--from`` or ``--from-offset`` (not both) as a consumer's ``start``."""
    if offset is not None:
        if value is not None:
            raise click.UsageError("give --from or --from-offset, not both")
        return logstore.AtOffset(offset)
    if value is None or value == "earliest":
        return "earliest"
    if value in ("latest", "last"):
        return cast(Literal["latest", "last"], value)
    if value.lstrip("-").isdigit():
        return int(value)
    raise click.BadParameter("use earliest, latest, last or a timestamp in ms", param_hint="--from")


@click.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("topic")
@click.option("--group", help="Consume as this group: resume from and commit its offsets.")
@click.option(
    "--from",
    "start",
    help="earliest (the default), latest, last (the last stored record first) or "
    "TIMESTAMP (ms), for partitions the group never committed.",
)
@click.option(
    "--from-offset",
    "offset",
    type=click.IntRange(min=0),
    help="Start at offset N of each partition the group never committed "
    "(below the log start: the log start; past the end: an error).",
)
@click.option("--max", "limit", type=click.IntRange(min=1), help="Stop after N records.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@common.one_line_errors
def consume(
    root: str,
    topic: str,
    group: str | None,
    start: str | None,
    offset: int | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Print TOPIC's records (values, one per line) until caught up.

    With --group the group's committed offsets are the starting point and are
    committed as records are printed; without, a throwaway group is used.
    """
    begin = _parse_start(start, offset)
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
                                "key": common.json_bytes(r.key),
                                "value": common.json_bytes(r.value),
                            }
                        ).encode()
                    else:
                        line = r.value if r.value is not None else b""
                    out.write(line + b"\n")
                printed += len(records)
                out.flush()
                if group is not None:
                    consumer.commit()
