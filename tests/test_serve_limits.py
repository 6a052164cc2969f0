"""``logstore serve`` under bad input and pressure.

A fuzz test sends valid requests (encoded with kio), then bit-flipped,
truncated, length-lied and random frames: the server stays up, a client
connected all along keeps being answered, and the stored records read back
exactly. ``max_connections`` refuses the connection over it; a client that
sends and never reads cannot make the server buffer more than
``max_buffered_bytes`` and one answer; a request being served at shutdown is
answered before the connection closes.
"""

from __future__ import annotations

import datetime
import io
import socket
import struct
import threading
import time

import pytest

import logstore

pytest.importorskip("kio")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.fetch.v4.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.fetch.v4.response import FetchResponse
from kio.schema.list_offsets.v1.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.request_header.v1.header import RequestHeader as HeaderV1
from kio.schema.request_header.v2.header import RequestHeader as HeaderV2
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32Timedelta


def _frame(api_key: int, version: int, correlation_id: int, body: object) -> bytes:
    """A size-prefixed request as a client sends it (header v2 for a flexible body)."""
    out = io.BytesIO()
    flexible = type(body).__flexible__  # type: ignore[attr-defined]
    header_class = HeaderV2 if flexible else HeaderV1
    header = header_class(
        request_api_key=api_key,  # type: ignore[arg-type]
        request_api_version=version,  # type: ignore[arg-type]
        correlation_id=correlation_id,  # type: ignore[arg-type]
        client_id="fuzz",
    )
    entity_writer(header_class)(out, header)
    entity_writer(type(body))(out, body)
    data = out.getvalue()
    return struct.pack(">i", len(data)) + data


def _fetch(correlation_id: int, topic: str, wait_ms: int) -> bytes:
    request = FetchRequest(
        max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=wait_ms)),
        min_bytes=1,  # type: ignore[arg-type]
        topics=(
            FetchTopic(
                topic=topic,  # type: ignore[arg-type]
                partitions=(
                    FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20),  # type: ignore[arg-type]
                ),
            ),
        ),
    )
    return _frame(1, 4, correlation_id, request)


def _api_versions(correlation_id: int) -> bytes:
    body = ApiVersionsRequest(client_software_name="fuzz", client_software_version="1")
    return _frame(18, 3, correlation_id, body)


VALID = [
    _api_versions(1),
    _frame(
        3,
        12,
        2,
        MetadataRequest(
            topics=(MetadataRequestTopic(topic_id=None, name="scratch"),),
            include_topic_authorized_operations=False,
        ),
    ),  # type: ignore[arg-type]
    _frame(3, 12, 3, MetadataRequest(topics=None, include_topic_authorized_operations=False)),
    _fetch(4, "scratch", 0),
    _fetch(5, "kept-intact", 0),
    _frame(
        2,
        1,
        6,
        ListOffsetsRequest(
            replica_id=-1,  # type: ignore[arg-type]
            topics=(
                ListOffsetsTopic(
                    name="kept-intact",  # type: ignore[arg-type]
                    partitions=(ListOffsetsPartition(partition_index=1, timestamp=-1),),  # type: ignore[arg-type]
                ),
            ),
        ),
    ),
]


