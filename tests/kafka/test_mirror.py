"""``logstore mirror`` against the real Kafka broker: killed twice, it still delivers once.

The cluster's records are read back with a real Kafka consumer (confluent-kafka,
librdkafka), partition by partition to the end, and compared with the source.
"""

from __future__ import annotations

import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import logstore

from ..conftest import REPO, child_env
from . import harness

ck = pytest.importorskip("confluent_kafka")
admin_module = pytest.importorskip("confluent_kafka.admin")

HOSTS = [f"host-{i:03d}.dc{i % 3}.example.com".encode() for i in range(300)]
BASE_TS = 1_700_000_000_000
COMMITTED = re.compile(r"committed logstore-mirror: (.*)$")
#: A restart's line for a partition the cluster took records of after the commit.
HELD = re.compile(r"(\S+): the cluster holds (\d+) record\(s\) past the commit at offset")


def make_source(root: Path, topic: str, partitions: int, records: int, *, seed: int = 7) -> None:
    """``records`` records keyed by hostname (routed by logstore's murmur2), some with headers."""
    rng = random.Random(seed)
    with logstore.Broker.open(root, logstore.LogConfig(fsync="never")) as broker:
        broker.create_topic(topic, partitions)
        append(broker, topic, 0, records, rng)


def append(broker: logstore.Broker, topic: str, first: int, count: int, rng: random.Random) -> None:
    for start in range(first, first + count, 1000):
        messages = []
        for i in range(start, min(start + 1000, first + count)):
            headers: tuple[tuple[str, bytes | None], ...] = ()
            if i % 10 == 0:
                headers = (("seq", b"%d" % i), ("empty", None), ("seq", b"again"))
            value = None if i % 997 == 0 else b"%07d|" % i + rng.randbytes(40).hex().encode()
            messages.append(
                logstore.Message(
                    value, key=rng.choice(HOSTS), headers=headers, timestamp=BASE_TS + i
                )
            )
        broker.produce_many(topic, messages)


def source_records(root: Path, topic: str) -> dict[int, list[tuple]]:
    """Per partition: (key, value, headers, timestamp), as the cluster must hold them."""
    out: dict[int, list[tuple]] = {}
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        t = broker.topic(topic)
        for p in range(t.partitions):
            out[p] = [(r.key, r.value, list(r.headers), r.timestamp) for r in t.partition(p).scan()]
    return out


def cluster_records(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple]]:
    """Every record of ``topic`` on the cluster, read by a real consumer to each partition's end."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "logstore-test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    out: dict[int, list[tuple]] = {p: [] for p in range(partitions)}
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=30)
            assert low == 0
            ends[p] = high
        consumer.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions) if ends[p]])
        remaining = {p for p in range(partitions) if ends[p]}
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                assert message.error().code() == ck.KafkaError._PARTITION_EOF, message.error()
                continue
            p = message.partition()
            assert message.offset() == len(out[p])  # dense: nothing skipped, nothing twice
            kind, ts = message.timestamp()
            assert kind == ck.TIMESTAMP_CREATE_TIME
            out[p].append((message.key(), message.value(), message.headers() or [], ts))
            if message.offset() + 1 == ends[p]:
                remaining.discard(p)
        assert not remaining, f"partitions {remaining} not read to their end"
    finally:
        consumer.close()
    return out


class Mirror:
    """``logstore --debug mirror ...`` in a child; its stderr lines read on a thread."""

    def __init__(self, *args: str) -> None:
        argv = [sys.executable, "-m", "logstore", "--debug", "mirror", *args]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=child_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_committed(self, at_least: int, *, timeout: float = 120) -> int:
        """Block until a commit line's positions add up to ``at_least``; return that sum."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no commit of {at_least} in {timeout} s") from None
            if line is None:
                raise AssertionError("the mirror ended first:\n" + "".join(self.stderr[-20:]))
            found = COMMITTED.search(line)
            if found:
                # "<topic>-<p>=<source offset>/kafka-offset=<cluster offset>" per partition
                total = sum(int(re.search(r"=(\d+)/", item)[1]) for item in found.group(1).split())
                if total >= at_least:
                    return total

    def held(self) -> dict[str, int]:
        """Partition -> records the cluster took after the commit, as this run found at its start."""
        return {m[1]: int(m[2]) for m in map(HELD.search, self.stderr) if m}

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, _ = self.process.communicate(timeout=timeout)
        self._reader.join(timeout)
        return self.process.returncode, out, "".join(self.stderr)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)
        self._reader.join(30)


@pytest.fixture
def bootstrap(kafka_broker: harness.KafkaBroker) -> str:
    return kafka_broker.bootstrap


