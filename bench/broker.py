"""The broker layer's cost: produce and group consume next to plain ``Log`` calls.

1,000,000 records (distinct 100-byte values) keyed by 200 hostnames, in calls
of 1,000, ``fsync="never"`` everywhere. Three ways to store them, each timed
writing and then reading everything:

- **single log**: ``Log.append_many`` of each call into one log (one batch of
  1,000 per call), then ``Log.scan``;
- **8 logs, direct**: the same calls split beforehand (outside the timing) by
  Kafka's partitioner and appended with ``Log.append_many`` to eight logs, one
  batch of about 125 per log per call, then ``Log.scan`` of each log. This is
  the storage work any 8-partition layout must do;
- **broker**: ``Broker.produce_many`` into an 8-partition topic (routing,
  grouping, the ``(partition, offset)`` list it returns), then a consumer
  group polling to the end (``ConsumedRecord``s, positions).

The broker layer's cost is broker versus "8 logs, direct" (target: under 25%,
a ratio of at least 0.75). Broker versus the single log shows in addition what
splitting every call into eight smaller batches costs. Repeats are
interleaved, best of each kept.

Run by ``bench/run.py`` (``make bench``); also runnable alone.
"""

from __future__ import annotations

import gc
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import logstore
from logstore.partitioner import partition_for

TARGET_RATIO = 0.75
PARTITIONS = 8

Calls = list[list[logstore.Message]]


def _messages(records: int) -> Calls:
    rng = random.Random(11)
    hosts = [f"web-{i:03d}.example.com".encode() for i in range(200)]
    # Distinct values: one shared value object would sit in the CPU cache and
    # flatter whichever path touches the most records.
    return [
        [logstore.Message(rng.randbytes(100), key=hosts[rng.randrange(200)]) for _ in range(1000)]
        for _ in range(records // 1000)
    ]


def _split(calls: Calls) -> list[list[list[logstore.Message]]]:
    """Each call's messages per partition, as the broker routes them."""
    out = []
    for messages in calls:
        groups: list[list[logstore.Message]] = [[] for _ in range(PARTITIONS)]
        for m in messages:
            assert m.key is not None
            groups[partition_for(m.key, PARTITIONS)].append(m)
        out.append(groups)
    return out


def _single(root: Path, calls: Calls, split: object) -> tuple[float, float, int]:
    config = logstore.LogConfig(fsync="never")
    with logstore.Log.open(root / "single-0", config) as log:
        t0 = time.perf_counter()
        for messages in calls:
            log.append_many(messages)
        append_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        count = sum(1 for _ in log.scan())
        scan_s = time.perf_counter() - t0
    return append_s, scan_s, count


def _direct(
    root: Path, calls: Calls, split: list[list[list[logstore.Message]]]
) -> tuple[float, float, int]:
    config = logstore.LogConfig(fsync="never")
    logs = [logstore.Log.open(root / f"direct-{p}", config) for p in range(PARTITIONS)]
    try:
        t0 = time.perf_counter()
        for groups in split:
            for log, group in zip(logs, groups):
                if group:
                    log.append_many(group)
        append_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        count = sum(1 for log in logs for _ in log.scan())
        scan_s = time.perf_counter() - t0
    finally:
        for log in logs:
            log.close()
    return append_s, scan_s, count


def _broker(root: Path, calls: Calls, split: object) -> tuple[float, float, int]:
    config = logstore.LogConfig(fsync="never")
    with logstore.Broker.open(root / "broker", config, maintenance_interval_ms=None) as broker:
        broker.create_topic("access", partitions=PARTITIONS)
        t0 = time.perf_counter()
        for messages in calls:
            broker.produce_many("access", messages)
        produce_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        count = 0
        with broker.consumer("bench", ["access"]) as consumer:
            while batch := consumer.poll(max_records=5000):
                count += len(batch)
        consume_s = time.perf_counter() - t0
    return produce_s, consume_s, count


PATHS: dict[str, Callable[..., tuple[float, float, int]]] = {
    "single": _single,
    "direct": _direct,
    "broker": _broker,
}


def run(records: int = 1_000_000, repeats: int = 5) -> list[str]:
    calls = _messages(records)
    split = _split(calls)
    gc.freeze()
    best: dict[str, float] = {}
    for _ in range(repeats):  # interleaved, so noise hits every path alike
        for name, fn in PATHS.items():
            root = Path(tempfile.mkdtemp(prefix="logstore-broker-bench-"))
            try:
                write_s, read_s, count = fn(root, calls, split)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            assert count == records, (name, count)
            best[f"{name}-write"] = min(best.get(f"{name}-write", 1e9), write_s)
            best[f"{name}-read"] = min(best.get(f"{name}-read", 1e9), read_s)
    rate = {k: records / v for k, v in best.items()}

    def row(label: str, key: str, kind: str) -> str:
        vs_single = rate[f"{key}-{kind}"] / rate[f"single-{kind}"]
        vs_direct = rate[f"{key}-{kind}"] / rate[f"direct-{kind}"]
        return f"| {label} | {rate[f'{key}-{kind}']:,.0f} | {vs_single:.2f} | {vs_direct:.2f} |"

    produce = rate["broker-write"] / rate["direct-write"]
    consume = rate["broker-read"] / rate["direct-read"]
    return [
        "## Broker layer",
        "",
        f"{records:,} records (distinct 100-byte values), 200 hostname keys, calls of 1,000,"
        f" best of {repeats}.",
        "",
        "| path | records/s | vs single log | vs 8 logs direct |",
        "|---|---:|---:|---:|",
        row("single `Log.append_many` (1 batch of 1,000 per call)", "single", "write"),
        row("8 logs, `Log.append_many` each (8 batches of ~125 per call)", "direct", "write"),
        row("`Broker.produce_many`, 8 partitions", "broker", "write"),
        row("single `Log.scan`", "single", "read"),
        row("8 logs, `Log.scan` each", "direct", "read"),
        row("consumer group `poll(5000)`, 8 partitions", "broker", "read"),
        "",
        f"- produce: the broker layer costs {1 - produce:.0%} over the same appends made"
        f" directly: {'met' if produce >= TARGET_RATIO else 'NOT met'} (target under 25%)",
        f"- consume: the broker layer costs {1 - consume:.0%} over scanning the same logs"
        f" directly: {'met' if consume >= TARGET_RATIO else 'NOT met'} (target under 25%)",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
