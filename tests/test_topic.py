"""``Topic``: the topic name rule, partition counts, and routing records like Kafka."""

from __future__ import annotations

import collections
import json
import threading
from pathlib import Path

import pytest

import logstore
from logstore import Message, UnknownPartitionError

from .conftest import DATA, FakeClock
from .helpers_broker import METADATA, OFFSETS_DIR, _broker, open_broker

VECTORS = json.loads((DATA / "murmur2.json").read_text())["vectors"]


def listing(root: Path) -> list[str]:
    """Every path under ``root``, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def batch_headers(partition_dir: Path) -> list[tuple[int, int]]:
    """``(base offset, record count)`` of every batch in a partition's ``.log`` files."""
    out = []
    for path in sorted(partition_dir.glob("*.log")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            base = int.from_bytes(data[pos : pos + 8], "big")
            length = int.from_bytes(data[pos + 8 : pos + 12], "big")
            count = int.from_bytes(data[pos + 57 : pos + 61], "big")
            out.append((base, count))
            pos += 12 + length
        assert pos == len(data), f"{path}: trailing bytes after the last batch"
    return out


# ---------------------------------------------------------------- 2. topic names
INVALID_NAMES = ["", ".", "..", "a/b", "../x", "x" * 250, "héllo", "a b", "tab\t", "nl\n", None]


@pytest.mark.parametrize("name", INVALID_NAMES, ids=repr)
def test_invalid_topic_name_touches_nothing(
    tmp_path: Path, clock: FakeClock, name: str | None
) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        broker.create_topic("ok")
        before = listing(root)
        meta_before = (root / METADATA).read_bytes()
        with pytest.raises(logstore.InvalidTopicName):
            broker.create_topic(name, 2)  # type: ignore[arg-type]
        assert listing(root) == before
        assert listing(tmp_path) == ["root", *(f"root/{p}" for p in before)]
        assert (root / METADATA).read_bytes() == meta_before
        assert broker.topics() == ["ok"]


@pytest.mark.parametrize("name", ["x" * 249, "a.b_c-D9", "_", "-", "..."])
def test_valid_edge_topic_names(tmp_path: Path, clock: FakeClock, name: str) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        broker.create_topic(name, 2)
        assert (root / f"{name}-1").is_dir()
        assert broker.produce(name, b"v", partition=1) == (1, 0)
    with open_broker(root, clock) as broker:
        assert broker.topics() == [name]
        assert [r.value for r in broker.topic(name).partition(1).scan()] == [b"v"]


def test_delete_topic_with_the_longest_valid_name(tmp_path: Path, clock: FakeClock) -> None:
    """A 249-character topic is valid, so it can also be deleted (and stays deleted)."""
    root = tmp_path / "root"
    name = "x" * 249
    with open_broker(root, clock) as broker:
        broker.create_topic(name, 2)
        broker.produce(name, b"v", partition=0)
        broker.delete_topic(name)
        assert broker.topics() == []
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [OFFSETS_DIR]
    with open_broker(root, clock) as broker:
        assert broker.topics() == []


# ---------------------------------------------------------------- 3. routing
def test_partition_for_matches_kafka_vectors(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        for n in (1, 2, 3, 8, 12, 64):
            topic = broker.create_topic(f"p{n}", n)
            got = [topic.partition_for(bytes.fromhex(v["key_hex"])) for v in VECTORS]
            assert got == [v["partition"][str(n)] for v in VECTORS], n


def test_produce_routes_keys_like_kafka(tmp_path: Path, clock: FakeClock) -> None:
    sample = VECTORS[:: max(1, len(VECTORS) // 50)][:50]
    assert len(sample) == 50
    with open_broker(tmp_path / "root", clock) as broker:
        for n in (8, 12):
            broker.create_topic(f"p{n}", n)
            for i, v in enumerate(sample):
                key = bytes.fromhex(v["key_hex"])
                p, offset = broker.produce(f"p{n}", b"%d" % i, key=key)
                assert p == v["partition"][str(n)], (n, v["key_hex"])
                [record] = broker.topic(f"p{n}").partition(p).read(offset, max_records=1)
                assert (record.key, record.value) == (key, b"%d" % i)
            ends = [broker.topic(f"p{n}").partition(p).end_offset for p in range(n)]
            assert ends == [sum(v["partition"][str(n)] == p for v in sample) for p in range(n)]


def test_none_keys_round_robin(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("rr", 8)
        hits = collections.Counter(broker.produce("rr", b"v%d" % i)[0] for i in range(16))
        assert hits == {p: 2 for p in range(8)}
        assert [topic.partition(p).end_offset for p in range(8)] == [2] * 8
        many = broker.produce_many("rr", [b"m%d" % i for i in range(16)])
        assert collections.Counter(p for p, _ in many) == {p: 2 for p in range(8)}
        assert [topic.partition(p).end_offset for p in range(8)] == [4] * 8


def test_explicit_partition_wins_over_key(tmp_path: Path, clock: FakeClock) -> None:
    key = b"web-017.example.com"  # FORMAT.md section 13: partition 8 of 12
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("t", 12)
        assert topic.partition_for(key) == 8
        assert broker.produce("t", b"a", key=key) == (8, 0)
        assert broker.produce("t", b"b", key=key, partition=3) == (3, 0)
        assert broker.produce_many("t", [Message(b"c", key=key)] * 2, partition=5) == [
            (5, 0),
            (5, 1),
        ]
        assert [(r.key, r.value) for r in topic.partition(3).scan()] == [(key, b"b")]
        assert [r.value for r in topic.partition(5).scan()] == [b"c", b"c"]
        assert [r.value for r in topic.partition(8).scan()] == [b"a"]


# ---------------------------------------------------------------- 4. produce_many batching
def test_produce_many_one_batch_per_partition(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    hosts = [b"web-%03d.example.com" % h for h in range(200)]
    messages = [Message(b"msg-%d" % i, key=hosts[i % 200]) for i in range(1000)]
    with open_broker(root, clock) as broker:
        topic = broker.create_topic("t", 8)
        for p in range(8):  # one earlier batch in every partition
            assert broker.produce("t", b"first", partition=p) == (p, 0)
        result = broker.produce_many("t", messages)

        assert len(result) == 1000
        per_partition: dict[int, list[int]] = collections.defaultdict(list)
        for m, (p, offset) in zip(messages, result):
            assert p == topic.partition_for(m.key)
            [record] = topic.partition(p).read(offset, max_records=1)
            assert (record.offset, record.key, record.value) == (offset, m.key, m.value)
            per_partition[p].append(offset)
        assert sorted(per_partition) == list(range(8))
        for p, offsets in per_partition.items():
            assert offsets == list(range(1, 1 + len(offsets)))  # input order, consecutive
            assert topic.partition(p).end_offset == 1 + len(offsets)
            assert batch_headers(root / f"t-{p}") == [(0, 1), (1, len(offsets))]

        by_host: dict[bytes, list[tuple[int, int, int]]] = collections.defaultdict(list)
        for i, (m, (p, offset)) in enumerate(zip(messages, result)):
            by_host[m.key].append((i, p, offset))  # type: ignore[index]
        for entries in by_host.values():
            assert len({p for _, p, _ in entries}) == 1
            assert [o for _, _, o in entries] == sorted(o for _, _, o in entries)


# ---------------------------------------------------------------- 5. concurrent producers
def test_per_key_order_under_concurrent_producers(tmp_path: Path, clock: FakeClock) -> None:
    threads_n, per_thread = 8, 300
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("t", 8, {"segment_messages": 97})

        def produce(i: int) -> None:
            try:
                hosts = [b"t%d-host-%d.example.com" % (i, h) for h in range(10)]
                barrier.wait(timeout=10)
                for n in range(per_thread):
                    broker.produce("t", b"thread-%d-seq-%d" % (i, n), key=hosts[n % 10])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=produce, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert not any(t.is_alive() for t in threads)

        values = collections.Counter()
        seqs: dict[bytes, list[int]] = collections.defaultdict(list)
        for p in range(8):
            offsets = []
            for r in topic.partition(p).scan():
                assert r.key is not None and r.value is not None
                assert topic.partition_for(r.key) == p
                values[r.value] += 1
                seqs[r.key].append(int(r.value.rsplit(b"-", 1)[1]))
                offsets.append(r.offset)
            assert offsets == list(range(len(offsets)))
        expected = {
            b"thread-%d-seq-%d" % (i, n) for i in range(threads_n) for n in range(per_thread)
        }
        assert set(values) == expected
        assert set(values.values()) == {1}
        assert len(seqs) == threads_n * 10
        for key, s in seqs.items():
            assert s == sorted(s) and len(set(s)) == len(s) == per_thread // 10, key


def test_topic_lists_its_logs_and_routes_a_batch_from_its_round_robin_position(
    tmp_path: Path,
) -> None:
    with logstore.Broker.open(
        tmp_path, logstore.LogConfig(fsync="never"), maintenance_interval_ms=None
    ) as broker:
        topic = broker.create_topic("t", partitions=3)
        assert topic.logs == tuple(topic.partition(i) for i in range(3))
        assert topic.partition_for(None) == 0
        routed = topic.route([b"a", b"b", b"c", b"d"])
        if logstore.__speedups__ != "compiled":
            assert routed is None  # the caller routes item by item
            return
        assert routed == ([1, 2, 0, 1], [[b"c"], [b"a", b"d"], [b"b"]])
        assert topic.partition_for(None) == 2  # the position moved past the batch
        assert topic.route([b"x", 7]) is None  # not a kind the compiled router takes
        assert topic.partition_for(None) == 0  # and then it did not move


# ---------------------------------------------------------------- partitions out of range
def test_a_partition_out_of_range_names_topic_partition_and_count(tmp_path: Path) -> None:
    with _broker(tmp_path / "root") as broker:
        topic = broker.create_topic("web", 8)
        message = "topic web has 8 partition(s), 0..7: no partition 99"
        with pytest.raises(UnknownPartitionError) as caught:
            broker.produce("web", b"x", partition=99)
        assert str(caught.value) == message
        assert (caught.value.topic, caught.value.partition, caught.value.partitions) == (
            "web",
            99,
            8,
        )
        with pytest.raises(UnknownPartitionError, match=r"no partition 99$"):
            broker.produce_many("web", [b"a", b"b"], partition=99)
        with pytest.raises(UnknownPartitionError, match=r"no partition 99$"):
            topic.partition(99)
        with pytest.raises(UnknownPartitionError, match=r"0\.\.7: no partition -1$"):
            topic.partition(-1)
        with pytest.raises(TypeError, match="partition must be an int"):
            topic.partition("1")  # type: ignore[arg-type]
        # Nothing was written anywhere.
        assert [topic.partition(p).end_offset for p in range(8)] == [0] * 8
