"""``make demo``: an access-log pipeline on an embedded logstore broker.

1. Generate nginx-style access-log lines from 200 hosts.
2. Produce them into an 8-partition topic keyed by hostname (Kafka's
   partitioner: one host's lines stay in order in one partition).
3. Consume them with the group ``archiver``, which appends each host's lines to
   ``demo-data/archive/<host>.log.zst`` (one zstd frame per poll) and commits
   after each poll, the shape of a production access-log archiver.
4. Kill the archiver with SIGKILL midway, right after a commit, and start it
   again: it resumes from the group's committed offsets.
5. Check that every line is archived exactly once and in order per host, then
   print ``logstore inspect`` of the broker root.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import zstandard

import logstore

ROOT = Path("demo-data")
BROKER = ROOT / "broker"
ARCHIVE = ROOT / "archive"
TOPIC = "access-log"
GROUP = "archiver"
LINES = 200_000
HOSTS = [f"web-{i:03d}.example.com" for i in range(200)]
PATHS = ["/", "/index.html", "/api/v1/orders", "/api/v1/users/42", "/static/app.js", "/login"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/2.0"]
START_MS = 1_763_700_000_000


def access_lines(count: int, seed: int = 7) -> list[tuple[str, bytes, int]]:
    """``(host, line, timestamp_ms)`` in time order, like a fleet's combined log."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        host = rng.choice(HOSTS)
        ts = START_MS + i * 3
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ts / 1000))
        line = (
            f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} "
            f'- - [{when}] "{rng.choice(["GET", "GET", "GET", "POST"])} {rng.choice(PATHS)} HTTP/1.1" '
            f'{rng.choice([200, 200, 200, 301, 404, 500])} {rng.randint(200, 50_000)} "-" '
            f'"{rng.choice(AGENTS)}" host={host}'
        )
        out.append((host, line.encode(), ts))
    return out


def archiver(stop_after_commits: int | None) -> int:
    """The consumer process: poll, append per-host zstd frames, fsync, commit; repeat."""
    ARCHIVE.mkdir(parents=True, exist_ok=True)
    compressor = zstandard.ZstdCompressor(level=3)
    commits = 0
    with (
        logstore.Broker.open(BROKER, maintenance_interval_ms=None) as broker,
        broker.consumer(GROUP, [TOPIC]) as consumer,
    ):
        while True:
            batch = consumer.poll(max_records=5000)
            if not batch:
                break
            by_host: dict[str, list[bytes]] = collections.defaultdict(list)
            for item in batch:
                by_host[(item.record.key or b"unknown").decode()].append(item.record.value or b"")
            for host, lines in by_host.items():
                with open(ARCHIVE / f"{host}.log.zst", "ab") as f:
                    f.write(compressor.compress(b"\n".join(lines) + b"\n"))
                    f.flush()
                    os.fsync(f.fileno())
            consumer.commit()  # durable: a crash from here on loses nothing
            commits += 1
            if commits == stop_after_commits:
                print("committed", flush=True)
                sys.stdin.readline()  # wait here to be killed
    return 0


def read_archive() -> dict[str, list[bytes]]:
    out = {}
    for path in sorted(ARCHIVE.glob("*.log.zst")):
        reader = zstandard.ZstdDecompressor().stream_reader(
            path.read_bytes(), read_across_frames=True
        )
        out[path.name[: -len(".log.zst")]] = reader.read().splitlines()
    return out


def main() -> int:
    started = time.perf_counter()
    shutil.rmtree(ROOT, ignore_errors=True)
    lines = access_lines(LINES)
    print(f"1. generated {len(lines):,} access-log lines from {len(HOSTS)} hosts")

    config = logstore.LogConfig(fsync="never", compression="zstd", segment_bytes=8 << 20)
    with logstore.Broker.open(BROKER, config, maintenance_interval_ms=None) as broker:
        broker.create_topic(TOPIC, partitions=8)
        t0 = time.perf_counter()
        for i in range(0, len(lines), 2000):
            broker.produce_many(
                TOPIC,
                [
                    logstore.Message(line, key=host.encode(), timestamp=ts)
                    for host, line, ts in lines[i : i + 2000]
                ],
            )
        elapsed = time.perf_counter() - t0
        topic = broker.topic(TOPIC)
        spread = [topic.partition(p).end_offset for p in range(8)]
    print(
        f"2. produced into {TOPIC} (8 partitions, keyed by hostname) in {elapsed:.2f} s "
        f"({len(lines) / elapsed:,.0f} records/s); records per partition: {spread}"
    )

    argv = [sys.executable, __file__, "--archiver"]
    with subprocess.Popen(
        [*argv, "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        child.stdout.readline()  # "committed": ten polls archived and committed
        child.send_signal(signal.SIGKILL)
    with logstore.Broker.open(BROKER, maintenance_interval_ms=None) as broker:
        done = sum(broker.committed_offsets().values())
    print(
        f"3. archiver killed with SIGKILL after 10 commits: {done:,} of {len(lines):,} records committed"
    )
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    print(
        f"4. archiver restarted: resumed from the committed offsets, finished in {time.perf_counter() - t0:.2f} s"
    )

    archived = read_archive()
    expected: dict[str, list[bytes]] = collections.defaultdict(list)
    for host, line, _ in lines:
        expected[host].append(line)
    total = sum(len(v) for v in archived.values())
    if archived != expected:
        missing = sum(len(v) for v in expected.values()) - total
        print(f"ERROR: archive differs from the input ({missing:+,} lines)", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in ARCHIVE.glob("*.zst"))
    raw = sum(len(line) + 1 for _, line, _ in lines)
    print(
        f"5. verified: {total:,} lines archived exactly once, in order, for {len(archived)} hosts; "
        f"{raw / 1e6:.1f} MB of log lines in {size / 1e6:.1f} MB of zstd files"
    )
    print(f"   demo took {time.perf_counter() - started:.1f} s\n\n$ logstore inspect {BROKER}")
    sys.stdout.flush()
    return subprocess.call([sys.executable, "-m", "logstore", "inspect", str(BROKER)])


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--archiver":
        sys.exit(archiver(int(sys.argv[2]) if len(sys.argv) > 2 else None))
    sys.exit(main())
