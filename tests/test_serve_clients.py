"""``logstore serve`` with kafka-python, aiokafka and (when on PATH) kcat.

Each client produces with ``acks=all``, consumes with a subscribed group,
commits (with metadata), closes, and a second consumer of the same group
resumes exactly after the commit. Keys land in the partition Kafka's murmur2
chooses; offsets, keys, values and headers come back exactly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid

import pytest

import logstore
from logstore.partitioner import partition_for

pytest.importorskip("kio")

HOSTS = [f"host-{i:02d}.example.org".encode() for i in range(7)]
N = 60
FIRST = 40  # records consumed and committed before the group's consumer closes
PARTITIONS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-clients")
    with logstore.serve(root, listen="127.0.0.1:0") as srv:
        yield srv


def _bootstrap(server) -> str:
    host, port = server.address
    return f"{host}:{port}"


def _record(i: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return HOSTS[i % len(HOSTS)], f"value-{i}".encode(), [("i", str(i).encode())]


def _expected() -> dict[int, list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]]]:
    """Per partition, (offset, key, value, headers) as the server must store them."""
    out: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    for i in range(N):
        key, value, headers = _record(i)
        p = partition_for(key, PARTITIONS)
        out[p].append((len(out[p]), key, value, headers))
    return out


def _split(expected: dict[int, list]) -> tuple[dict[int, int], set[tuple[int, int]]]:
    """The commit the first consumer makes (first FIRST records in i order) and what is left."""
    commit: dict[int, int] = {p: 0 for p in range(PARTITIONS)}
    by_i = []
    for p, records in expected.items():
        for offset, _, value, _ in records:
            by_i.append((int(value[len(b"value-") :]), p, offset))
    for i, p, offset in sorted(by_i):
        if i < FIRST:
            commit[p] = offset + 1
    left = {(p, o) for _, p, o in by_i if o >= commit[p]}
    return commit, left


# ------------------------------------------------------------------ kafka-python


def test_kafka_python_produce_group_commit_resume(server) -> None:
    kafka = pytest.importorskip("kafka")
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.structs import OffsetAndMetadata, TopicPartition

    topic = f"kp-{uuid.uuid4().hex[:8]}"
    group = f"kp-group-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=_bootstrap(server))
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()

    producer = kafka.KafkaProducer(bootstrap_servers=_bootstrap(server), acks="all")
    metas = []
    for i in range(N):
        key, value, headers = _record(i)
        metas.append(producer.send(topic, key=key, value=value, headers=headers))
    producer.flush(30)
    expected = _expected()
    got = {}
    for i, future in enumerate(metas):
        meta = future.get(timeout=10)
        got[i] = (meta.partition, meta.offset)
    producer.close()
    want = {}
    for p, records in expected.items():
        for offset, _, value, _ in records:
            want[int(value[len(b"value-") :])] = (p, offset)
    assert got == want

    commit, left = _split(expected)
    first = _kp_consumer(kafka, server, topic, group)
    seen = _kp_poll(first, N)
    assert seen == {(p, o): (k, v, h) for p, records in expected.items() for o, k, v, h in records}
    first.commit(
        {TopicPartition(topic, p): OffsetAndMetadata(o, f"kp-{p}", -1) for p, o in commit.items()}
    )
    assert {p: first.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)} == commit
    first.close()

    second = _kp_consumer(kafka, server, topic, group)
    rest = _kp_poll(second, len(left))
    assert set(rest) == left
    second.close()

    # OffsetFetch gives back the metadata the client committed.
    admin = KafkaAdminClient(bootstrap_servers=_bootstrap(server))
    offsets = admin.list_group_offsets(group)[group]
    admin.close()
    assert {tp.partition: (m.offset, m.metadata) for tp, m in offsets.items()} == {
        p: (o, f"kp-{p}") for p, o in commit.items()
    }


def _kp_consumer(kafka, server, topic: str, group: str):
    return kafka.KafkaConsumer(
        topic,
        bootstrap_servers=_bootstrap(server),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )


def _kp_poll(consumer, want: int) -> dict[tuple[int, int], tuple]:
    seen: dict[tuple[int, int], tuple] = {}
    deadline = time.monotonic() + 30
    while len(seen) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                assert (r.partition, r.offset) not in seen
                seen[(r.partition, r.offset)] = (r.key, r.value, list(r.headers))
    assert len(seen) == want
    # Nothing more arrives.
    assert consumer.poll(timeout_ms=300) == {}
    return seen


# ---------------------------------------------------------------------- aiokafka


def test_aiokafka_produce_group_commit_resume(server) -> None:
    aiokafka = pytest.importorskip("aiokafka")
    asyncio.run(_aiokafka_run(aiokafka, server))


async def _aiokafka_run(aiokafka, server) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    topic = f"aio-{uuid.uuid4().hex[:8]}"
    group = f"aio-group-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=_bootstrap(server))
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()

    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=_bootstrap(server), acks="all")
    await producer.start()
    got = {}
    for i in range(N):
        key, value, headers = _record(i)
        meta = await producer.send_and_wait(topic, key=key, value=value, headers=headers)
        got[i] = (meta.partition, meta.offset)
    await producer.stop()
    expected = _expected()
    want = {}
    for p, records in expected.items():
        for offset, _, value, _ in records:
            want[int(value[len(b"value-") :])] = (p, offset)
    assert got == want

    commit, left = _split(expected)
    first = await _aio_consumer(aiokafka, server, topic, group)
    seen = await _aio_poll(first, N)
    assert seen == {(p, o): (k, v, h) for p, records in expected.items() for o, k, v, h in records}
    await first.commit(
        {TopicPartition(topic, p): OffsetAndMetadata(o, f"aio-{p}") for p, o in commit.items()}
    )
    assert {p: await first.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)} == commit
    await first.stop()

    second = await _aio_consumer(aiokafka, server, topic, group)
    rest = await _aio_poll(second, len(left))
    assert set(rest) == left
    await second.stop()


async def _aio_consumer(aiokafka, server, topic: str, group: str):
    consumer = aiokafka.AIOKafkaConsumer(
        topic,
        bootstrap_servers=_bootstrap(server),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )
    await consumer.start()
    return consumer


async def _aio_poll(consumer, want: int) -> dict[tuple[int, int], tuple]:
    seen: dict[tuple[int, int], tuple] = {}
    deadline = time.monotonic() + 30
    while len(seen) < want and time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for r in records:
                assert (r.partition, r.offset) not in seen
                seen[(r.partition, r.offset)] = (r.key, r.value, list(r.headers))
    assert len(seen) == want
    assert await consumer.getmany(timeout_ms=300) == {}
    return seen


# -------------------------------------------------------------------------- kcat


KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def test_kcat_list_produce_consume(server) -> None:
    if KCAT is None:
        # CI installs Debian's kcat (.ci/run) and sets LOGSTORE_KAFKA=required: never a skip there.
        if os.environ.get("LOGSTORE_KAFKA") == "required":
            pytest.fail("kcat is not on PATH (Debian package kcat) and LOGSTORE_KAFKA=required")
        pytest.skip("kcat is not on PATH (Debian package kcat)")
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    bootstrap = _bootstrap(server)
    # Auto-create is off (as in Kafka 4): the topic comes first.
    ck_admin = pytest.importorskip("confluent_kafka.admin")
    admin = ck_admin.AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([ck_admin.NewTopic(topic, 1, 1)]).values():
        assert future.result(timeout=10) is None
    produced = subprocess.run(
        [KCAT, "-b", bootstrap, "-P", "-t", topic, "-p", "0", "-K", ":"],
        input=b"".join(f"k{i}:v{i}\n".encode() for i in range(5)),
        capture_output=True,
        timeout=30,
    )
    assert produced.returncode == 0, produced.stderr
    listing = subprocess.run(
        [KCAT, "-b", bootstrap, "-L", "-t", topic], capture_output=True, text=True, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    assert f'topic "{topic}" with 1 partitions:' in listing.stdout
    consumed = subprocess.run(
        [KCAT, "-b", bootstrap, "-C", "-t", topic, "-e", "-f", "%k=%s@%o\\n"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == [f"k{i}=v{i}@{i}" for i in range(5)]
