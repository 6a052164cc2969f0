"""``logstore serve`` with a real Kafka client (confluent-kafka, librdkafka) on a free port.

Every record produced comes back exactly (key, value, headers, timestamp,
partition by Kafka's murmur2, offset); offsets are listed as Kafka lists
them; a consumer group commits into the root's ``__consumer_offsets``; a
bad frame closes only its own connection.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid

import pytest

import logstore
from logstore.partitioner import partition_for

pytest.importorskip("kio")
ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

HOSTS = [f"host-{i:02d}.example.org".encode() for i in range(23)]
N = 2000
BASE_TS = 1_700_000_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    with logstore.serve(root, listen="127.0.0.1:0") as srv:
        yield srv


def _bootstrap(server) -> str:
    host, port = server.address
    return f"{host}:{port}"


def _create(server, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": _bootstrap(server)})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        assert future.result(timeout=10) is None


def _produce(server, topic: str) -> dict[int, list[tuple]]:
    """N records keyed by hostname, acks=all, idempotent; what each delivery report said."""
    producer = ck.Producer(
        {
            "bootstrap.servers": _bootstrap(server),
            "acks": "all",
            "enable.idempotence": True,
            # librdkafka's default is CRC32; murmur2_random is the Java client's partitioner.
            "partitioner": "murmur2_random",
        }
    )
    reports: list = []
    for i in range(N):
        producer.produce(
            topic,
            key=HOSTS[i % len(HOSTS)],
            value=f"value-{i}".encode(),
            headers=[("i", str(i).encode()), ("empty", b"")],
            timestamp=BASE_TS + i,
            on_delivery=lambda err, msg: reports.append((err, msg)),
        )
    assert producer.flush(30) == 0
    assert [err for err, _ in reports if err is not None] == []
    sent: dict[int, list[tuple]] = {}
    for _, msg in reports:
        i = int(msg.value()[len(b"value-") :])
        sent.setdefault(msg.partition(), []).append(
            (msg.offset(), HOSTS[i % len(HOSTS)], f"value-{i}".encode(), BASE_TS + i, i)
        )
    for records in sent.values():
        records.sort()
    return sent


def _consume(consumer, count: int) -> dict[int, list[tuple]]:
    got: dict[int, list[tuple]] = {}
    deadline = time.monotonic() + 30
    n = 0
    while n < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        i = int(msg.value()[len(b"value-") :])
        assert msg.headers() == [("i", str(i).encode()), ("empty", b"")]
        assert msg.timestamp() == (ck.TIMESTAMP_CREATE_TIME, BASE_TS + i)
        got.setdefault(msg.partition(), []).append(
            (msg.offset(), msg.key(), msg.value(), msg.timestamp()[1], i)
        )
        n += 1
    return got


def test_every_record_comes_back_exactly(server) -> None:
    _create(server, "hosts", 8)
    sent = _produce(server, "hosts")
    # Kafka's default partitioner (murmur2 of the key), offsets 0.. in each partition.
    for p, records in sent.items():
        assert [r[0] for r in records] == list(range(len(records)))
        assert {partition_for(r[1], 8) for r in records} == {p}
    assert sum(len(r) for r in sent.values()) == N
    consumer = ck.Consumer(
        {
            "bootstrap.servers": _bootstrap(server),
            "group.id": "assigned",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([ck.TopicPartition("hosts", p, 0) for p in range(8)])
    try:
        got = _consume(consumer, N)
    finally:
        consumer.close()
    assert got == sent


def test_a_group_subscribes_and_commits_into_the_root(server) -> None:
    _create(server, "grouped", 8)
    sent = _produce(server, "grouped")
    consumer = ck.Consumer(
        {
            "bootstrap.servers": _bootstrap(server),
            "group.id": "readers",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["grouped"])
    try:
        got = _consume(consumer, N)
        assert sorted(tp.partition for tp in consumer.assignment()) == list(range(8))
        consumer.commit(asynchronous=False)
        committed = consumer.committed([ck.TopicPartition("grouped", p) for p in range(8)])
    finally:
        consumer.close()
    assert got == sent
    ends = {p: len(records) for p, records in sent.items()}
    assert {tp.partition: tp.offset for tp in committed} == ends
    stored = server._state.broker.committed_offsets()
    assert {p: o for (g, t, p), o in stored.items() if (g, t) == ("readers", "grouped")} == ends


def test_list_offsets_earliest_latest_and_by_time(server) -> None:
    _create(server, "timed", 1)
    producer = ck.Producer({"bootstrap.servers": _bootstrap(server), "acks": "all"})
    for i in range(10):
        producer.produce("timed", value=b"x", timestamp=BASE_TS + 1000 * i)
    assert producer.flush(10) == 0
    consumer = ck.Consumer({"bootstrap.servers": _bootstrap(server), "group.id": "lister"})
    try:
        tp = ck.TopicPartition("timed", 0)
        assert consumer.get_watermark_offsets(tp, timeout=10) == (0, 10)
        wanted = [
            ck.TopicPartition("timed", 0, BASE_TS + 3500),  # between records 3 and 4
            ck.TopicPartition("timed", 0, BASE_TS),
        ]
        found = [consumer.offsets_for_times([t], timeout=10)[0].offset for t in wanted]
        assert found == [4, 0]
        late = consumer.offsets_for_times([ck.TopicPartition("timed", 0, BASE_TS + 10**6)], 10)
        assert late[0].offset == -1  # no record that late: Kafka's "none" (the end, -1)
    finally:
        consumer.close()


def _api_versions_v0(correlation_id: int, version: int = 0) -> bytes:
    client = b"raw"
    body = struct.pack(">hhih", 18, version, correlation_id, len(client)) + client
    return struct.pack(">i", len(body)) + body


def _read_frame(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data[4:]


def test_api_versions_answers_an_unknown_version_in_the_v0_layout(server) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(_api_versions_v0(7, version=99))
        answer = _read_frame(sock)
    correlation_id, error, count = struct.unpack_from(">ihi", answer)
    assert (correlation_id, error) == (7, 35)  # UNSUPPORTED_VERSION
    keys = {struct.unpack_from(">hhh", answer, 10 + 6 * i) for i in range(count)}
    assert (18, 0, 4) in keys and (0, 3, 12) in keys and (1, 4, 12) in keys
    assert len(answer) == 10 + 6 * count


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">i", 6) + b"\x00\x03\xff\xff\x00\x01",  # Metadata, version -1, cut short
        struct.pack(">i", 200 << 20) + b"\x00" * 16,  # over max_request_bytes
        struct.pack(">i", 12) + struct.pack(">hhi", 3, 12, 1) + b"\xff\xff\xff\xff",  # junk body
        struct.pack(">i", 8) + struct.pack(">hhi", 999, 0, 1),  # an API no schema knows
    ],
    ids=["truncated", "oversized", "garbage-body", "unknown-api"],
)
def test_a_bad_frame_closes_only_its_connection(server, frame: bytes) -> None:
    with socket.create_connection(server.address, timeout=5) as good:
        with socket.create_connection(server.address, timeout=5) as bad:
            bad.sendall(frame)
            assert bad.recv(100) == b""  # closed, with no answer
        good.sendall(_api_versions_v0(42))
        correlation_id, error = struct.unpack_from(">ih", _read_frame(good))
        assert (correlation_id, error) == (42, 0)
    name = f"after-bad-{uuid.uuid4().hex[:8]}"
    _create(server, name, 1)  # and real clients go on
    assert name in server._state.broker.topics()


def test_an_admin_client_lists_every_topic(server) -> None:
    """librdkafka's all-topics Metadata v12 has bytes after its body; Kafka ignores them, so do we."""
    _create(server, "listed-a", 2)
    _create(server, "listed-b", 1)
    admin = AdminClient({"bootstrap.servers": _bootstrap(server)})
    topics = admin.list_topics(timeout=10).topics
    assert {n: len(topics[n].partitions) for n in ("listed-a", "listed-b")} == {
        "listed-a": 2,
        "listed-b": 1,
    }


