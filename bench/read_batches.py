"""``read_batches`` and ``batch_ranges`` next to a plain read of the same segment files.

Section 7 of ``make bench`` on its own: a log of ``--records`` records
(16-byte keys, 100-byte values, batches of 1,000), read whole in calls of
``--max-bytes``, next to reading its ``.log`` files in chunks of that size
(one ``read`` per chunk into a fresh ``bytes``: the kernel's copy, nothing
more). Page cache warm; every path runs once per repeat, side by side, so the
ratios come from one run (each repeat keeps the best of ``--inner`` sweeps
of each path). Log.open and close are outside the timing. ``read_batches``
and ``batch_ranges`` are timed with the CRC check (``verify_crc_on_read``,
the default) and without it: ``batch_ranges`` walks headers, then with the
check runs the CRC over a read-only mapping of each range (no copy); without
it reads no record bytes at all.

    .venv/bin/python bench/read_batches.py [--records 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable

import logstore


def build(directory: str, records: int, batch: int) -> None:
    rng = random.Random(20240601)
    with logstore.Log.open(directory, logstore.LogConfig(fsync="never")) as log:
        for start in range(0, records, batch):
            n = min(batch, records - start)
            log.append_many(
                [logstore.Message(rng.randbytes(100), key=rng.randbytes(16)) for _ in range(n)]
            )


def sweep_read_batches(log: logstore.Log, max_bytes: int) -> int:
    total = offset = 0
    end = log.end_offset
    while offset < end:
        data = log.read_batches(offset, max_bytes)
        # The next offset: the last batch's (base offset + last offset delta + 1).
        position = 0
        while True:
            size = 12 + int.from_bytes(data[position + 8 : position + 12], "big")
            if position + size >= len(data):
                break
            position += size
        offset = (
            int.from_bytes(data[position : position + 8], "big")
            + int.from_bytes(data[position + 23 : position + 27], "big")
            + 1
        )
        total += len(data)
    return total


def sweep_ranges(log: logstore.Log, max_bytes: int) -> int:
    total = offset = 0
    end = log.end_offset
    while offset < end:
        with log.batch_ranges(offset, max_bytes) as ranges:
            fd, position, length = ranges.ranges[-1]
            # The next offset from the last batch's header, read from its file.
            head = b""
            at = position
            while at < position + length:
                head = os.pread(fd, 27, at)
                size = 12 + int.from_bytes(head[8:12], "big")
                if at + size >= position + length:
                    break
                at += size
            offset = int.from_bytes(head[:8], "big") + int.from_bytes(head[23:27], "big") + 1
            total += ranges.size
    return total


def plain_read(directory: str, chunk: int) -> int:
    total = 0
    for name in sorted(p for p in os.listdir(directory) if p.endswith(".log")):  # copy is a dir
        with open(os.path.join(directory, name), "rb", buffering=0) as f:
            while data := f.read(chunk):
                total += len(data)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--max-bytes", type=int, default=1 << 20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inner", type=int, default=5, help="sweeps per repeat (best kept)")
    args = parser.parse_args()
    codec = logstore.__speedups__  # type: ignore[attr-defined]
    top = tempfile.mkdtemp(prefix="logstore-read-batches-")
    directory = os.path.join(top, "log")
    try:
        build(directory, args.records, args.batch)
        crc = logstore.Log.open(directory, logstore.LogConfig(fsync="never"))
        copy = os.path.join(top, "copy")  # a process may open a directory only once
        shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(".lock"))
        no_crc = logstore.Log.open(
            copy, logstore.LogConfig(fsync="never", verify_crc_on_read=False)
        )
        paths: list[tuple[str, Callable[[], int]]] = [
            ("plain read, chunks of max_bytes", lambda: plain_read(directory, args.max_bytes)),
            ("read_batches (CRC checked)", lambda: sweep_read_batches(crc, args.max_bytes)),
            (
                "read_batches (verify_crc_on_read=False)",
                lambda: sweep_read_batches(no_crc, args.max_bytes),
            ),
            ("batch_ranges (CRC checked, mapped)", lambda: sweep_ranges(crc, args.max_bytes)),
            (
                "batch_ranges (verify_crc_on_read=False)",
                lambda: sweep_ranges(no_crc, args.max_bytes),
            ),
        ]
        for _, run in paths:  # warm-up: page cache and code paths
            run()
        times: dict[str, list[float]] = {name: [] for name, _ in paths}
        size = 0
        for _ in range(args.repeats):
            for name, run in paths:
                best = float("inf")
                for _ in range(args.inner):  # the best of a few: the machine is shared
                    t0 = time.perf_counter()
                    size = run()
                    best = min(best, time.perf_counter() - t0)
                times[name].append(best)
        crc.close()
        no_crc.close()
        print(
            f"codec {codec}, {size:,} bytes, max_bytes {args.max_bytes:,}, {args.repeats} repeats"
        )
        plain = times[paths[0][0]]
        print("| path | GB/s per repeat | vs plain read per repeat |")
        print("|---|---|---|")
        for name, _ in paths:
            rates = " / ".join(f"{size / t / 1e9:.2f}" for t in times[name])
            ratios = " / ".join(f"{p / t:.2f}x" for p, t in zip(plain, times[name]))
            print(f"| {name} | {rates} | {ratios} |")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
