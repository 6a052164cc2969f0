"""Open a closed store and read its last record: logstore beside lmdb and SQLite.

What a consumer restarting at the end pays: ``Log.open(path)`` +
``log.read(log.end_offset - 1, max_records=1)`` + ``close``, against
``lmdb.open`` + ``cursor.last()`` + close and ``sqlite3.connect`` + the
``SELECT`` of the row with the largest offset + close. Each store holds
``--records`` records (16-byte keys, 100-byte values, written in batches of
1,000; logstore with its default config, so ``fsync="always"``) and is closed
before it is timed.

Every timing runs in a fresh child process that first opens (and reads the
last record of) another small store of the same engine, so imports and
first-call costs are outside the clock; the child then times one open + read +
close of the big store. The engines run interleaved, ``--repeats`` times; the
table gives the best and the spread (min..max) in milliseconds.

``--baseline REV`` adds ``logstore@REV`` (and its pure twin): the package as
it was at git revision ``REV`` (installed by ``bench/baseline.py``), opening
the same store, so a change is a ratio from one run.

    .venv/bin/python bench/open_last.py [--records 1000000] [--repeats 3] [--baseline main]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

KEY_SIZE, VALUE_SIZE, BATCH = 16, 100, 1000
ENGINES = ("logstore", "logstore-pure", "lmdb", "sqlite")


def _batches(records: int, seed: int) -> list[list[tuple[bytes, bytes]]]:
    rng = random.Random(seed)
    size = KEY_SIZE + VALUE_SIZE
    out = []
    for start in range(0, records, BATCH):
        n = min(BATCH, records - start)
        blob = rng.randbytes(n * size)
        out.append(
            [
                (blob[p : p + KEY_SIZE], blob[p + KEY_SIZE : p + size])
                for p in range(0, n * size, size)
            ]
        )
    return out


# ---------------------------------------------------------------- building


def build_logstore(path: str, records: int, seed: int) -> None:
    import logstore

    with logstore.Log.open(path) as log:
        for batch in _batches(records, seed):
            log.append_many([logstore.Message(v, key=k) for k, v in batch])


def build_lmdb(path: str, records: int, seed: int) -> None:
    import lmdb

    env = lmdb.open(path, map_size=1 << 36, sync=False)
    offset = 0
    for batch in _batches(records, seed):
        with env.begin(write=True) as txn:
            for k, v in batch:
                txn.put(offset.to_bytes(8, "big"), len(k).to_bytes(2, "big") + k + v, append=True)
                offset += 1
    env.sync(True)
    env.close()


def build_sqlite(path: str, records: int, seed: int) -> None:
    os.makedirs(path, exist_ok=True)
    conn = sqlite3.connect(os.path.join(path, "log.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute('CREATE TABLE log ("offset" INTEGER PRIMARY KEY, key BLOB, value BLOB)')
    for batch in _batches(records, seed):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO log (key, value) VALUES (?, ?)", batch)
        conn.execute("COMMIT")
    conn.close()


BUILDERS: dict[str, Callable[[str, int, int], None]] = {
    "logstore": build_logstore,
    "lmdb": build_lmdb,
    "sqlite": build_sqlite,
}


# ---------------------------------------------------------------- open + last record


def last_logstore(path: str) -> tuple[bytes | None, bytes | None]:
    import logstore

    log = logstore.Log.open(path)
    try:
        (record,) = log.read(log.end_offset - 1, max_records=1)
        return record.key, record.value
    finally:
        log.close()


def last_lmdb(path: str) -> tuple[bytes | None, bytes | None]:
    import lmdb

    env = lmdb.open(path, map_size=1 << 36, sync=False)
    try:
        with env.begin() as txn:
            cursor = txn.cursor()
            cursor.last()
            blob = bytes(cursor.value())
            split = 2 + int.from_bytes(blob[:2], "big")
            return blob[2:split], blob[split:]
    finally:
        env.close()


def last_sqlite(path: str) -> tuple[bytes | None, bytes | None]:
    conn = sqlite3.connect(os.path.join(path, "log.db"), isolation_level=None)
    try:
        key, value = conn.execute(
            'SELECT key, value FROM log WHERE "offset" = (SELECT max("offset") FROM log)'
        ).fetchone()
        return key, value
    finally:
        conn.close()


LAST: dict[str, Callable[[str], tuple[bytes | None, bytes | None]]] = {
    "logstore": last_logstore,
    "lmdb": last_lmdb,
    "sqlite": last_sqlite,
}


def child(kind: str, warm: str, big: str) -> None:
    """In a fresh process: warm up on ``warm``, then time ``big`` once; print JSON."""
    last = LAST[kind]
    last(warm)
    t0 = time.perf_counter_ns()
    key, value = last(big)
    elapsed = time.perf_counter_ns() - t0
    module = sys.modules.get("logstore")
    where = os.path.dirname(module.__file__ or "") if module is not None else ""
    print(
        json.dumps(
            {
                "ns": elapsed,
                "key": (key or b"").hex(),
                "value_len": len(value or b""),
                "from": where,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the stores go (a temporary directory)")
    parser.add_argument("--baseline", default=None, help="git revision to measure beside")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WARM", "BIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="logstore-open-last-", dir=args.dir) as tmp:
        stores: dict[str, tuple[str, str]] = {}
        for kind, build in BUILDERS.items():
            big, warm = os.path.join(tmp, f"{kind}-big"), os.path.join(tmp, f"{kind}-warm")
            t0 = time.perf_counter()
            build(big, args.records, 1)
            build(warm, BATCH, 2)
            stores[kind] = (big, warm)
            print(f"built {kind}: {args.records:,} records in {time.perf_counter() - t0:.1f} s")
        expected = _batches(args.records, 1)[-1][-1]
        engines = list(ENGINES)
        baseline = None
        if args.baseline:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from baseline import install

            baseline = install(args.baseline)
            engines[2:2] = [f"logstore@{args.baseline}", f"logstore-pure@{args.baseline}"]
        times: dict[str, list[float]] = {e: [] for e in engines}
        for _ in range(args.repeats):
            for engine in engines:
                kind = engine.split("@")[0].removesuffix("-pure")
                env = dict(os.environ)
                env.pop("LOGSTORE_PURE", None)
                if "-pure" in engine:
                    env["LOGSTORE_PURE"] = "1"
                if "@" in engine and baseline is not None:
                    env["PYTHONPATH"] = baseline
                big, warm = stores[kind]
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, warm, big],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout
                result = json.loads(out)
                if (
                    "@" in engine
                    and baseline is not None
                    and not result["from"].startswith(baseline)
                ):
                    raise SystemExit(f"{engine}: imported logstore from {result['from']}")
                if (result["key"], result["value_len"]) != (expected[0].hex(), len(expected[1])):
                    raise SystemExit(f"{engine}: wrong last record {result}")
                times[engine].append(result["ns"] / 1e6)
        print(
            f"\nopen + last record + close, {args.records:,} records, {args.repeats} repeats (ms)"
        )
        print(f"{'engine':<15} {'best':>8} {'spread':>17} {'vs lmdb':>8} {'vs SQLite':>9}")
        for engine in engines:
            ts = times[engine]
            best = min(ts)
            print(
                f"{engine:<15} {best:8.3f} {min(ts):8.3f}..{max(ts):7.3f} "
                f"{min(times['lmdb']) / best:7.2f}x {min(times['sqlite']) / best:8.2f}x"
            )


if __name__ == "__main__":
    main()
