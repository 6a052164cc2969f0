"""Fetch answers sent with ``sendfile`` are byte for byte those sent from bytes.

The server answers a Fetch with ``FileRanges`` and the connection sends
them with ``loop.sendfile``; ``LOGSTORE_SENDFILE=0`` makes it read them and
write bytes instead (as under TLS). Both must put the same frames on the
wire, holding exactly ``read_batches``' bytes; a file shortened under a
send must cut the connection rather than send a frame shorter than its size.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore import LogConfig
from logstore.server import connection

pytest.importorskip("kio")

CONFIG = LogConfig(fsync="never", segment_bytes=20_000)


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    with logstore.Broker.open(root, CONFIG) as broker:
        broker.create_topic("t", partitions=2, config=CONFIG)
        for b in range(60):
            broker.produce_many(
                "t",
                [logstore.Message(b"v%d-%d" % (b, i) * 20, key=b"k%d" % i) for i in range(12)],
                partition=b % 2,
            )
    return root


def _fetch_frame(
    sock: socket.socket, correlation: int, wanted: list[tuple[int, int, int]]
) -> bytes:
    """A Fetch v4 for ``(partition, offset, partition_max_bytes)`` of topic ``t``; the raw answer."""
    from kio.schema.fetch.v4.request import FetchPartition, FetchRequest, FetchTopic
    from kio.schema.request_header.v1.header import RequestHeader
    from kio.serial import entity_writer

    request = FetchRequest(
        replica_id=-1,  # type: ignore[arg-type]
        max_wait=datetime.timedelta(0),  # type: ignore[arg-type]
        min_bytes=1,  # type: ignore[arg-type]
        max_bytes=1 << 20,  # type: ignore[arg-type]
        isolation_level=0,  # type: ignore[arg-type]
        topics=(
            FetchTopic(
                topic="t",  # type: ignore[arg-type]
                partitions=tuple(
                    FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=m)  # type: ignore[arg-type]
                    for p, o, m in wanted
                ),
            ),
        ),
    )
    out = io.BytesIO()
    header = RequestHeader(
        request_api_key=1,  # type: ignore[arg-type]
        request_api_version=4,  # type: ignore[arg-type]
        correlation_id=correlation,  # type: ignore[arg-type]
        client_id="sendfile-test",
    )
    entity_writer(RequestHeader)(out, header)
    entity_writer(FetchRequest)(out, request)
    sock.sendall(struct.pack(">i", len(out.getvalue())) + out.getvalue())
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} bytes")
        data += chunk
    return data


def _records(frame: bytes) -> list[bytes]:
    from kio.schema.fetch.v4.response import FetchResponse
    from kio.serial import entity_reader

    response, _ = entity_reader(FetchResponse)(frame, 8)
    return [p.records or b"" for t in response.responses for p in t.partitions]


WANTED = [
    [(0, 0, 1 << 20)],
    [(0, 5, 1), (1, 0, 3_000)],
    [(1, 37, 50_000), (0, 100, 10_000)],
    [(0, 0, 1 << 20), (1, 0, 1 << 20)],
    [(0, 300, 1 << 20), (1, 359, 1)],
]


def _answers(root: Path, monkeypatch: pytest.MonkeyPatch, sendfile: bool) -> list[bytes]:
    return _served(root, monkeypatch, WANTED, sendfile=sendfile)


def test_fetch_frames_are_identical_with_and_without_sendfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _root(tmp_path)
    sent = _answers(root, monkeypatch, sendfile=True)
    written = _answers(root, monkeypatch, sendfile=False)
    assert sent == written
    with logstore.Broker.open(root, CONFIG) as broker:
        topic = broker.topic("t")
        assert len(topic.partition(0).segments) > 2
        for frame, wanted in zip(sent, WANTED):
            expected = [topic.partition(p).read_batches(o, m) for p, o, m in wanted]
            assert _records(frame) == expected
            assert any(expected)


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class _Writer:
    """What ``send_stored`` uses of a ``StreamWriter`` when ``sendfile`` is off."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.written: list[bytes] = []

    def get_extra_info(self, name: str) -> Any:
        return None

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_a_file_shortened_under_a_send_aborts_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGSTORE_SENDFILE", "0")
    with logstore.Log.open(tmp_path / "log", CONFIG) as log:
        for _ in range(10):
            log.append(b"x" * 100)
        stored = log.batch_ranges(0)
        writer = _Writer()
        asyncio.run(connection.send_stored(writer, stored, "peer"))  # type: ignore[arg-type]
        assert writer.written == [log.read_batches(0)]
        stored = log.batch_ranges(0)
        log.truncate(3)
        writer = _Writer()
        with pytest.raises(connection.StoredBatchesShortened):
            asyncio.run(connection.send_stored(writer, stored, "peer"))  # type: ignore[arg-type]
        assert writer.transport.aborted and not writer.written
        assert not stored.ranges or stored._fds == []  # closed


