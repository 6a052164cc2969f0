"""Opening and recovery benchmarks: clean open of 1,000 segments, unclean recovery scan rate.

- Clean open: a cleanly closed log of 1,000 segments opens without scanning
  them, so the time must stay under 0.2 s and must not grow with the bytes in
  the segments: measured for two logs of 1,000 segments that differ 32x in size.
- Unclean recovery: a log of about 1 GB whose clean-shutdown marker and
  recovery point are removed is validated batch by batch (CRC-32C, lengths,
  offsets) on open; the rate is its size over the open time. Files were just
  written, so they are read from the page cache: this measures CPU cost, the
  limit the target is about (recovery must not do per-record Python work).

Run by ``bench/run.py`` (``make bench``); also runnable alone.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import logstore

TARGET_OPEN_S = 0.2
TARGET_RECOVERY_MB_S = 400.0


def _build(directory: Path, *, segments: int, segment_bytes: int, value_bytes: int) -> int:
    """Write a log with exactly ``segments`` segments of about ``segment_bytes``; return bytes."""
    per_batch = max(1, min(100, segment_bytes // (value_bytes + 30) // 4))
    config = logstore.LogConfig(fsync="never", segment_bytes=segment_bytes)
    value = os.urandom(value_bytes)
    batch = [logstore.Message(value, key=b"key-%06d" % i) for i in range(per_batch)]
    with logstore.Log.open(directory, config) as log:
        while len(log.segments) < segments:
            log.append_many(batch)
        return log.size_bytes


def _time_open(directory: Path, repeats: int) -> float:
    times = []
    config = logstore.LogConfig(fsync="never")
    for _ in range(repeats):
        started = time.perf_counter()
        log = logstore.Log.open(directory, config)
        times.append(time.perf_counter() - started)
        log.close()
    return min(times)


def _unclean(directory: Path) -> None:
    for name in (".kafka_cleanshutdown", "recovery-point-offset-checkpoint"):
        (directory / name).unlink(missing_ok=True)


def run(quick: bool = True) -> list[str]:
    """Run both benchmarks; return markdown lines for the report."""
    root = Path(tempfile.mkdtemp(prefix="logstore-recovery-bench-"))
    lines = ["## Opening and recovery", ""]
    try:
        small = root / "small-0"
        large = root / "large-0"
        small_bytes = _build(small, segments=1000, segment_bytes=16 << 10, value_bytes=200)
        large_bytes = _build(large, segments=1000, segment_bytes=512 << 10, value_bytes=1000)
        open_small = _time_open(small, 5)
        open_large = _time_open(large, 5)
        lines += [
            "| log | segments | bytes | clean open (best of 5) |",
            "|---|---:|---:|---:|",
            f"| small | 1,000 | {small_bytes / 1e6:,.1f} MB | {open_small * 1000:,.1f} ms |",
            f"| large | 1,000 | {large_bytes / 1e6:,.1f} MB | {open_large * 1000:,.1f} ms |",
            "",
            f"- clean open of 1,000 segments under {TARGET_OPEN_S} s: "
            f"{'met' if max(open_small, open_large) < TARGET_OPEN_S else 'NOT met'} "
            f"({max(open_small, open_large):.3f} s); large/small time ratio "
            f"{open_large / open_small:.2f} for {large_bytes / small_bytes:.0f}x the bytes",
            "",
        ]
        shutil.rmtree(small)
        shutil.rmtree(large)

        big = root / "big-0"
        segments = 9 if quick else 33  # 1 GiB (or 4 GiB) in 128 MiB segments

        big_bytes = _build(big, segments=segments, segment_bytes=128 << 20, value_bytes=1000)
        rates = []
        for _ in range(3):
            _unclean(big)
            started = time.perf_counter()
            log = logstore.Log.open(big, logstore.LogConfig(fsync="never"))
            elapsed = time.perf_counter() - started
            rebuilt = [a for a in log.recovery_actions if a.action == "rebuild_index"]
            assert len(rebuilt) == len(log.segments), "recovery did not validate every segment"
            log.close()
            rates.append(big_bytes / elapsed / 1e6)
        best = max(rates)
        lines += [
            "| unclean recovery | bytes | segments | rate (best of 3) | median |",
            "|---|---:|---:|---:|---:|",
            f"| full validation from offset 0 | {big_bytes / 1e6:,.0f} MB | {segments} "
            f"| {best:,.0f} MB/s | {statistics.median(rates):,.0f} MB/s |",
            "",
            f"- unclean recovery at least {TARGET_RECOVERY_MB_S:.0f} MB/s: "
            f"{'met' if best >= TARGET_RECOVERY_MB_S else 'NOT met'} ({best:,.0f} MB/s; "
            "page cache warm, so this is CPU cost)",
            "",
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return lines


if __name__ == "__main__":
    print("\n".join(run(quick="--full" not in sys.argv)))
