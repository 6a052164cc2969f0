"""Appending 100-byte to 64 KiB records: logstore beside a plain file, in MB/s.

For each value size, about ``--megabytes`` MB of records (16-byte keys) are
appended in ``append_many`` calls of 1,000 records with ``fsync="never"``:
open, every call, close (whose flush is part of the cost, as in ``make
bench``). Three writers, each in a fresh child process per repeat, the repeats
interleaved:

- ``logstore``: the compiled codec;
- ``logstore-pure``: the same in a ``LOGSTORE_PURE=1`` child;
- ``plain``: the plain file of ``make bench``: ``<II`` key/value lengths + key +
  value per record, one ``write`` of ``b''.join(...)`` per call, no fsync.

``--baseline REV`` adds ``logstore@REV`` and ``logstore-pure@REV`` (the package
as it was at git revision ``REV``, installed by ``bench/baseline.py``), so a
change is a ratio from one run. Inputs are built before the clock starts
(``Message`` lists, as ``make bench`` does) and frozen out of the garbage
collector. The table gives the best MB/s of the repeats, the spread (min..max)
and the best's ratio to the plain file's best.

    .venv/bin/python bench/kib_append.py [--sizes 100,1024,4096,65536] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from workload import Workload, generate  # noqa: E402

KEY_SIZE, BATCH = 16, 1000


def workload(value_size: int, megabytes: int) -> Workload:
    records = max(BATCH, megabytes * 1_000_000 // (KEY_SIZE + value_size) // BATCH * BATCH)
    return Workload(records=records, batch_size=BATCH, key_size=KEY_SIZE, value_size=value_size)


def run_logstore(directory: str, w: Workload) -> float:
    import logstore

    batches = [[logstore.Message(v, key=k) for k, v in b] for b in generate(w)]
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    log = logstore.Log.open(directory, logstore.LogConfig(fsync="never"))
    try:
        append_many = log.append_many
        for messages in batches:
            append_many(messages)
    finally:
        log.close()
    elapsed = time.perf_counter() - t0
    with logstore.Log.open(directory, logstore.LogConfig(fsync="never")) as log:
        if log.end_offset != w.records:  # pragma: no cover - a broken writer
            raise SystemExit(f"logstore wrote {log.end_offset} records, not {w.records}")
    return elapsed


def run_plain(directory: str, w: Workload) -> float:
    batches = generate(w)
    gc.collect()
    gc.freeze()
    pack = struct.Struct("<II").pack
    t0 = time.perf_counter()
    with open(os.path.join(directory, "records.bin"), "wb", buffering=0) as f:
        write = f.write
        for batch in batches:
            parts: list[bytes] = []
            extend = parts.extend
            for key, value in batch:
                extend((pack(len(key), len(value)), key, value))
            write(b"".join(parts))
    return time.perf_counter() - t0


def child(kind: str, value_size: int, megabytes: int) -> None:
    w = workload(value_size, megabytes)
    with tempfile.TemporaryDirectory(prefix="logstore-kib-") as tmp:
        elapsed = (run_plain if kind == "plain" else run_logstore)(tmp, w)
        speedups = None
        if kind != "plain":
            import logstore

            speedups = logstore.__speedups__
    print(json.dumps({"s": elapsed, "bytes": w.payload_bytes, "speedups": speedups}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1024,4096,65536", help="value sizes in bytes")
    parser.add_argument("--megabytes", type=int, default=100, help="payload per size (MB)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="git revision to measure beside")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    # name -> (PYTHONPATH or None, LOGSTORE_PURE, expected speedups)
    writers: dict[str, tuple[str | None, bool, str | None]] = {
        "logstore": (None, False, "compiled"),
        "logstore-pure": (None, True, "pure"),
        "plain": (None, False, None),
    }
    if args.baseline:
        from baseline import install

        target = install(args.baseline)
        writers[f"logstore@{args.baseline}"] = (target, False, "compiled")
        writers[f"logstore-pure@{args.baseline}"] = (target, True, "pure")
    rates: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.repeats):
        for size in sizes:
            for name, (path, pure, speedups) in writers.items():
                env = dict(os.environ)
                env.pop("LOGSTORE_PURE", None)
                if pure:
                    env["LOGSTORE_PURE"] = "1"
                if path:
                    env["PYTHONPATH"] = path
                kind = "plain" if name == "plain" else "logstore"
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, str(size), str(args.megabytes)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout
                result = json.loads(out)
                if result["speedups"] != speedups:
                    raise SystemExit(f"{name}: codec {result['speedups']}, expected {speedups}")
                rates.setdefault((size, name), []).append(result["bytes"] / result["s"] / 1e6)
    print(
        f"append, fsync=never, calls of {BATCH:,} records, {args.megabytes} MB per size, "
        f"{args.repeats} repeats: best MB/s (spread), vs plain file best"
    )
    print(f"{'value bytes':>11} {'writer':<24} {'best MB/s':>10} {'spread':>17} {'vs plain':>9}")
    for size in sizes:
        plain = max(rates[(size, "plain")])
        for name in writers:
            r = rates[(size, name)]
            print(
                f"{size:>11} {name:<24} {max(r):10.1f} {min(r):8.1f}..{max(r):7.1f} "
                f"{max(r) / plain:8.2f}x"
            )


if __name__ == "__main__":
    main()
