"""The broker layer's cost: produce and group consume next to a single ``Log``.

1,000,000 records (100-byte values) keyed by 200 hostnames, in calls of 1,000:
``Log.append_many`` into one log versus ``Broker.produce_many`` into an
8-partition topic (routing by Kafka's partitioner, one batch per partition per
call); then ``Log.scan`` of that log versus a consumer group polling the topic
to the end. ``fsync="never"`` everywhere. Target: the broker costs under 25%
of the single log's throughput (ratio >= 0.75).

Run by ``bench/run.py`` (``make bench``); also runnable alone.
"""

from __future__ import annotations

import gc
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import logstore

TARGET_RATIO = 0.75


def _messages(records: int) -> list[list[logstore.Message]]:
    rng = random.Random(11)
    hosts = [f"web-{i:03d}.example.com".encode() for i in range(200)]
    value = rng.randbytes(100)
    return [
        [logstore.Message(value, key=hosts[rng.randrange(200)]) for _ in range(1000)]
        for _ in range(records // 1000)
    ]


def _single(root: Path, calls: list[list[logstore.Message]]) -> tuple[float, float, int]:
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


def _broker(root: Path, calls: list[list[logstore.Message]]) -> tuple[float, float, int]:
    config = logstore.LogConfig(fsync="never")
    with logstore.Broker.open(root / "broker", config, maintenance_interval_ms=None) as broker:
        broker.create_topic("access", partitions=8)
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


def run(records: int = 1_000_000, repeats: int = 3) -> list[str]:
    calls = _messages(records)
    gc.freeze()
    best: dict[str, float] = {}
    for _ in range(repeats):  # interleaved, so noise hits both alike
        for name, fn in (("single", _single), ("broker", _broker)):
            root = Path(tempfile.mkdtemp(prefix="logstore-broker-bench-"))
            try:
                write_s, read_s, count = fn(root, calls)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            assert count == records, (name, count)
            best[f"{name}-write"] = min(best.get(f"{name}-write", 1e9), write_s)
            best[f"{name}-read"] = min(best.get(f"{name}-read", 1e9), read_s)
    rate = {k: records / v for k, v in best.items()}
    write_ratio = rate["broker-write"] / rate["single-write"]
    read_ratio = rate["broker-read"] / rate["single-read"]
    return [
        "## Broker layer",
        "",
        f"{records:,} records, 200 hostname keys, calls of 1,000, best of {repeats}.",
        "",
        "| path | records/s | vs single log |",
        "|---|---:|---:|",
        f"| single `Log.append_many` | {rate['single-write']:,.0f} | 1.00 |",
        f"| `Broker.produce_many`, 8 partitions | {rate['broker-write']:,.0f} | {write_ratio:.2f} |",
        f"| single `Log.scan` | {rate['single-read']:,.0f} | 1.00 |",
        f"| consumer group `poll(5000)`, 8 partitions | {rate['broker-read']:,.0f} | {read_ratio:.2f} |",
        "",
        f"- produce costs under 25% of the single log: {'met' if write_ratio >= TARGET_RATIO else 'NOT met'}"
        f" (broker at {write_ratio:.0%} of the single log)",
        f"- consume costs under 25% of the single log: {'met' if read_ratio >= TARGET_RATIO else 'NOT met'}"
        f" (group at {read_ratio:.0%} of the single log)",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