def test_a_file_shortened_under_sendfile_aborts_the_connection(tmp_path: Path) -> None:
    """The same over a real socket pair with ``loop.sendfile``."""
    with logstore.Log.open(tmp_path / "log", CONFIG) as log:
        for _ in range(10):
            log.append(b"y" * 100)
        whole = log.read_batches(0)
        stored = log.batch_ranges(0)
        log.truncate(3)
        short = len(log.read_batches(0))

    async def main() -> tuple[bool, bytes]:
        left, right = socket.socketpair()
        left.setblocking(False)
        _, writer = await asyncio.open_connection(sock=left)
        try:
            await connection.send_stored(writer, stored, "peer")
        except connection.StoredBatchesShortened:
            raised = True
        else:
            raised = False
        right.setblocking(False)
        loop = asyncio.get_running_loop()
        got = b""
        while chunk := await loop.sock_recv(right, 1 << 16):  # the loop runs: the abort closes
            got += chunk
        right.close()
        return raised, got

    raised, got = asyncio.run(main())
    assert raised
    assert got == whole[:short]  # what the file still held, then the connection closed


def test_ranges_held_through_retention_are_sent_whole_with_sendfile(tmp_path: Path) -> None:
    """Retention unlinks the segments while the ranges wait to be sent: the held
    descriptors still send their bytes, exactly."""
    with logstore.Log.open(tmp_path / "log", CONFIG) as log:
        for b in range(40):
            log.append_many([b"r%d-%d" % (b, i) * 300 for i in range(10)])  # past a socket buffer
        assert len(log.segments) > 3
        want = log.read_batches(0, 1 << 30)
        stored = log.batch_ranges(0, 1 << 30)
        log.delete_before(log.segments[-1].base_offset)
        assert log.start_offset > 0

        async def main() -> bytes:
            left, right = socket.socketpair()
            left.setblocking(False)
            right.setblocking(False)
            _, writer = await asyncio.open_connection(sock=left)
            loop = asyncio.get_running_loop()
            received = bytearray()

            async def take() -> None:
                while len(received) < len(want):
                    chunk = await loop.sock_recv(right, 1 << 16)
                    assert chunk
                    received.extend(chunk)

            reading = asyncio.ensure_future(take())
            await connection.send_stored(writer, stored, "peer")
            await reading
            writer.close()
            right.close()
            return bytes(received)

        assert asyncio.run(main()) == want
        assert stored._fds == []  # closed once sent


def _partitions(frame: bytes) -> list[tuple[int, bytes]]:
    """``(error code, records)`` per partition of a Fetch v4 answer."""
    from kio.schema.fetch.v4.response import FetchResponse
    from kio.serial import entity_reader

    response, _ = entity_reader(FetchResponse)(frame, 8)
    return [(int(p.error_code), p.records or b"") for t in response.responses for p in t.partitions]


