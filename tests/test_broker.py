"""``logstore.Broker``, ``Topic`` and ``Consumer`` (API.md "Partitions and topics").

Layout and metadata of a broker root, topic names (FORMAT.md section 14),
routing by Kafka's partitioner, batching in ``produce_many``, consumer groups
(start positions, commits, rebalancing, retention), a SIGKILL during use, a
handle limit below the number of segments, the maintenance thread and
``poll`` waiting for data.
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore import Message

from .conftest import DATA, REPO, FakeClock, child_env, run_python

CONFIG = logstore.LogConfig(fsync="never")
METADATA = "logstore-topics.json"
OFFSETS_DIR = "__consumer_offsets-0"
VECTORS = json.loads((DATA / "murmur2.json").read_text())["vectors"]


def open_broker(
    root: Path, clock: FakeClock, config: logstore.LogConfig = CONFIG, **options: object
) -> logstore.Broker:
    options.setdefault("maintenance_interval_ms", None)
    return logstore.Broker.open(root, config, clock=clock, **options)  # type: ignore[arg-type]


def drain(consumer: logstore.Consumer, max_records: int = 500) -> list[logstore.ConsumedRecord]:
    """Poll until a poll returns nothing."""
    out: list[logstore.ConsumedRecord] = []
    for _ in range(100_000):
        got = consumer.poll(max_records=max_records)
        if not got:
            return out
        out += got
    raise AssertionError("poll never ran dry")


def triples(records: list[logstore.ConsumedRecord]) -> list[tuple[int, int, bytes | None]]:
    """``(partition, offset, value)`` of consumed records, sorted."""
    return sorted((c.partition, c.record.offset, c.record.value) for c in records)


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


def read_lines_until(proc: subprocess.Popen[bytes], wanted: str, timeout: float) -> list[str]:
    """Lines the child printed up to and including ``wanted``; fails after ``timeout`` s.

    Reads the raw pipe (no Python buffering that ``select`` cannot see).
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            lines = buf.decode().split("\n")
            if wanted in lines[:-1]:
                return lines[: lines.index(wanted) + 1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child did not print {wanted!r}; got {buf!r}")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"child exited before {wanted!r}; got {buf!r}")
            buf += chunk


# ---------------------------------------------------------------- 1. layout and metadata


def test_layout_metadata_and_reopen(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        t = broker.create_topic("t", 3, {"segment_bytes": 4096})
        broker.create_topic("u", 2, logstore.LogConfig(fsync="never", segment_messages=7))
        broker.create_topic("v")
        assert (t.name, t.partitions) == ("t", 3)
        dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
        assert dirs == [OFFSETS_DIR, "t-0", "t-1", "t-2", "u-0", "u-1", "v-0"]
        assert broker.topics() == ["t", "u", "v"]
        assert broker.topics(include_internal=True) == ["__consumer_offsets", "t", "u", "v"]
        meta = json.loads((root / METADATA).read_text())["topics"]
        assert meta["t"] == {"partitions": 3, "config": {"segment_bytes": 4096}}
        assert meta["u"] == {"partitions": 2, "config": {"segment_messages": 7}}
        assert meta["v"] == {"partitions": 1, "config": {}}
        assert meta["__consumer_offsets"]["partitions"] == 1
        assert broker.produce("t", b"x", partition=2) == (2, 0)

    with open_broker(root, clock) as broker:
        assert broker.topics() == ["t", "u", "v"]
        assert broker.topics(include_internal=True) == ["__consumer_offsets", "t", "u", "v"]
        t, u, v = broker.topic("t"), broker.topic("u"), broker.topic("v")
        assert (t.partitions, u.partitions, v.partitions) == (3, 2, 1)
        assert [t.partition(p).config.segment_bytes for p in range(3)] == [4096] * 3
        assert [u.partition(p).config.segment_messages for p in range(2)] == [7, 7]
        assert u.partition(0).config.segment_bytes == CONFIG.segment_bytes
        assert v.partition(0).config == CONFIG
        assert [r.value for r in t.partition(2).scan()] == [b"x"]


def test_topic_errors(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        with pytest.raises(logstore.TopicExistsError):
            broker.create_topic("t", 2)
        with pytest.raises(logstore.TopicExistsError):
            broker.create_topic("t", 5)
        with pytest.raises(logstore.TopicExistsError):
            broker.create_topic("__consumer_offsets")
        assert broker.topic("t").partitions == 2
        with pytest.raises(logstore.UnknownTopicError):
            broker.topic("missing")
        with pytest.raises(logstore.UnknownTopicError):
            broker.produce("missing", b"x")
        with pytest.raises(logstore.UnknownTopicError):
            broker.produce_many("missing", [b"x"])
        with pytest.raises(logstore.UnknownTopicError):
            broker.consumer("g", ["missing"])
        with pytest.raises(logstore.UnknownTopicError):
            broker.delete_topic("missing")
        assert not (tmp_path / "root" / "missing-0").exists()


def test_delete_topic_removes_files_metadata_and_offsets(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        broker.create_topic("t", 3, {"segment_messages": 2})
        broker.create_topic("keep", 1)
        for i in range(12):
            broker.produce("t", b"v%d" % i, partition=i % 3)
        broker.produce("keep", b"k")
        with broker.consumer("g", ["t", "keep"]) as c:
            assert len(drain(c)) == 13
            c.commit()
        assert broker.committed_offsets() == {
            ("g", "keep", 0): 1,
            ("g", "t", 0): 4,
            ("g", "t", 1): 4,
            ("g", "t", 2): 4,
        }
        broker.delete_topic("t")
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [OFFSETS_DIR, "keep-0"]
        assert "t" not in json.loads((root / METADATA).read_text())["topics"]
        assert broker.topics() == ["keep"]
        assert broker.committed_offsets() == {("g", "keep", 0): 1}
        with pytest.raises(logstore.UnknownTopicError):
            broker.topic("t")
        with pytest.raises(logstore.UnknownTopicError):
            broker.produce("t", b"x")

    with open_broker(root, clock) as broker:  # the deletion and the forgotten offsets last
        assert broker.topics() == ["keep"]
        assert broker.committed_offsets() == {("g", "keep", 0): 1}
        fresh = broker.create_topic("t", 2)
        assert fresh.partition(0).config == CONFIG  # the old override is gone
        assert [fresh.partition(p).end_offset for p in range(2)] == [0, 0]
        assert broker.produce("t", b"new", partition=1) == (1, 0)
        with broker.consumer("g", "t") as c:
            assert c.committed("t", 0) is None
            assert c.committed("t", 1) is None
            assert triples(drain(c)) == [(1, 0, b"new")]


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


CHILD_DELETE_CRASH = """
import os, signal, sys
import logstore
broker = logstore.Broker.open(sys.argv[1], logstore.LogConfig(fsync="never"), maintenance_interval_ms=None)
broker.create_topic("t", 2, {"segment_messages": 3})
broker.create_topic("keep")
for i in range(10):
    broker.produce("t", b"v%d" % i, partition=i % 2)
c = broker.consumer("g", "t")
c.poll()
c.commit()
real_rename = os.rename
def rename(src, dst, *args, **kwargs):  # the process dies as the first directory is renamed
    if str(dst).endswith("-delete"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst, *args, **kwargs)
os.rename = rename
broker.delete_topic("t")
"""


def test_delete_topic_interrupted_by_a_crash_stays_deleted(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A crash inside ``delete_topic`` (the metadata already marks the topic as being
    deleted) is finished by the next open: the topic, its files and offsets are gone."""
    root = tmp_path / "root"
    done = run_python(CHILD_DELETE_CRASH, str(root), timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert json.loads((root / METADATA).read_text())["topics"]["t"]["deleting"] is True
    with open_broker(root, clock) as broker:
        assert broker.topics() == ["keep"]
        assert broker.committed_offsets() == {}
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [OFFSETS_DIR, "keep-0"]


def test_failed_create_topic_leaves_no_partition_open(tmp_path: Path, clock: FakeClock) -> None:
    """A partition directory held by someone else makes ``create_topic`` fail; once it
    is free, the topic can be created (nothing of the failed attempt stays locked)."""
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        holder = logstore.Log.open(root / "t-1", CONFIG)
        try:
            with pytest.raises(logstore.LogLockedError):
                broker.create_topic("t", 2)
        finally:
            holder.close()
        assert broker.topics() == []
        topic = broker.create_topic("t", 2)
        assert topic.partitions == 2
        assert broker.produce("t", b"v", partition=0) == (0, 0)
    with open_broker(root, clock) as broker:
        assert broker.topics() == ["t"]


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


# ---------------------------------------------------------------- 6. consumer groups


def test_group_consumes_once_commits_and_resumes_after_reopen(
    tmp_path: Path, clock: FakeClock
) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        topic = broker.create_topic("t", 3)
        produced = broker.produce_many(
            "t", [Message(b"v%d" % i, key=b"k%d" % i) for i in range(40)]
        )
        expected = sorted((p, o, b"v%d" % i) for i, (p, o) in enumerate(produced))
        ends = [topic.partition(p).end_offset for p in range(3)]
        assert sum(ends) == 40
        with broker.consumer("g", "t", start="earliest") as c:
            assert [c.committed("t", p) for p in range(3)] == [None] * 3
            got = drain(c, max_records=7)
            assert triples(got) == expected  # everything, each once
            assert len(got) == 40
            c.commit()
            assert [c.committed("t", p) for p in range(3)] == ends

    with open_broker(root, clock) as broker:
        with broker.consumer("g", "t") as c:
            assert [c.committed("t", p) for p in range(3)] == ends
            assert c.poll() == []
            new = broker.produce_many("t", [Message(b"n%d" % i, key=b"k%d" % i) for i in range(5)])
            assert triples(drain(c)) == sorted((p, o, b"n%d" % i) for i, (p, o) in enumerate(new))
        with broker.consumer("other", "t", start="earliest") as other:
            assert len(drain(other)) == 45
        with broker.consumer("late", "t", start="latest") as late:
            assert late.poll() == []


def test_uncommitted_records_are_delivered_again(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        for i in range(20):
            broker.produce("t", b"v%d" % i, partition=i % 2)
        with broker.consumer("g", "t") as c:
            first = c.poll(max_records=6)
            assert len(first) == 6
            c.commit()
            committed = [c.committed("t", p) for p in range(2)]
            assert sum(committed) == 6
            second = c.poll(max_records=5)
            assert len(second) == 5
        with broker.consumer("g", "t") as again:  # no commit after ``second``
            rest = drain(again)
            assert len(rest) == 14
            assert set(triples(second)) <= set(triples(rest))
            assert not set(triples(first)) & set(triples(rest))
            assert [again.committed("t", p) for p in range(2)] == committed


def test_commit_of_chosen_offsets(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        broker.create_topic("u", 1)
        for i in range(10):
            broker.produce("t", b"v%d" % i, partition=i % 2)
        with broker.consumer("g", "t") as c:
            assert len(drain(c)) == 10
            c.commit({("t", 1): 3})  # only that partition, and not its position (5)
            assert [c.committed("t", p) for p in range(2)] == [None, 3]
            with pytest.raises(logstore.PartitionNotAssignedError, match="u-0 is not assigned"):
                c.commit({("t", 0): 1, ("u", 0): 1})
            with pytest.raises(TypeError, match="offset must be an int >= 0"):
                c.commit({("t", 0): -1})
            assert [c.committed("t", p) for p in range(2)] == [None, 3]  # nothing of either
        with broker.consumer("g", "t") as again:
            assert [again.position("t", p) for p in range(2)] == [0, 3]


# ---------------------------------------------------------------- 7. SIGKILL


CHILD_SIGKILL = """
import json, sys, time
import logstore
root = sys.argv[1]
broker = logstore.Broker.open(root, logstore.LogConfig(fsync="never"), maintenance_interval_ms=None)
broker.create_topic("t", 3)
for i in range(60):
    broker.produce("t", b"v%d" % i, key=b"k%d" % i)
c = broker.consumer("g", "t")
got = 0
while got < 25:
    got += len(c.poll(max_records=4))
c.commit()
positions = {str(p): c.committed("t", p) for p in range(3)}
print(json.dumps({"positions": positions, "got": got}))
print("committed", flush=True)
deadline = time.monotonic() + 60
i = 0
while time.monotonic() < deadline:
    broker.produce("t", b"more%d" % i, key=b"m%d" % i)
    c.poll(max_records=3)
    i += 1
"""


def test_committed_offsets_survive_sigkill(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD_SIGKILL), str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=REPO,
    )
    try:
        lines = read_lines_until(proc, "committed", timeout=30)
        report = json.loads(lines[-2])
        threading.Event().wait(0.2)  # let it produce and poll past the commit
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, stderr
    positions = {int(p): o for p, o in report["positions"].items()}
    assert sum(positions.values()) == report["got"]

    with open_broker(root, clock) as broker:
        assert broker.committed_offsets() == {("g", "t", p): o for p, o in positions.items()}
        topic = broker.topic("t")
        assert sum(topic.partition(p).end_offset for p in range(3)) >= 60
        with broker.consumer("g", "t") as c:
            assert [c.committed("t", p) for p in range(3)] == [positions[p] for p in range(3)]
            assert [c.position("t", p) for p in range(3)] == [positions[p] for p in range(3)]
            first = [r for r in drain(c) if r.record.value.startswith(b"v")]  # type: ignore[union-attr]
            assert len(first) == 60 - report["got"]
            assert all(r.record.offset >= positions[r.partition] for r in first)


# ---------------------------------------------------------------- 8. start positions and seek


def test_start_latest(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        for i in range(5):
            broker.produce("t", b"old%d" % i, partition=i % 2)
        with broker.consumer("g", "t", start="latest") as c:
            assert [c.position("t", p) for p in range(2)] == [3, 2]
            assert c.poll() == []
            broker.produce("t", b"new0", partition=0)
            broker.produce("t", b"new1", partition=1)
            broker.produce("t", b"new2", partition=1)
            assert triples(drain(c)) == [(0, 3, b"new0"), (1, 2, b"new1"), (1, 3, b"new2")]


def test_start_timestamp(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 3)
        stamps = {0: [1000, 2000, 3000, 4000], 1: [1500, 2500, 3500], 2: [100, 200]}
        for p, ts_list in stamps.items():
            for ts in ts_list:
                broker.produce("t", b"%d" % ts, partition=p, timestamp=ts)
        with broker.consumer("g", "t", start=2500) as c:
            assert [c.position("t", p) for p in range(3)] == [2, 1, 2]
            got = drain(c)
            assert sorted((r.partition, r.record.timestamp) for r in got) == [
                (0, 3000),
                (0, 4000),
                (1, 2500),
                (1, 3500),
            ]


def test_start_timedelta_uses_the_clock(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 1)
        t0 = clock.now_ms
        for i in range(20):
            broker.produce("t", b"r%d" % i)  # timestamp = clock time
            clock.advance(1000)
        assert [r.timestamp for r in broker.topic("t").partition(0).scan()] == [
            t0 + 1000 * i for i in range(20)
        ]
        # now = t0 + 20 s; 10 s ago = t0 + 10 s = record 10
        with broker.consumer("g", "t", start=datetime.timedelta(seconds=10)) as c:
            assert c.position("t", 0) == 10
            assert [r.record.value for r in drain(c)] == [b"r%d" % i for i in range(10, 20)]
        with broker.consumer("h", "t", start=datetime.timedelta(seconds=9.5)) as c:
            assert c.position("t", 0) == 11
        with broker.consumer("i", "t", start=datetime.timedelta(0)) as c:
            assert c.position("t", 0) == 20
            assert c.poll() == []


def test_seek(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("t", 2)
        for i in range(10):
            broker.produce("t", b"v%d" % i, partition=0)
        with broker.consumer("g", "t") as a:
            a.seek("t", 0, 7)
            assert a.position("t", 0) == 7
            assert triples(drain(a)) == [(0, 7, b"v7"), (0, 8, b"v8"), (0, 9, b"v9")]
            a.seek("t", 0, 2)
            assert [r.record.offset for r in a.poll(max_records=2)] == [2, 3]
            a.seek("t", 0, 10)  # the end is a valid position
            assert a.poll() == []
            with pytest.raises(logstore.OffsetOutOfRange):
                a.seek("t", 0, 11)
            with pytest.raises(logstore.OffsetOutOfRange):
                a.seek("t", 0, -1)
            topic.partition(0).delete_before(4)
            with pytest.raises(logstore.OffsetOutOfRange):
                a.seek("t", 0, 3)
            a.seek("t", 0, 4)
            assert a.position("t", 0) == 4
            with pytest.raises(ValueError):
                a.seek("t", 2, 0)  # no such partition
            with pytest.raises(ValueError):
                a.seek("other", 0, 0)
            with broker.consumer("g", "t") as b:
                assert (a.assignment, b.assignment) == ([("t", 0)], [("t", 1)])
                with pytest.raises(ValueError):
                    a.seek("t", 1, 0)  # assigned to the other member
                with pytest.raises(ValueError):
                    b.seek("t", 0, 5)
                assert a.position("t", 0) == 4


# ---------------------------------------------------------------- 9. rebalance


def test_rebalance_range_assignment_and_handover(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 4)

        def fill(start: int, count: int) -> None:
            for p in range(4):
                for i in range(start, start + count):
                    broker.produce("t", b"p%d-%d" % (p, i), partition=p)

        fill(0, 10)
        a = broker.consumer("g", "t")
        assert a.assignment == [("t", 0), ("t", 1), ("t", 2), ("t", 3)]
        assert len(drain(a)) == 40
        a.commit()
        b = broker.consumer("g", "t")
        assert a.assignment == [("t", 0), ("t", 1)]
        assert b.assignment == [("t", 2), ("t", 3)]
        assert [b.position("t", p) for p in (2, 3)] == [10, 10]
        with broker.consumer("g", "t") as c:
            assert (a.assignment, b.assignment, c.assignment) == (
                [("t", 0), ("t", 1)],
                [("t", 2)],
                [("t", 3)],
            )
        assert b.assignment == [("t", 2), ("t", 3)]

        fill(10, 5)
        assert triples(drain(a)) == sorted(
            (p, i, b"p%d-%d" % (p, i)) for p in (0, 1) for i in range(10, 15)
        )
        assert triples(drain(b)) == sorted(
            (p, i, b"p%d-%d" % (p, i)) for p in (2, 3) for i in range(10, 15)
        )
        a.commit()
        b.commit()
        fill(15, 3)
        assert len(a.poll(max_records=2)) == 2  # read, never committed
        a.close()
        assert b.assignment == [("t", 0), ("t", 1), ("t", 2), ("t", 3)]
        assert [b.position("t", p) for p in range(4)] == [15, 15, 15, 15]
        assert triples(drain(b)) == sorted(
            (p, i, b"p%d-%d" % (p, i)) for p in range(4) for i in range(15, 18)
        )
        b.close()


# ---------------------------------------------------------------- 10. committed offset deleted


@pytest.mark.parametrize("how", ["delete_before", "retention"])
def test_committed_offset_deleted_by_retention(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    config = {"segment_messages": 10}
    if how == "retention":
        config["retention_messages"] = 20
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("r", 1, config)
        log = topic.partition(0)
        for i in range(5):
            broker.produce("r", b"v%d" % i)
        with broker.consumer("g", "r") as c:
            assert len(drain(c)) == 5
            c.commit()
            assert c.committed("r", 0) == 5
        for i in range(5, 50):
            broker.produce("r", b"v%d" % i)
        if how == "delete_before":
            log.delete_before(30)
        else:
            log.apply_retention()
        assert log.start_offset == 30
        assert [s.base_offset for s in log.segments] == [30, 40]
        caplog.clear()
        caplog.set_level(logging.WARNING, logger="logstore")
        with broker.consumer("g", "r") as c:
            assert c.position("r", 0) == 30
            assert [r.record.offset for r in drain(c)] == list(range(30, 50))
        warnings = [
            r
            for r in caplog.records
            if r.name == "logstore.consumer" and r.levelno == logging.WARNING
        ]
        assert len(warnings) == 1
        assert "r-0" in warnings[0].getMessage() and "30" in warnings[0].getMessage()


def test_position_deleted_under_a_running_consumer(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("r", 1, {"segment_messages": 10})
        for i in range(50):
            broker.produce("r", b"v%d" % i)
        with broker.consumer("g", "r") as c:
            assert [r.record.offset for r in c.poll(max_records=5)] == [0, 1, 2, 3, 4]
            caplog.set_level(logging.WARNING, logger="logstore")
            topic.partition(0).delete_before(30)
            assert [r.record.offset for r in drain(c)] == list(range(30, 50))
        assert any(
            r.name == "logstore.consumer" and r.levelno == logging.WARNING for r in caplog.records
        )


# ---------------------------------------------------------------- 11. max_open_files


CHILD_FD_LIMIT = """
import json, os, resource, sys
import logstore
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
root = sys.argv[1]
def fds():
    return len(os.listdir("/proc/self/fd"))
peak = fds()
out = {}
with logstore.Broker.open(
    root, logstore.LogConfig(fsync="never"), max_open_files=16, maintenance_interval_ms=None
) as broker:
    topic = broker.topic("m")
    peak = max(peak, fds())
    scanned = {}
    for p in range(2):
        rows = []
        for r in topic.partition(p).scan():
            rows.append([r.offset, r.value.decode()])
            if r.offset % 50 == 0:
                peak = max(peak, fds())
        scanned[p] = rows
    jumps = []
    for i in range(300):  # alternate partitions and far-apart segments
        p = i % 2
        offset = (i * 379) % 1000
        [r] = topic.partition(p).read(offset, max_records=1)
        jumps.append([p, r.offset, r.value.decode()])
        peak = max(peak, fds())
    produced = broker.produce_many("m", [b"new-%d" % i for i in range(100)])
    peak = max(peak, fds())
    readback = []
    for p, o in produced:
        [r] = topic.partition(p).read(o, max_records=1)
        readback.append(r.value.decode())
    peak = max(peak, fds())
    segments = [len(topic.partition(p).segments) for p in range(2)]
print(json.dumps({"scanned": scanned, "jumps": jumps, "produced": produced,
                  "readback": readback, "peak": peak, "segments": segments, "after": fds()}))
"""


def test_more_segments_than_max_open_files(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        topic = broker.create_topic("m", 2, {"segment_messages": 5})
        result = broker.produce_many("m", [b"v%d" % i for i in range(2000)])
        expected = {p: [[o, f"v{i}"] for i, (q, o) in enumerate(result) if q == p] for p in (0, 1)}
        assert [len(expected[p]) for p in (0, 1)] == [1000, 1000]
        assert [len(topic.partition(p).segments) for p in (0, 1)] == [200, 200]

    with open_broker(root, clock, max_open_files=16) as broker:
        topic = broker.topic("m")
        for p in (0, 1):
            assert [[r.offset, r.value.decode()] for r in topic.partition(p).scan()] == expected[p]

    done = run_python(CHILD_FD_LIMIT, str(root))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["scanned"] == {str(p): expected[p] for p in (0, 1)}
    assert report["jumps"] == [
        [i % 2, (i * 379) % 1000, expected[i % 2][(i * 379) % 1000][1]] for i in range(300)
    ]
    assert report["readback"] == [f"new-{i}" for i in range(100)]
    assert sorted(o for p, o in report["produced"] if p == 0) == list(range(1000, 1050))
    assert report["segments"] == [210, 210]
    assert report["peak"] < 64
    assert report["after"] < 64

    with open_broker(root, clock) as broker:
        topic = broker.topic("m")
        assert [topic.partition(p).end_offset for p in (0, 1)] == [1050, 1050]
        news = [r.value for p in (0, 1) for r in topic.partition(p).scan(1000)]
        assert sorted(news) == sorted(b"new-%d" % i for i in range(100))  # type: ignore[type-var]


def _open_log_files(root: Path) -> list[str]:
    """The ``.log`` files under ``root`` this process holds open now."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)) and target.endswith(".log"):
            out.append(target)
    return out


@pytest.mark.parametrize("fsync", ["never", "always"])
def test_max_open_files_bounds_every_segment_handle_active_ones_too(
    tmp_path: Path, clock: FakeClock, fsync: str
) -> None:
    # Fewer handles than partitions: writing to all 8 must close and reopen
    # active segments as well, and every record must still land and read back.
    root = tmp_path / "root"
    config = logstore.LogConfig(fsync=fsync, segment_messages=20)  # type: ignore[arg-type]
    peak = 0
    with open_broker(root, clock, config, max_open_files=4) as broker:
        broker.create_topic("t", 8)
        produced = []
        for i in range(30):
            produced += broker.produce_many("t", [b"v%d-%d" % (i, j) for j in range(40)])
            peak = max(peak, len(_open_log_files(root)))
        with broker.consumer("g", ["t"]) as consumer:
            got = {(r.partition, r.record.offset): r.record.value for r in drain(consumer, 100)}
            peak = max(peak, len(_open_log_files(root)))
        segments = sum(len(broker.topic("t").partition(p).segments) for p in range(8))
    assert segments > 8 * 6  # many sealed and 8 active segments behind 4 handles
    assert peak <= 4
    assert got == {(p, o): b"v%d-%d" % divmod(n, 40) for n, (p, o) in enumerate(produced)}


# ---------------------------------------------------------------- 12. maintenance


def _fill_for_retention(root: Path, clock: FakeClock) -> None:
    """100 records in segments of 5, written while no retention limit applies."""
    with open_broker(root, clock) as broker:
        broker.create_topic("m", 1, {"segment_messages": 5})
        broker.produce_many("m", [b"v%d" % i for i in range(100)])
        assert len(broker.topic("m").partition(0).segments) == 20
    # Control: opening with a retention limit but no maintenance deletes nothing.
    with open_broker(root, clock, logstore.LogConfig(fsync="never", retention_messages=10)) as b:
        assert b.topic("m").partition(0).start_offset == 0


def test_maintenance_thread_applies_retention_and_stops_on_close(
    tmp_path: Path, clock: FakeClock
) -> None:
    root = tmp_path / "root"
    _fill_for_retention(root, clock)
    threads_before = set(threading.enumerate())
    broker = open_broker(
        root,
        clock,
        logstore.LogConfig(fsync="never", retention_messages=10),
        maintenance_interval_ms=50,
    )
    try:
        started = set(threading.enumerate()) - threads_before
        assert len(started) == 1
        [maintenance] = started
        assert maintenance.is_alive()
        log = broker.topic("m").partition(0)
        waiter = threading.Event()
        deadline = time.monotonic() + 5
        while log.start_offset == 0 and time.monotonic() < deadline:
            waiter.wait(0.02)
        assert log.start_offset == 90
        assert [r.offset for r in log.scan()] == list(range(90, 100))
    finally:
        broker.close()
    assert not maintenance.is_alive()
    assert set(threading.enumerate()) - threads_before == set()


def test_run_maintenance_synchronously(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    _fill_for_retention(root, clock)
    config = logstore.LogConfig(fsync="never", retention_messages=10)
    with open_broker(root, clock, config) as broker:
        log = broker.topic("m").partition(0)
        assert log.start_offset == 0
        broker.run_maintenance()
        assert log.start_offset == 90
        assert [s.base_offset for s in log.segments] == [90, 95]
    with open_broker(root, clock) as broker:
        assert broker.topic("m").partition(0).start_offset == 90


# ---------------------------------------------------------------- 13. poll timeout


def test_poll_wakes_up_when_data_arrives(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        with broker.consumer("g", "t") as c:
            polling = threading.Event()
            result: list[object] = []

            def poll() -> None:
                polling.set()
                t0 = time.monotonic()
                got = c.poll(timeout_ms=2000)
                result.append((got, time.monotonic() - t0))

            thread = threading.Thread(target=poll)
            thread.start()
            assert polling.wait(5)
            threading.Event().wait(0.2)  # the poll is now waiting
            broker.produce("t", b"hello", partition=1)
            thread.join(5)
            assert not thread.is_alive()
            [(got, elapsed)] = result
            assert triples(got) == [(1, 0, b"hello")]  # type: ignore[arg-type]
            assert 0.15 <= elapsed < 1.0  # type: ignore[operator]


def test_poll_times_out_empty(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        with broker.consumer("g", "t") as c:
            t0 = time.monotonic()
            assert c.poll(timeout_ms=200) == []
            elapsed = time.monotonic() - t0
            assert 0.2 <= elapsed < 1.5
            t0 = time.monotonic()
            assert c.poll() == []
            assert time.monotonic() - t0 < 0.15


def test_offsets_of_a_topic_the_metadata_lost_are_forgotten_at_open(tmp_path: Path) -> None:
    """A crash after an interrupted delete was finished in the metadata but before its
    offsets were tombstoned: the next open forgets them, so a new topic of the same
    name starts with no committed offsets."""
    import json
    import shutil

    root = tmp_path / "root"
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 1)
        broker.produce_many("t", [b"a", b"b", b"c"])
        with broker.consumer("g", ["t"], start="earliest") as consumer:
            assert len(consumer.poll(max_records=10, timeout_ms=0)) == 3
            consumer.commit()
    meta_path = root / "logstore-topics.json"
    meta = json.loads(meta_path.read_text())
    del meta["topics"]["t"]
    meta_path.write_text(json.dumps(meta))
    shutil.rmtree(root / "t-0")
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 1)
        broker.produce("t", b"new")
        with broker.consumer("g", ["t"], start="earliest") as consumer:
            assert [i.record.value for i in consumer.poll(max_records=10, timeout_ms=0)] == [b"new"]


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
