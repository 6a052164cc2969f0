"""A librdkafka consumer reading ``logstore serve`` with and without ``sendfile``, 1 KiB values.

``--records`` 1 KiB values (batches of 1,000) in one partition, consumed
from offset 0 by ``confluent_kafka.Consumer`` (``max.partition.fetch.bytes``
1 MiB), from a server started with ``LOGSTORE_SENDFILE=0`` (batches read into
bytes and written) and with sendfile, in turns, ``--rounds`` times (each
round in another order). Reported: MB/s of values on the wall clock from the
first message on, and the server's CPU seconds over the same span. On a
2-core machine the consumer's own work (librdkafka and the Python loop)
takes most of the time, so the server's CPU says more than the wall clock.

    .venv/bin/python bench/serve_consume.py [--records 300000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from serve_fetch import build, cpu_seconds, free_port, wait_listening


def consume(root: str, records: int, sendfile: bool) -> tuple[float, float, int]:
    """``(wall seconds, server CPU seconds, value bytes)`` of consuming every record."""
    from confluent_kafka import Consumer, TopicPartition

    port = free_port()
    env = dict(os.environ, LOGSTORE_SENDFILE="1" if sendfile else "0")
    argv = [sys.executable, "-m", "logstore", "serve", root, "--listen", f"127.0.0.1:{port}"]
    with subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL) as server:
        try:
            wait_listening(port)
            consumer = Consumer(
                {
                    "bootstrap.servers": f"127.0.0.1:{port}",
                    "group.id": f"bench-{time.time_ns()}",
                    "enable.auto.commit": False,
                    "max.partition.fetch.bytes": 1 << 20,
                    "log_level": 0,
                }
            )
            consumer.assign([TopicPartition("t", 0, 0)])
            count = size = 0
            t0 = c0 = 0.0
            while count < records:
                messages = consumer.consume(10_000, timeout=10)
                if not messages:
                    raise RuntimeError(f"no messages after {count}")
                if not count:
                    t0, c0 = time.perf_counter(), cpu_seconds(server.pid)
                for m in messages:
                    if m.error() is None:
                        count += 1
                        size += len(m.value() or b"")
            wall, cpu = time.perf_counter() - t0, cpu_seconds(server.pid) - c0
            consumer.close()
        finally:
            server.terminate()
    return wall, cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="logstore-serve-consume-")
    root = os.path.join(top, "root")
    try:
        build(root, args.records)
        print("| round | path | MB/s (wall) | server CPU s | MB per server CPU s |")
        print("|---|---|--:|--:|--:|")
        for r in range(args.rounds):
            for sendfile in (True, False) if r % 2 == 0 else (False, True):
                wall, cpu, size = consume(root, args.records, sendfile)
                label = "sendfile" if sendfile else "read + write"
                rate = size / cpu / 1e6 if cpu else float("inf")
                print(f"| {r} | {label} | {size / wall / 1e6:.0f} | {cpu:.2f} | {rate:.0f} |")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