@pytest.mark.parametrize(
    ("session_ms", "error"),
    [(5_999, "invalid_session_timeout"), (6_000, "none"), (1_800_001, "invalid_session_timeout")],
)
def test_a_join_outside_the_session_timeout_range_is_refused(tmp_path, session_ms, error) -> None:
    """Kafka's group.min/max.session.timeout.ms (6 s, 30 min): outside, no member is added."""
    import asyncio

    from logstore.server.codec import ErrorCode
    from logstore.server.groups import Groups

    async def join(broker: logstore.Broker) -> tuple[ErrorCode, int]:
        groups = Groups(broker)
        answer = await groups.join(
            "g",
            "",
            client_id="c",
            client_host="h",
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=session_ms,
            protocol_type="consumer",
            protocols=[("range", b"")],
        )
        members = len(groups.groups["g"].members) if "g" in groups.groups else 0
        groups.stop()
        return answer["error_code"], members

    with logstore.Broker.open(tmp_path) as broker:
        code, members = asyncio.run(join(broker))
    assert (code, members) == (getattr(ErrorCode, error), 0 if error != "none" else 1)


def test_the_session_timeout_range_is_a_server_option(tmp_path) -> None:
    with pytest.raises(logstore.ConfigError, match="group_min_session_timeout_ms"):
        logstore.serve(
            tmp_path,
            listen="127.0.0.1:0",
            group_min_session_timeout_ms=10,
            group_max_session_timeout_ms=5,
        )
    with logstore.serve(
        tmp_path, listen="127.0.0.1:0", group_min_session_timeout_ms=1000
    ) as server:
        host, port = server.address
        admin = AdminClient({"bootstrap.servers": f"{host}:{port}"})
        for future in admin.create_topics([NewTopic("t", 1, 1)]).values():
            assert future.result(timeout=10) is None
        producer = ck.Producer({"bootstrap.servers": f"{host}:{port}"})
        producer.produce("t", b"v", key=b"k")
        assert producer.flush(10) == 0
        consumer = ck.Consumer(
            {
                "bootstrap.servers": f"{host}:{port}",
                "group.id": "g",
                "session.timeout.ms": 1000,
                "heartbeat.interval.ms": 300,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe(["t"])
        got = None
        deadline = time.monotonic() + 20
        while got is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got = (message.offset(), message.key(), message.value())
        consumer.close()
    assert got == (0, b"k", b"v")  # a 1 s session is allowed once the minimum is 1 s
