"""The batching producer: records/s and send-to-resolved latency with ``fsync="always"``.

Rows, measured side by side in one run (each repeat runs every row once, in
turn, so a slow moment of the shared machine hits them alike):

- **linger 0 / 5 / 50 ms, flat out**: one thread sends ``--records`` records
  (100-byte values, 16-byte keys) through ``Log.producer`` as fast as it can;
  records/s from the first ``send`` to the last handle resolved. Latency
  here is mostly the wait in the full buffer (``max_buffered_bytes``);
- **linger 0 / 5 / 50 ms, paced**: the same at ``--rate`` records/s (a
  burst each millisecond), under what the writer can take: latency from
  ``send`` to the handle's done callback (which runs right after the fsync
  covering its batch returned), sampled on every 100th record;
- **8 threads, linger 5 ms** (the target: at least 1,000,000 records/s):
  eight threads send ``--threaded-records`` in all; afterwards every handle
  is checked: each thread's offsets increase, together they are exactly
  ``0..N-1``, and the record stored at each offset has the key that thread sent;
  once with the default ``batch_records`` (1,000), once with 5,000 (a fifth
  of the fsyncs), and once with ``max_group_bytes=0``: one fsync per batch,
  no group commit (what the producer did before);
- **append_many, 1,000 per call**: the same records built into ``Message``
  lists per call by one thread and appended directly, for comparison;
- **append_many, 1,000 pre-built**: one list appended again and again: the
  writer thread's ceiling (one batch, one write and one fsync per call).

Keys are built before the clock starts (they tell the records apart for the
check); values are one 100-byte string per thread. The garbage collector
runs as it comes. Runnable alone: ``python bench/producer.py [--quick]``.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import logstore

WORK = Path(__file__).parent / "work"
TARGET = 1_000_000
SAMPLE_EVERY = 100


def _keys(n: int, thread: int = 0) -> list[bytes]:
    return [b"%02d-%013d" % (thread, i) for i in range(n)]  # 16 bytes


def _log(tmp: Path, name: str) -> logstore.Log:
    return logstore.Log.open(
        tmp / name, logstore.LogConfig(fsync="always"), maintenance_interval_ms=None
    )


def one_thread(tmp: Path, linger_ms: int, n: int, rate: int | None = None) -> dict[str, float]:
    """One thread sending ``n`` records, as fast as it can or paced at ``rate`` records/s."""
    keys, value = _keys(n), b"v" * 100
    latencies: list[int] = []
    clock = time.perf_counter_ns
    tick = 0.001  # paced: rate / 1000 records each millisecond
    per_tick = n if rate is None else max(rate // 1000, 1)
    with _log(tmp, f"linger-{linger_ms}") as log:
        producer = log.producer(linger_ms=linger_ms)
        send = producer.send
        start = next_tick = time.perf_counter()
        for first in range(0, n, per_tick):
            for i in range(first, min(first + per_tick, n)):
                if i % SAMPLE_EVERY:
                    send(value, key=keys[i])
                    continue
                sent = clock()
                send(value, key=keys[i]).add_done_callback(
                    lambda _, sent=sent: latencies.append(clock() - sent)
                )
            if rate is not None:
                next_tick += tick
                time.sleep(max(next_tick - time.perf_counter(), 0))
        producer.flush()
        seconds = time.perf_counter() - start
        producer.close()
        assert log.end_offset == n
    latencies.sort()
    return {
        "records/s": n / seconds,
        "p50 ms": latencies[len(latencies) // 2] / 1e6,
        "p99 ms": latencies[int(len(latencies) * 0.99)] / 1e6,
    }


def threads_8(
    tmp: Path,
    n: int,
    threads: int = 8,
    batch_records: int = 1000,
    max_group_bytes: int = 4 << 20,
) -> dict[str, float]:
    per = n // threads
    keys = [_keys(per, t) for t in range(threads)]
    handles: list[list[logstore.SendHandle[int]]] = [[] for _ in range(threads)]
    with _log(tmp, "threads") as log:
        producer = log.producer(
            linger_ms=5, batch_records=batch_records, max_group_bytes=max_group_bytes
        )
        ready = threading.Barrier(threads + 1)

        def run(t: int) -> None:
            send, value = producer.send, b"%02d" % t * 50
            ready.wait()
            handles[t] = [send(value, key=key) for key in keys[t]]

        workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        ready.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        producer.flush()
        seconds = time.perf_counter() - start
        producer.close()
        # Every handle: its thread's order, exactly 0..N-1 in all, the right record there.
        stored = [r.key for r in log.scan()]
        every: list[int] = []
        for t in range(threads):
            offsets = [h.result() for h in handles[t]]
            assert all(a < b for a, b in itertools.pairwise(offsets)), "a thread's order broke"
            assert [stored[o] for o in offsets] == keys[t], "a handle's offset holds another"
            every += offsets
        assert sorted(every) == list(range(per * threads)), "offsets are not 0..N-1"
    return {"records/s": per * threads / seconds}


def append_many(tmp: Path, n: int) -> dict[str, float]:
    keys, value = _keys(n), b"v" * 100
    with _log(tmp, "append-many") as log:
        start = time.perf_counter()
        for i in range(0, n, 1000):
            log.append_many([logstore.Message(value, key) for key in keys[i : i + 1000]])
        seconds = time.perf_counter() - start
    return {"records/s": n / seconds}


def append_prebuilt(tmp: Path, n: int) -> dict[str, float]:
    """The writer's ceiling: ``append_many`` of one pre-built list of 1,000, again and again."""
    keys, value = _keys(1000), b"v" * 100
    messages = [logstore.Message(value, key) for key in keys]
    with _log(tmp, "append-prebuilt") as log:
        start = time.perf_counter()
        for _ in range(0, n, 1000):
            log.append_many(messages)
        seconds = time.perf_counter() - start
    return {"records/s": n / seconds}


