"""The scan loop a user writes, side by side with lmdb's and SQLite's, in one process.

The same records (default 1,000,000 of 16-byte keys and 100-byte values) are
written to each store before timing; then each loop reads all of them and
touches every field it returns:

- ``logstore``: ``for r in log.scan():`` read ``r.offset, r.key, r.value, r.timestamp``
- ``count``: ``for r in log.scan(): n += 1`` (the floor: what fields cost over it)
- ``lmdb``: ``for k, v in txn.cursor(): key, value = v[:16], v[16:]``
- ``sqlite``: ``for row in conn.execute('SELECT offset, key, value, ts FROM t')``,
  unpacking every column

Timed: the loop only. ``--repeats`` interleaved rounds; the report gives each
loop's best records/s, its spread, and the ratios of the best runs.
``LOGSTORE_PURE=1`` runs logstore's pure-Python codec.

    .venv/bin/python bench/userloop_scan.py [--records N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable

import lmdb

import logstore
from logstore import LogConfig, Message

KEY_SIZE = 16


def write_all(root: str, records: int, batch: int) -> None:
    """The same fixed-seed records into a log, an lmdb environment and a SQLite table."""
    rnd = random.Random(20240601)
    log = logstore.Log.open(f"{root}/log", LogConfig(fsync="never"))
    env = lmdb.open(f"{root}/lmdb", map_size=1 << 36, sync=False)
    conn = sqlite3.connect(f"{root}/t.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute('CREATE TABLE t ("offset" INTEGER PRIMARY KEY, key BLOB, value BLOB, ts INTEGER)')
    ts = int(time.time() * 1000)
    offset = 0
    for _ in range(0, records, batch):
        rows = [(rnd.randbytes(KEY_SIZE), rnd.randbytes(100)) for _ in range(batch)]
        log.append_many([Message(v, key=k, timestamp=ts) for k, v in rows])
        with env.begin(write=True) as txn:
            for i, (k, v) in enumerate(rows):
                txn.put((offset + i).to_bytes(8, "big"), k + v, append=True)
        conn.execute("BEGIN")
        conn.executemany(
            'INSERT INTO t ("offset", key, value, ts) VALUES (?, ?, ?, ?)',
            [(offset + i, k, v, ts) for i, (k, v) in enumerate(rows)],
        )
        conn.execute("COMMIT")
        offset += batch
    log.close()
    env.close()
    conn.close()


def scan_logstore(root: str) -> tuple[float, int]:
    with logstore.Log.open(f"{root}/log", LogConfig(fsync="never")) as log:
        n = 0
        t0 = time.perf_counter()
        for r in log.scan():
            _o, _k, _v, _t = r.offset, r.key, r.value, r.timestamp
            n += 1
        return time.perf_counter() - t0, n


def scan_count(root: str) -> tuple[float, int]:
    with logstore.Log.open(f"{root}/log", LogConfig(fsync="never")) as log:
        n = 0
        t0 = time.perf_counter()
        for _r in log.scan():
            n += 1
        return time.perf_counter() - t0, n


def scan_lmdb(root: str) -> tuple[float, int]:
    env = lmdb.open(f"{root}/lmdb", map_size=1 << 36, readonly=True)
    try:
        with env.begin() as txn:
            n = 0
            t0 = time.perf_counter()
            for _k, v in txn.cursor():
                _key, _value = v[:KEY_SIZE], v[KEY_SIZE:]
                n += 1
            return time.perf_counter() - t0, n
    finally:
        env.close()


def scan_sqlite(root: str) -> tuple[float, int]:
    conn = sqlite3.connect(f"{root}/t.sqlite")
    try:
        n = 0
        t0 = time.perf_counter()
        for row in conn.execute('SELECT "offset", key, value, ts FROM t'):
            _o, _k, _v, _t = row
            n += 1
        return time.perf_counter() - t0, n
    finally:
        conn.close()


LOOPS: dict[str, Callable[[str], tuple[float, int]]] = {
    "logstore": scan_logstore,
    "count": scan_count,
    "lmdb": scan_lmdb,
    "sqlite": scan_sqlite,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated subset")
    args = parser.parse_args()
    names = args.loops.split(",")
    root = tempfile.mkdtemp(prefix="userloop-scan-")
    try:
        write_all(root, args.records, args.batch)
        rates: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(args.repeats + 1):  # round 0 warms the page cache up
            for name in names:
                seconds, n = LOOPS[name](root)
                if n != args.records:
                    raise SystemExit(f"{name} read {n} records, not {args.records}")
                if round_:
                    rates[name].append(n / seconds)
    finally:
        shutil.rmtree(root)
    print(
        f"codec {logstore.__speedups__}, {args.records:,} records of 16 + 100 bytes, "
        f"{args.repeats} interleaved rounds"
    )
    best = {name: max(r) for name, r in rates.items()}
    for name in names:
        r = rates[name]
        print(
            f"{name:10} best {best[name] / 1e6:6.3f}M rec/s  "
            f"spread {min(r) / 1e6:.3f}..{max(r) / 1e6:.3f}M"
        )
    for other in ("lmdb", "sqlite"):
        if other in best and "logstore" in best:
            print(f"logstore / {other}: {best['logstore'] / best[other]:.2f}x")
    if "count" in best and "logstore" in best:
        print(f"logstore / count: {best['logstore'] / best['count']:.2f}x")


if __name__ == "__main__":
    main()