def test_killed_twice_and_restarted_every_record_once_in_order(
    tmp_path: Path, bootstrap: str
) -> None:
    root = tmp_path / "root"
    make_source(root, "hosts", 8, 100_000)
    # Killed when the cluster holds about that many records, at no particular point
    # between two commits (every 200 ms): the records acknowledged since the last
    # commit, and those in flight, are on the cluster but not committed.
    args = (str(root), "-b", bootstrap, "--commit-interval", "200")
    held = []
    for kill_at in (20_000, 55_000):
        child = Mirror(*args)
        wait_for_records(bootstrap, "hosts", 8, kill_at, pause=0.005)
        child.kill()
        assert child.process.returncode == -signal.SIGKILL, "finished before the kill"
        held.append(child.held())
    child = Mirror(*args)
    code, out, err = child.finish()
    held.append(child.held())
    assert code == 0, err
    first = out.splitlines()[0]
    assert re.fullmatch(r"mirrored [\d,]+ record\(s\), .* caught up, lag 0", first), out
    print(f"records the cluster held past the commit, per restart: {held[1:]}")
    assert held[0] == {}  # the first run found nothing
    # A restart found records on the cluster past its commit (sent after the last
    # commit before the kill) and did not send them again: the case the resume is for.
    assert any(sum(h.values()) > 0 for h in held[1:]), held
    assert "Traceback" not in err

    expected = source_records(root, "hosts")
    assert sum(map(len, expected.values())) == 100_000
    got = cluster_records(bootstrap, "hosts", 8)
    for p in range(8):
        assert len(got[p]) == len(expected[p]), p
        # every record once, in order, all of it equal: the headers exactly the source's
        assert got[p] == expected[p], p


def test_each_hostname_is_where_kafkas_producer_puts_it(tmp_path: Path, bootstrap: str) -> None:
    """librdkafka's murmur2_random is the Java client's default partitioner for non-null keys."""
    root = tmp_path / "root"
    with logstore.Broker.open(root) as broker:
        topic = broker.create_topic("where", 8)
        broker.produce_many("where", [logstore.Message(b"x", key=h) for h in HOSTS])
        ours = {h: topic.partition_for(h) for h in HOSTS}
    code = subprocess.run(
        [sys.executable, "-m", "logstore", "mirror", str(root), "-b", bootstrap],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(),
        timeout=120,
    )
    assert code.returncode == 0, code.stderr
    mirrored = cluster_records(bootstrap, "where", 8)
    assert {r[0]: p for p, rs in mirrored.items() for r in rs} == ours

    # Kafka's own producer, its partitioner choosing, into a topic of 8 partitions.
    admin = admin_module.AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([admin_module.NewTopic("where-kafka", 8, 1)])["where-kafka"].result(30)
    theirs: dict[bytes, int] = {}
    producer = ck.Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for host in HOSTS:
        producer.produce(
            "where-kafka",
            b"x",
            key=host,
            on_delivery=lambda err, msg: theirs.__setitem__(msg.key(), msg.partition()),
        )
    assert producer.flush(30) == 0
    assert len(set(ours.values())) == 8
    assert theirs == ours


def test_follow_copies_new_records_until_sigterm(tmp_path: Path, bootstrap: str) -> None:
    root = tmp_path / "root"
    make_source(root, "live", 3, 500)
    child = Mirror(str(root), "-b", bootstrap, "--follow", "--poll-interval", "50")
    try:
        child.wait_committed(500)
        # The mirror leaves the root free between its passes: append when it is.
        deadline = time.monotonic() + 60
        while True:
            try:
                broker = logstore.Broker.open(root, maintenance_interval_ms=None)
                break
            except logstore.LogLockedError:
                assert time.monotonic() < deadline, "the root never came free"
                time.sleep(0.01)  # a lock held by another process: nothing to wait on
        with broker:
            append(broker, "live", 500, 300, random.Random(3))
        child.wait_committed(800)
        child.process.send_signal(signal.SIGTERM)
        code, out, err = child.finish()
    finally:
        if child.process.poll() is None:
            child.kill()
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r"mirrored 800 record\(s\), .* stopped, lag 0", lines[0]), out
    assert [line.split()[0] for line in lines[2:]] == ["live-0", "live-1", "live-2"]
    assert "Traceback" not in err
    got = cluster_records(bootstrap, "live", 3)
    assert got == source_records(root, "live")


