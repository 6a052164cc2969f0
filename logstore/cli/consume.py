"""``logstore consume``: a topic's records printed until caught up."""

from __future__ import annotations

import json
import os
import sys
from typing import Literal

import click

import logstore
from logstore import diagnostics

from . import common


def _parse_start(value: str) -> Literal["earliest", "latest"] | int:
    if value == "earliest":
        return "earliest"
    if value == "latest":
        return "latest"
    if value.lstrip("-").isdigit():
        return int(value)
    raise click.BadParameter("use earliest, latest or a timestamp in ms", param_hint="--from")


@click.command()
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
@common.one_line_errors
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
