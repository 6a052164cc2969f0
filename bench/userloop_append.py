"""The append loop a user writes, side by side with lmdb's, in one process.

Issue 14's table: 300,000 records of 16-byte keys and 100-byte values in
batches of 1,000, ``fsync="never"``, the garbage collector as it comes. Each
loop starts from the raw ``values`` and ``keys`` lists and builds its input
inside the timed loop, as a user's program would:

- ``messages``: ``log.append_many([Message(v, key=k) for v, k in zip(vs, ks)])``
- ``prebuilt``: the same ``Message`` lists built once before the clock starts
  (what the "codec only" table times)
- ``pairs``: ``log.append_many(list(zip(vs, ks)))``, ``(value, key)`` pairs
- ``lmdb``: one write transaction per batch of
  ``txn.put(offset.to_bytes(8, "big"), key + value, append=True)``
- ``build``: the ``messages`` loop's list of ``Message``s alone, no logstore call

Timed: the loop only (the store is opened before and closed after). The loops
run interleaved, ``--repeats`` rounds, each in a fresh directory; the report
gives each loop's best records/s, its spread over the rounds, and the ratios of
the best runs. ``LOGSTORE_PURE=1`` runs logstore's pure-Python codec.

    .venv/bin/python bench/userloop_append.py [--records N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable

import lmdb

import logstore
from logstore import LogConfig, Message

Loop = Callable[[str, list[bytes], list[bytes], int], float]


def data(
    records: int, key_size: int = 16, value_size: int = 100
) -> tuple[list[bytes], list[bytes]]:
    """Fixed-seed random values and keys."""
    rnd = random.Random(20240601)
    values = [rnd.randbytes(value_size) for _ in range(records)]
    keys = [rnd.randbytes(key_size) for _ in range(records)]
    return values, keys


def messages(directory: str, values: list[bytes], keys: list[bytes], size: int) -> float:
    log = logstore.Log.open(directory, LogConfig(fsync="never"))
    try:
        append_many = log.append_many
        t0 = time.perf_counter()
        for i in range(0, len(values), size):
            vs, ks = values[i : i + size], keys[i : i + size]
            append_many([Message(v, key=k) for v, k in zip(vs, ks)])
        return time.perf_counter() - t0
    finally:
        log.close()


def prebuilt(directory: str, values: list[bytes], keys: list[bytes], size: int) -> float:
    batches = [
        [Message(v, key=k) for v, k in zip(values[i : i + size], keys[i : i + size])]
        for i in range(0, len(values), size)
    ]
    log = logstore.Log.open(directory, LogConfig(fsync="never"))
    try:
        append_many = log.append_many
        t0 = time.perf_counter()
        for batch in batches:
            append_many(batch)
        return time.perf_counter() - t0
    finally:
        log.close()


def build(directory: str, values: list[bytes], keys: list[bytes], size: int) -> float:
    """The ``messages`` loop without the logstore call: what building the input costs."""
    t0 = time.perf_counter()
    for i in range(0, len(values), size):
        vs, ks = values[i : i + size], keys[i : i + size]
        [Message(v, key=k) for v, k in zip(vs, ks)]
    return time.perf_counter() - t0


def pairs(directory: str, values: list[bytes], keys: list[bytes], size: int) -> float:
    log = logstore.Log.open(directory, LogConfig(fsync="never"))
    try:
        append_many = log.append_many
        t0 = time.perf_counter()
        for i in range(0, len(values), size):
            append_many(list(zip(values[i : i + size], keys[i : i + size])))
        return time.perf_counter() - t0
    finally:
        log.close()


def lmdb_puts(directory: str, values: list[bytes], keys: list[bytes], size: int) -> float:
    env = lmdb.open(directory, map_size=1 << 36, sync=False)
    try:
        t0 = time.perf_counter()
        offset = 0
        for i in range(0, len(values), size):
            with env.begin(write=True) as txn:
                put = txn.put
                for v, k in zip(values[i : i + size], keys[i : i + size]):
                    put(offset.to_bytes(8, "big"), k + v, append=True)
                    offset += 1
        return time.perf_counter() - t0
    finally:
        env.close()


LOOPS: dict[str, Loop] = {
    "messages": messages,
    "prebuilt": prebuilt,
    "pairs": pairs,
    "lmdb": lmdb_puts,
    "build": build,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated subset")
    args = parser.parse_args()
    names = args.loops.split(",")
    values, keys = data(args.records)
    warm_v, warm_k = values[: 20 * args.batch], keys[: 20 * args.batch]
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.repeats + 1):  # round 0 warms up on a slice
        for name in names:
            directory = tempfile.mkdtemp(prefix=f"userloop-{name}-")
            try:
                if round_ == 0:
                    LOOPS[name](directory, warm_v, warm_k, args.batch)
                    continue
                seconds = LOOPS[name](directory, values, keys, args.batch)
                rates[name].append(args.records / seconds)
            finally:
                shutil.rmtree(directory)
    print(
        f"codec {logstore.__speedups__}, {args.records:,} records of 16 + 100 bytes, "
        f"batches of {args.batch:,}, {args.repeats} interleaved rounds"
    )
    best = {name: max(r) for name, r in rates.items()}
    for name in names:
        r = rates[name]
        print(
            f"{name:10} best {best[name] / 1e6:6.3f}M rec/s  "
            f"spread {min(r) / 1e6:.3f}..{max(r) / 1e6:.3f}M"
        )
    if "lmdb" in best:
        for name in names:
            if name != "lmdb":
                print(f"{name} / lmdb: {best[name] / best['lmdb']:.2f}x")
    if "prebuilt" in best and "messages" in best:
        print(f"prebuilt / messages: {best['prebuilt'] / best['messages']:.2f}x")


if __name__ == "__main__":
    main()