def _damage_middle_segment(root: Path) -> tuple[bytes, int, int, bytes]:
    """Flip a bit inside the records section of the second batch of partition 0's
    middle segment. ``(that batch's bytes, its base offset, the offset after it,
    partition 0's bytes before it)``."""
    with logstore.Broker.open(root, CONFIG) as broker:
        log = broker.topic("t").partition(0)
        segments = log.segments
        assert len(segments) >= 3
        middle = segments[len(segments) // 2]
        data = bytearray(Path(middle.path).read_bytes())
        first = logstore.batch.peek_header(data, 0)
        second = logstore.batch.peek_header(data, first.size)
        damaged = bytes(data[first.size : first.size + second.size])
        intact = log.read_batches(0, 1 << 30)
    data[first.size + logstore.batch.HEADER_SIZE + 3] ^= 0x04  # inside the records section
    Path(middle.path).write_bytes(bytes(data))
    return damaged, second.base_offset, second.next_offset, intact[: intact.index(damaged)]


def _served(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    wanted: list[list[tuple[int, int, int]]],
    *,
    sendfile: bool,
) -> list[bytes]:
    monkeypatch.setenv("LOGSTORE_SENDFILE", "1" if sendfile else "0")
    calls: list[int] = []
    real = connection._sendfile_now

    def counted(sock_fd: int, fd: int, position: int, length: int) -> int:
        calls.append(length)
        return real(sock_fd, fd, position, length)

    monkeypatch.setattr(connection, "_sendfile_now", counted)
    frames = []
    with logstore.serve(root, listen="127.0.0.1:0") as server:
        assert server.address is not None
        with socket.create_connection(server.address, timeout=30) as sock:
            for i, asked in enumerate(wanted):
                frames.append(_fetch_frame(sock, i + 1, asked))
    assert bool(calls) == sendfile  # the path asked for was the one taken
    return frames


def test_a_batch_failing_its_crc_is_never_served_with_or_without_sendfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bit flipped in a middle segment's records: a Fetch whose answer would hold
    that batch answers KAFKA_STORAGE_ERROR (56) and no bytes for the partition, as
    ``read_batches`` raising ``CorruptLogError`` does; the bytes before and after it,
    and the other partition, are served. Both paths put the same frames on the wire."""
    root = _root(tmp_path)
    damaged, base, following, before = _damage_middle_segment(root)
    with logstore.Broker.open(root, CONFIG) as broker:
        log = broker.topic("t").partition(0)
        after = log.read_batches(following, 1 << 20)
        whole_1 = broker.topic("t").partition(1).read_batches(0, 1 << 20)
        for call in (log.read_batches, log.batch_ranges):
            with pytest.raises(logstore.CorruptLogError, match="CRC mismatch"):
                call(0, 1 << 20)
    wanted = [
        [(0, 0, 1 << 20)],
        [(1, 0, 1 << 20), (0, base + 1, 1), (0, following, 1 << 20)],
        [(0, 0, len(before)), (1, 0, 1 << 20)],
    ]
    sent = _served(root, monkeypatch, wanted, sendfile=True)
    written = _served(root, monkeypatch, wanted, sendfile=False)
    assert sent == written
    for frame in sent:
        assert damaged not in frame
    assert [_partitions(frame) for frame in sent] == [
        [(56, b"")],
        [(0, whole_1), (56, b""), (0, after)],
        [(0, before), (0, whole_1)],
    ]
    assert after and before


def test_the_crc_pass_runs_in_the_fetch_worker_thread_never_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _root(tmp_path)
    checked: list[bool] = []
    real = logstore.batchfile.batches_hold_crc

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def recorded(fd: int, position: int, length: int) -> bool:
        checked.append(on_loop())
        return real(fd, position, length)

    monkeypatch.setattr(logstore.batchfile, "batches_hold_crc", recorded)
    frames = _served(root, monkeypatch, WANTED, sendfile=True)
    assert checked and not any(checked)  # checked, and never from the loop's thread
    with logstore.Broker.open(root, CONFIG) as broker:
        topic = broker.topic("t")
        for frame, wanted in zip(frames, WANTED):
            assert _records(frame) == [topic.partition(p).read_batches(o, m) for p, o, m in wanted]