def _read_frame(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data[4:]


def _answered(sock: socket.socket, correlation_id: int) -> None:
    sock.sendall(_api_versions(correlation_id))
    answer = _read_frame(sock)
    assert struct.unpack_from(">ih", answer) == (correlation_id, 0)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """One valid request, then damaged one way or several."""
    frame = bytearray(draw(st.sampled_from(VALID)))
    how = draw(st.sampled_from(["flip", "truncate", "lie", "random", "junk-after", "valid"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            bit = draw(st.integers(0, len(frame) * 8 - 1))
            frame[bit // 8] ^= 1 << (bit % 8)
    elif how == "truncate":
        frame = frame[: draw(st.integers(0, len(frame) - 1))]
    elif how == "lie":
        size = draw(st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(0, len(frame))))
        frame[:4] = struct.pack(">i", size)
    elif how == "random":
        body = draw(st.binary(min_size=0, max_size=200))
        frame = bytearray(struct.pack(">i", len(body)) + body)
    elif how == "junk-after":
        junk = draw(st.binary(min_size=1, max_size=20))
        frame = bytearray(frame + junk)
        frame[:4] = struct.pack(">i", len(frame) - 4)
    return bytes(frame)


def _seed(root) -> list:
    broker = logstore.Broker.open(root)
    try:
        topic = broker.create_topic("kept-intact", 2)
        for i in range(40):
            topic.partition(i % 2).append(
                f"value-{i}".encode(), key=f"k{i}".encode(), timestamp=1_700_000_000_000 + i
            )
        broker.create_topic("scratch", 1)
        return [list(topic.partition(p).scan()) for p in range(2)]
    finally:
        broker.close()


def test_fuzzed_frames_leave_the_server_up_and_the_data_intact(tmp_path) -> None:
    expected = _seed(tmp_path)
    assert [len(p) for p in expected] == [20, 20]
    with (
        logstore.serve(tmp_path, listen="127.0.0.1:0") as server,
        socket.create_connection(server.address, timeout=5) as good,
    ):
        _answered(good, 100)
        counter = iter(range(101, 10**6))

        @settings(
            max_examples=300,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(_mutated())
        def one(frame: bytes) -> None:
            with socket.create_connection(server.address, timeout=5) as bad:
                bad.sendall(frame)
                bad.shutdown(socket.SHUT_WR)  # the server sees the end: no waiting out a lie
                while bad.recv(65536):
                    pass  # answers (for a frame still valid) or nothing, then closed
            _answered(good, next(counter))

        one()
    # Every stored record, byte for byte, after the server closed the root.
    broker = logstore.Broker.open(tmp_path)
    try:
        topic = broker.topic("kept-intact")
        assert [list(topic.partition(p).scan()) for p in range(2)] == expected
        assert sorted(broker.topics()) == ["kept-intact", "scratch"]
    finally:
        broker.close()


def test_max_connections_refuses_the_one_over(tmp_path) -> None:
    with logstore.serve(tmp_path, listen="127.0.0.1:0", max_connections=2) as server:
        first = socket.create_connection(server.address, timeout=5)
        second = socket.create_connection(server.address, timeout=5)
        _answered(first, 1)
        _answered(second, 2)
        with socket.create_connection(server.address, timeout=5) as third:
            try:
                third.sendall(_api_versions(3))
                assert third.recv(100) == b""  # closed unanswered
            except ConnectionResetError:
                pass  # closed unanswered, before or after the request arrived
        _answered(first, 4)  # those open go on
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the closed one's slot frees once the server saw it close
            with socket.create_connection(server.address, timeout=5) as again:
                again.sendall(_api_versions(5))
                answer = _read_frame(again)
            if answer or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert struct.unpack_from(">ih", answer) == (5, 0)
        second.close()


def test_a_client_that_does_not_read_cannot_make_the_server_buffer(tmp_path) -> None:
    bound = 64 << 10
    with logstore.serve(tmp_path, listen="127.0.0.1:0", max_buffered_bytes=bound) as server:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(server.address)
        slow.settimeout(1)
        answer_size = len(_read_frame_of(server, _api_versions(0)))
        chunk = b"".join(_api_versions(i) for i in range(1000))
        sent = 0
        try:
            while sent < 200 << 20:  # unbounded, the answers would be ~10 times this
                sent += slow.send(chunk)
        except TimeoutError:
            pass
        assert sent < 20 << 20  # the server stopped reading: the client is blocked
        buffered = [c.buffered() for c in server._connections.values()]
        assert max(buffered) <= bound + answer_size + 4
        with socket.create_connection(server.address, timeout=5) as other:
            _answered(other, 7)  # everyone else is served meanwhile
        slow.close()


def _read_frame_of(server, frame: bytes) -> bytes:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(frame)
        return _read_frame(sock)


def test_a_request_in_flight_at_shutdown_is_answered(tmp_path) -> None:
    broker = logstore.Broker.open(tmp_path)
    broker.create_topic("empty", 1)
    broker.close()
    server = logstore.serve(tmp_path, listen="127.0.0.1:0")
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(_fetch(9, "empty", 1500))  # a long poll: nothing will arrive
        time.sleep(0.3)
        started = time.monotonic()
        closer = threading.Thread(target=server.close)
        closer.start()
        answer = _read_frame(sock)
        assert sock.recv(100) == b""  # then the connection is closed
        closer.join()
    assert time.monotonic() - started >= 1.0  # the poll ran its course
    (correlation_id,) = struct.unpack_from(">i", answer)
    assert correlation_id == 9
    response, _ = entity_reader(FetchResponse)(answer, 4)
    [topic] = response.responses
    assert topic.topic == "empty"
    assert [
        (p.partition_index, p.error_code.value, p.high_watermark) for p in topic.partitions
    ] == [(0, 0, 0)]
    with pytest.raises(OSError):
        socket.create_connection(server.address, timeout=1)  # and nothing listens any more
