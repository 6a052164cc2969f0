"""Compaction throughput: 1,000,000 records over 10,000 distinct keys.

The log (100-byte values, 16-byte keys, segments of 16 MiB) is written by this
process; a fresh child process opens it and runs ``compact()``, so the peak RSS
reported (``ru_maxrss``) is the compaction's own. Throughput is records before
compaction over the time ``compact()`` took.

Run by ``bench/run.py`` (``make bench``); also runnable alone.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import logstore

TARGET_RECORDS_S = 300_000
TARGET_RSS_MB = 200.0
CONFIG: dict[str, Any] = {
    "fsync": "never",
    "cleanup_policy": "compact",
    "segment_bytes": 16 << 20,
    "min_cleanable_dirty_ratio": 1.0,
}


def _build(directory: Path, records: int, keys: int) -> None:
    rng = random.Random(7)
    names = [b"key-%012d" % i for i in range(keys)]
    value = rng.randbytes(100)
    with logstore.Log.open(directory, logstore.LogConfig(**CONFIG)) as log:
        for start in range(0, records, 1000):
            log.append_many(
                logstore.Message(value, key=names[rng.randrange(keys)])
                for _ in range(min(1000, records - start))
            )
        log.roll()


def _child(directory: str) -> None:
    with logstore.Log.open(directory, logstore.LogConfig(**CONFIG)) as log:
        result = log.compact()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "records_before": result.records_before,
                "records_after": result.records_after,
                "bytes_before": result.bytes_before,
                "bytes_after": result.bytes_after,
                "seconds": result.seconds,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def run(records: int = 1_000_000, keys: int = 10_000, repeats: int = 2) -> list[str]:
    """Build, compact a fresh copy ``repeats`` times, return markdown lines (best run)."""
    root = Path(tempfile.mkdtemp(prefix="logstore-compaction-bench-"))
    try:
        source = root / "source-0"
        _build(source, records, keys)
        runs = []
        for i in range(repeats):
            copy = root / f"copy{i}-0"
            shutil.copytree(source, copy)
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(copy)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(done.stdout))
            shutil.rmtree(copy)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    best = min(runs, key=lambda r: r["seconds"])
    rate = best["records_before"] / best["seconds"]
    peak = max(r["peak_rss_mb"] for r in runs)
    return [
        "## Compaction",
        "",
        "| records | distinct keys | kept | bytes before -> after | time (best of "
        f"{repeats}) | records/s | peak RSS |",
        "|---:|---:|---:|---|---:|---:|---:|",
        f"| {best['records_before']:,} | {keys:,} | {best['records_after']:,} | "
        f"{best['bytes_before'] / 1e6:,.1f} MB -> {best['bytes_after'] / 1e6:,.1f} MB | "
        f"{best['seconds']:.2f} s | {rate:,.0f} | {peak:,.0f} MB |",
        "",
        f"- at least {TARGET_RECORDS_S:,} records/s: {'met' if rate >= TARGET_RECORDS_S else 'NOT met'}"
        f" ({rate:,.0f})",
        f"- peak RSS under {TARGET_RSS_MB:.0f} MB: {'met' if peak < TARGET_RSS_MB else 'NOT met'}"
        f" ({peak:,.0f} MB)",
        "",
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        print("\n".join(run()))