def send_cost(tmp: Path, n: int = 200_000) -> dict[str, float]:
    """ns per ``send`` that only buffers (no write meanwhile), beside a ``Message`` and a tuple."""
    keys, value = _keys(n), b"v" * 100
    config = logstore.LogConfig(fsync="never", max_message_bytes=64 << 20)
    with logstore.Log.open(tmp / "cost", config) as log:  # one batch: the writer stays idle
        producer = log.producer(
            linger_ms=600_000, batch_records=n, batch_bytes=64 << 20, max_buffered_bytes=1 << 40
        )
        send, message = producer.send, logstore.Message
        timings = {}
        for name, run in (
            ("send", lambda: [send(value, key=k) for k in keys]),
            ("Message", lambda: [message(value, k) for k in keys]),
            ("tuple", lambda: [(value, k) for k in keys]),
        ):
            start = time.perf_counter()
            run()
            timings[name] = (time.perf_counter() - start) / n * 1e9
        producer.close()
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--threaded-records", type=int, default=1_000_000)
    parser.add_argument("--paced-records", type=int, default=60_000)
    parser.add_argument("--rate", type=int, default=30_000, help="records/s of the paced rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of the records, once")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.threaded_records, args.repeats = 20_000, 100_000, 1
        args.paced_records = 6_000
    rows: dict[str, Callable[[Path], dict[str, float]]] = {}
    for linger in (0, 5, 50):
        rows[f"linger {linger} ms, 1 thread, flat out"] = lambda tmp, linger=linger: one_thread(
            tmp, linger, args.records
        )
    for linger in (0, 5, 50):
        rows[f"linger {linger} ms, 1 thread, paced {args.rate:,}/s"] = lambda tmp, linger=linger: (
            one_thread(tmp, linger, args.paced_records, args.rate)
        )
    rows["linger 5 ms, 8 threads, flat out"] = lambda tmp: threads_8(tmp, args.threaded_records)
    rows["the same, batch_records 5,000"] = lambda tmp: threads_8(
        tmp, args.threaded_records, batch_records=5000
    )
    rows["the same, batch_records 1,000, one fsync per batch"] = lambda tmp: threads_8(
        tmp, args.threaded_records, max_group_bytes=0
    )
    rows["append_many, 1,000 per call"] = lambda tmp: append_many(tmp, args.records)
    rows["append_many, 1,000 pre-built"] = lambda tmp: append_prebuilt(tmp, args.records)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in rows}
    WORK.mkdir(exist_ok=True)
    for _ in range(args.repeats):
        for name, row in rows.items():
            tmp = Path(tempfile.mkdtemp(dir=WORK))
            try:
                results[name].append(row(tmp))
            finally:
                shutil.rmtree(tmp)
    print(f"producer, fsync=always, codec {logstore.__speedups__}, {args.repeats} repeats:")
    print("| row | records/s (median, min-max) | p50 ms | p99 ms |\n|---|--:|--:|--:|")
    for name, runs in results.items():
        rate = sorted(r["records/s"] for r in runs)
        cells = [f"{statistics.median(rate):,.0f} ({rate[0]:,.0f}-{rate[-1]:,.0f})"]
        for stat in ("p50 ms", "p99 ms"):
            got = [r[stat] for r in runs if stat in r]
            cells.append(f"{statistics.median(got):.2f}" if got else "")
        print(f"| {name} | " + " | ".join(cells) + " |")
    costs = []
    for _ in range(args.repeats):
        tmp = Path(tempfile.mkdtemp(dir=WORK))
        try:
            costs.append(send_cost(tmp))
        finally:
            shutil.rmtree(tmp)
    print(
        "ns per record, building a list of 200,000 (median of the repeats): "
        + ", ".join(
            f"{name} {statistics.median(c[name] for c in costs):.0f}"
            for name in ("send", "Message", "tuple")
        )
    )
    best = statistics.median(r["records/s"] for r in results["linger 5 ms, 8 threads, flat out"])
    print(f"8 threads: {best / TARGET:.2f}x the target of {TARGET:,} records/s")
    single = results["the same, batch_records 1,000, one fsync per batch"]
    print(
        f"group commit: {best / statistics.median(r['records/s'] for r in single):.2f}x "
        "one fsync per batch"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
