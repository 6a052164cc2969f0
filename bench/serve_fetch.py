"""``logstore serve``'s Fetch with and without ``sendfile``, from a client that costs little.

A log of ``--records`` 1 KiB values (batches of 1,000) is fetched whole by a
raw client (Fetch v4, ``partition_max_bytes`` ``--max-bytes``, frames read
with ``recv_into`` and only the batch headers looked at), once from a server
started with ``LOGSTORE_SENDFILE=0`` (batches read into bytes and written)
and once with sendfile, in turns, ``--rounds`` times. Reported: MB/s on the
wall clock and the server process's CPU seconds (user + system, from
``/proc``) over the fetches alone, so a busy machine shows in the first and
much less in the second. The server checks every batch's CRC
(``verify_crc_on_read``, the default): with sendfile, through a mapping of
the file; ``--no-crc-pass`` adds a third server whose sendfile path skips
that check, to show what it costs.

    .venv/bin/python bench/serve_fetch.py [--records 300000] [--rounds 3] [--no-crc-pass]
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

import logstore


def build(root: str, records: int) -> None:
    config = logstore.LogConfig(fsync="never")
    value = os.urandom(1024)
    with logstore.Broker.open(root, config) as broker:
        broker.create_topic("t", partitions=1, config=config)
        for start in range(0, records, 1000):
            n = min(1000, records - start)
            broker.produce_many(
                "t", [logstore.Message(value, key=b"k%d" % i) for i in range(n)], partition=0
            )


def request(correlation: int, offset: int, max_bytes: int) -> bytes:
    from kio.schema.fetch.v4.request import FetchPartition, FetchRequest, FetchTopic
    from kio.schema.request_header.v1.header import RequestHeader
    from kio.serial import entity_writer

    out = io.BytesIO()
    entity_writer(RequestHeader)(
        out,
        RequestHeader(
            request_api_key=1,  # type: ignore[arg-type]
            request_api_version=4,  # type: ignore[arg-type]
            correlation_id=correlation,  # type: ignore[arg-type]
            client_id="bench",
        ),
    )
    entity_writer(FetchRequest)(
        out,
        FetchRequest(
            replica_id=-1,  # type: ignore[arg-type]
            max_wait=datetime.timedelta(0),  # type: ignore[arg-type]
            min_bytes=1,  # type: ignore[arg-type]
            max_bytes=max_bytes,  # type: ignore[arg-type]
            isolation_level=0,  # type: ignore[arg-type]
            topics=(
                FetchTopic(
                    topic="t",  # type: ignore[arg-type]
                    partitions=(
                        FetchPartition(
                            partition=0,  # type: ignore[arg-type]
                            fetch_offset=offset,  # type: ignore[arg-type]
                            partition_max_bytes=max_bytes,  # type: ignore[arg-type]
                        ),
                    ),
                ),
            ),
        ),
    )
    data = out.getvalue()
    return struct.pack(">i", len(data)) + data


def fetch_all(address: tuple[str, int], end: int, max_bytes: int) -> int:
    """Fetch ``[0, end)``; the records' bytes received."""
    buf = bytearray(max_bytes + (1 << 16))
    view = memoryview(buf)
    offset = total = 0
    with socket.create_connection(address) as sock:
        correlation = 0
        while offset < end:
            correlation += 1
            sock.sendall(request(correlation, offset, max_bytes))
            head = sock.recv(4, socket.MSG_WAITALL)
            (size,) = struct.unpack(">i", head)
            if size > len(buf):
                buf = bytearray(size)
                view = memoryview(buf)
            got = 0
            while got < size:
                got += sock.recv_into(view[got:size])
            # One topic, one partition: the records are the frame's last bytes.
            records_at = _records_at(buf, size)
            length = size - records_at
            position = records_at
            last = 0
            while position < size:
                base, batch_length = struct.unpack_from(">qi", buf, position)
                (delta,) = struct.unpack_from(">i", buf, position + 23)
                last = base + delta
                position += 12 + batch_length
            offset = last + 1
            total += length
    return total


def _records_at(buf: bytearray, size: int) -> int:
    """Where the records start in a one-partition Fetch v4 answer (after the size prefix)."""
    # Fetch v4 response: correlation_id, throttle_time_ms, topics[1]: name (int16 length),
    # partitions[1]: partition, error_code, high_watermark, last_stable_offset,
    # aborted_transactions (int32 -1), records (int32 length, bytes).
    (name_length,) = struct.unpack_from(">h", buf, 4 + 4 + 4)
    at = 4 + 4 + 4 + 2 + name_length + 4 + 4 + 2 + 8 + 8
    (aborted,) = struct.unpack_from(">i", buf, at)
    at += 4 + max(aborted, 0) * 16
    return at + 4


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int) -> None:
    """Return once a server listens on ``port`` (polled: it is another process)."""
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


#: A server whose ``batch_ranges`` skips the CRC pass (the mapped check reports
#: every range intact): what sendfile costs without it, for comparison only.
_NO_CRC_PASS = (
    "import sys, logstore.batchfile as b; b.batches_hold_crc = lambda *a: True; "
    "from logstore.cli import main; sys.argv[0] = 'logstore'; main()"
)


def run(
    root: str, end: int, max_bytes: int, sendfile: bool, crc_pass: bool = True
) -> tuple[float, float, int]:
    port = free_port()
    env = dict(os.environ, LOGSTORE_SENDFILE="1" if sendfile else "0")
    start = ["-m", "logstore"] if crc_pass else ["-c", _NO_CRC_PASS]
    argv = [sys.executable, *start, "serve", root, "--listen", f"127.0.0.1:{port}"]
    with subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL) as server:
        try:
            wait_listening(port)
            fetch_all(("127.0.0.1", port), min(end, 2000), max_bytes)  # warm-up
            (u0, s0), t0 = cpu_split(server.pid), time.perf_counter()
            size = fetch_all(("127.0.0.1", port), end, max_bytes)
            wall = time.perf_counter() - t0
            u1, s1 = cpu_split(server.pid)
            cpu = (u1 - u0) + (s1 - s0)
            print(f"  (server user {u1 - u0:.2f} s, system {s1 - s0:.2f} s)", file=sys.stderr)
        finally:
            server.terminate()
    return wall, cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--max-bytes", type=int, default=1 << 20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-crc-pass",
        action="store_true",
        help="also time sendfile from a server whose batch_ranges skips the CRC pass",
    )
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="logstore-serve-fetch-")
    root = os.path.join(top, "root")
    try:
        build(root, args.records)
        print("| round | path | MB/s (wall) | server CPU s | MB per server CPU s |")
        print("|---|---|--:|--:|--:|")
        paths = [(True, True), (False, True)]  # (sendfile, CRC pass)
        if args.no_crc_pass:
            paths.append((True, False))
        labels = {
            (True, True): "sendfile",
            (False, True): "read + write",
            (True, False): "sendfile, CRC pass skipped",
        }
        for r in range(args.rounds):
            for sendfile, crc_pass in paths if r % 2 == 0 else paths[::-1]:
                wall, cpu, size = run(root, args.records, args.max_bytes, sendfile, crc_pass)
                label = labels[sendfile, crc_pass]
                rate = size / cpu / 1e6 if cpu else float("inf")
                print(f"| {r} | {label} | {size / wall / 1e6:.0f} | {cpu:.2f} | {rate:.0f} |")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
