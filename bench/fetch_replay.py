"""The server's CPU per MB of Fetch, without sockets or clients: frames replayed through dispatch.

A topic of ``PARTITIONS`` partitions holds ``RECORDS`` values of 1 KiB in
batches of about 1 MB (librdkafka's ``batch.size``); Fetch v12 requests for
every partition (1 MiB each, as librdkafka's ``max.partition.fetch.bytes``)
walk it from the start to the end, ``PASSES`` times, each frame decoded,
read, encoded as ``logstore serve`` does (``apis.dispatch``). Process CPU
(every thread, the reads in ``to_thread`` included) per MB of records
returned; the best of ``ROUNDS``. The part of a consume that is logstore's
own code, free of the noise of a client and a loopback socket. glibc's
thresholds are fixed as ``logstore serve`` fixes them (``server.memory``)
unless ``--glibc-defaults``; the MB that the store pread are counted too::

    .venv/bin/python bench/fetch_replay.py [--glibc-defaults]
"""

from __future__ import annotations

import asyncio
import datetime
import io
import struct
import sys
import tempfile
import time
from pathlib import Path

from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.request_header.v2.header import RequestHeader
from kio.serial import entity_writer

import logstore
from logstore import batchfile
from logstore.server import apis, codec
from logstore.server.memory import reuse_freed_memory
from logstore.server.state import ServerState

PARTITIONS = 4
RECORDS = 100_000
VALUE_BYTES = 1024
PER_BATCH = 950
PASSES = 5
ROUNDS = 3
TOPIC = "replay"


def _frame(offsets: list[int], correlation_id: int) -> bytes:
    request = FetchRequest(
        max_wait=datetime.timedelta(milliseconds=100),
        min_bytes=1,
        max_bytes=50 << 20,
        topics=(
            FetchTopic(
                topic=TOPIC,
                partitions=tuple(
                    FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20)
                    for p, o in enumerate(offsets)
                ),
            ),
        ),
        forgotten_topics_data=(),
    )
    out = io.BytesIO()
    out.write(struct.pack(">hhi", 1, 12, correlation_id))
    header = RequestHeader(
        request_api_key=1, request_api_version=12, correlation_id=correlation_id, client_id="replay"
    )
    out = io.BytesIO()
    entity_writer(RequestHeader)(out, header)
    entity_writer(FetchRequest)(out, request)
    return out.getvalue()


def _next_offsets(answer: bytes | list[bytes], offsets: list[int]) -> tuple[list[int], int]:
    """Each partition's offset after the batches answered (read from the batch headers)."""
    frame = answer if isinstance(answer, bytes) else b"".join(answer)
    cls = codec.response_class(1, 12)
    assert cls is not None
    from kio.serial import entity_reader

    response, _ = entity_reader(cls)(frame, 4 + 4 + 1)
    moved = 0
    out = list(offsets)
    for part in response.responses[0].partitions:
        data = part.records or b""
        pos = 0
        while pos + 12 <= len(data):
            base, length = struct.unpack_from(">qi", data, pos)
            (delta,) = struct.unpack_from(">i", data, pos + 23)
            out[part.partition_index] = base + delta + 1
            pos += 12 + length
        moved += len(data)
    return out, moved


async def _replay(state: ServerState, end: int) -> tuple[float, int]:
    cpu = 0.0
    moved = 0
    for _ in range(PASSES):
        offsets = [0] * PARTITIONS
        n = 0
        while min(offsets) < end:
            n += 1
            frame = _frame(offsets, n)
            t0 = time.process_time()
            header = codec.decode_header(frame)
            answer = await apis.dispatch(state, header, frame)
            cpu += time.process_time() - t0
            assert answer is not None
            offsets, got = _next_offsets(answer, offsets)
            moved += got
    return cpu, moved


def main() -> int:
    defaults = "--glibc-defaults" in sys.argv[1:]
    if not defaults:
        reuse_freed_memory()
    pread = [0]
    real_read = batchfile.BatchFile.read

    def counted(self: batchfile.BatchFile, position: int, size: int) -> bytes:
        data = real_read(self, position, size)
        pread[0] += len(data)
        return data

    batchfile.BatchFile.read = counted  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        value = b"x" * VALUE_BYTES
        with logstore.Broker.open(root) as broker:
            topic = broker.create_topic(TOPIC, PARTITIONS, logstore.LogConfig(fsync="never"))
            per = RECORDS // PARTITIONS
            for p in range(PARTITIONS):
                log = topic.partition(p)
                for start in range(0, per, PER_BATCH):
                    log.append_many([value] * min(PER_BATCH, per - start))
            state = ServerState(broker, "127.0.0.1", 0, "replay", None, None)  # type: ignore[arg-type]
            best = None
            for _ in range(ROUNDS):
                pread[0] = 0
                cpu, moved = asyncio.run(_replay(state, per))
                ms_mb = cpu * 1000 / (moved / 1e6)
                best = ms_mb if best is None else min(best, ms_mb)
                print(
                    f"fetch replay: {moved / 1e6:.0f} MB served, {pread[0] / 1e6:.0f} MB pread,"
                    f" {cpu:.3f} s CPU, {ms_mb:.3f} ms/MB"
                )
    malloc = "glibc defaults" if defaults else "thresholds fixed"
    print(
        f"fetch replay best of {ROUNDS}: {best:.3f} CPU ms/MB"
        f" (record codec {logstore.__speedups__}, malloc {malloc})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