def test_library_follow_of_an_open_broker(tmp_path: Path, bootstrap: str) -> None:
    stop = threading.Event()
    rng = random.Random(5)
    with logstore.Broker.open(tmp_path / "root", logstore.LogConfig(fsync="never")) as broker:
        broker.create_topic("embedded", 2)
        append(broker, "embedded", 0, 100, rng)
        result: list[logstore.mirror.MirrorSummary] = []
        thread = threading.Thread(
            target=lambda: result.append(
                logstore.mirror.mirror(
                    broker,
                    bootstrap,
                    follow=True,
                    stop=stop,
                    poll_interval_s=0.05,
                    # A queue of 20 records: the mirror must wait for room (BufferError).
                    properties={"queue.buffering.max.messages": "20"},
                )
            )
        )
        thread.start()
        try:
            wait_for_records(bootstrap, "embedded", 2, 100)
            append(broker, "embedded", 100, 50, rng)
            wait_for_records(bootstrap, "embedded", 2, 150)
        finally:
            stop.set()
            thread.join(60)
        assert not thread.is_alive()
        (summary,) = result
        assert (summary.records, summary.lag, summary.interrupted) == (150, 0, True)
        assert [(p.topic, p.partition) for p in summary.partitions] == [
            ("embedded", 0),
            ("embedded", 1),
        ]
        assert broker.committed_offsets() == {
            ("logstore-mirror", "embedded", p.partition): p.end_offset for p in summary.partitions
        }
    assert cluster_records(bootstrap, "embedded", 2) == source_records(
        tmp_path / "root", "embedded"
    )


def wait_for_records(
    bootstrap: str, topic: str, partitions: int, count: int, *, pause: float = 0.05
) -> None:
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "logstore-test-count"})
    try:
        deadline = time.monotonic() + 60
        while True:
            total = 0
            for p in range(partitions):
                try:
                    total += consumer.get_watermark_offsets(ck.TopicPartition(topic, p), 10)[1]
                except ck.KafkaException:
                    pass  # not created yet
            if total >= count:
                return
            assert time.monotonic() < deadline, f"{total} of {count} records on the cluster"
            time.sleep(pause)  # the cluster's offsets: no event to wait on
    finally:
        consumer.close()


def test_a_topic_with_another_partition_count_is_one_line(tmp_path: Path, bootstrap: str) -> None:
    admin = admin_module.AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([admin_module.NewTopic("narrow", 3, 1)])["narrow"].result(30)
    root = tmp_path / "root"
    make_source(root, "narrow", 2, 10)
    done = subprocess.run(
        [sys.executable, "-m", "logstore", "mirror", str(root), "-b", bootstrap],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(),
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "logstore: topic narrow has 3 partition(s) on the cluster and 2 in the source: "
        "each record must keep its partition number\n"
    )


def run_mirror(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logstore", "mirror", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(),
        timeout=120,
    )


def test_a_recreated_topic_is_refused_unless_starting_over(tmp_path: Path, bootstrap: str) -> None:
    root = tmp_path / "root"
    make_source(root, "again", 2, 40)
    expected = source_records(root, "again")
    done = run_mirror(str(root), "-b", bootstrap)
    assert done.returncode == 0, done.stderr
    admin = admin_module.AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics(["again"])["again"].result(30)
    deadline = time.monotonic() + 60
    while "again" in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "the topic was never deleted"
        time.sleep(0.1)  # the cluster's metadata: no event to wait on

    # The cluster partition (absent: end offset 0) holds less than the commit counts.
    done = run_mirror(str(root), "-b", bootstrap)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"logstore: again-0: the cluster partition ends at offset 0, before the "
        f"{len(expected[0])} the mirror committed: was the topic recreated or truncated? "
        "(--start-over copies the partition again from the source's start)\n"
    )
    assert "again" not in admin.list_topics(timeout=10).topics  # refused before changing it

    done = run_mirror(str(root), "-b", bootstrap, "--start-over")
    assert done.returncode == 0, done.stderr
    assert "again-0: the cluster partition ends at offset 0" in done.stderr  # the warning
    assert cluster_records(bootstrap, "again", 2) == expected
    done = run_mirror(str(root), "-b", bootstrap)  # and it resumes from there as usual
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("mirrored 0 record(s)")
    assert cluster_records(bootstrap, "again", 2) == expected


def test_an_offset_header_is_added_only_when_asked(tmp_path: Path, bootstrap: str) -> None:
    root = tmp_path / "root"
    make_source(root, "provenance", 2, 30)
    done = run_mirror(str(root), "-b", bootstrap, "--offset-header", "src.offset")
    assert done.returncode == 0, done.stderr
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        t = broker.topic("provenance")
        expected = {
            p: [
                (r.key, r.value, [*r.headers, ("src.offset", b"%d" % r.offset)], r.timestamp)
                for r in t.partition(p).scan()
            ]
            for p in range(2)
        }
    assert cluster_records(bootstrap, "provenance", 2) == expected
