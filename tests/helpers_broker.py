"""Broker helpers: a broker opened on the fake clock, and the records a consumer drains."""

from __future__ import annotations

from pathlib import Path

import logstore
from logstore import LogConfig

from .conftest import FakeClock

CONFIG = logstore.LogConfig(fsync="never")


METADATA = "logstore-topics.json"


OFFSETS_DIR = "__consumer_offsets-0"


def open_broker(
    root: Path, clock: FakeClock, config: logstore.LogConfig = CONFIG, **options: object
) -> logstore.Broker:
    options.setdefault("maintenance_interval_ms", None)
    return logstore.Broker.open(root, config, clock=clock, **options)  # type: ignore[arg-type]


def drain(consumer: logstore.Consumer, max_records: int = 500) -> list[logstore.ConsumedRecord]:
    """Poll until a poll returns nothing."""
    out: list[logstore.ConsumedRecord] = []
    for _ in range(100_000):
        got = consumer.poll(max_records=max_records)
        if not got:
            return out
        out += got
    raise AssertionError("poll never ran dry")


def triples(records: list[logstore.ConsumedRecord]) -> list[tuple[int, int, bytes | None]]:
    """``(partition, offset, value)`` of consumed records, sorted."""
    return sorted((c.partition, c.record.offset, c.record.value) for c in records)


def _broker(root: Path) -> logstore.Broker:
    return logstore.Broker.open(root, LogConfig(fsync="never"), maintenance_interval_ms=None)
