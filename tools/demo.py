"""``make demo``: write a realistic access log into a logstore log, read it back, inspect it.

Generates ~100k nginx-style access-log lines from 200 hosts, appends them
keyed by hostname (in batches, as an ingest service would) to a log under
``./demo-data``, reads everything back and checks it, then prints
``logstore inspect`` of the partition.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import logstore

ROOT = Path("demo-data")
PARTITION = ROOT / "access-log-0"
RECORDS = 100_000
HOSTS = [f"web-{i:03d}.example.com" for i in range(200)]
PATHS = ["/", "/index.html", "/api/v1/orders", "/api/v1/users/42", "/static/app.js", "/login"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/2.0"]


def access_lines(count: int, seed: int = 7) -> list[tuple[str, bytes, int]]:
    """(host, line, timestamp_ms) triples in time order, like a fleet's combined log."""
    rng = random.Random(seed)
    start_ms = 1_763_700_000_000
    out = []
    for i in range(count):
        host = rng.choice(HOSTS)
        ts = start_ms + i * 3
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ts / 1000))
        line = (
            f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} "
            f'- - [{when}] "{rng.choice(["GET", "GET", "GET", "POST"])} {rng.choice(PATHS)} HTTP/1.1" '
            f'{rng.choice([200, 200, 200, 301, 404, 500])} {rng.randint(200, 50_000)} "-" '
            f'"{rng.choice(AGENTS)}"'
        )
        out.append((host, line.encode(), ts))
    return out


def main() -> int:
    shutil.rmtree(ROOT, ignore_errors=True)
    lines = access_lines(RECORDS)
    config = logstore.LogConfig(segment_bytes=4 << 20, compression="zstd", fsync="never")
    print(f"writing {len(lines):,} access-log lines from {len(HOSTS)} hosts into {PARTITION}")
    started = time.perf_counter()
    with logstore.Log.open(PARTITION, config) as log:
        for i in range(0, len(lines), 1000):
            log.append_many(
                logstore.Message(line, key=host.encode(), timestamp=ts)
                for host, line, ts in lines[i : i + 1000]
            )
        log.flush()
        wrote = time.perf_counter() - started
        print(
            f"  appended in {wrote:.2f} s ({len(lines) / wrote:,.0f} records/s), {log.size_bytes:,} bytes on disk"
        )
    started = time.perf_counter()
    with logstore.Log.open(PARTITION, config) as log:
        back = [(r.key.decode() if r.key else "", r.value, r.timestamp) for r in log.scan()]
        read = time.perf_counter() - started
        first_hour = log.offset_for_timestamp(lines[0][2] + 60_000)
    if [(h, v, t) for h, v, t in back] != [(h, line, t) for h, line, t in lines]:
        print("ERROR: records read back differ from those written", file=sys.stderr)
        return 1
    print(
        f"  read back {len(back):,} records in {read:.2f} s, all identical; one minute in: offset {first_hour}"
    )
    print(f"\n$ logstore inspect {PARTITION}")
    sys.stdout.flush()
    return subprocess.call([sys.executable, "-m", "logstore", "inspect", str(PARTITION)])


if __name__ == "__main__":
    sys.exit(main())
