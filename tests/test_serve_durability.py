"""``logstore serve`` across restarts: clean ones (SIGTERM) and SIGKILL.

- Restarted between produce and consume, every record comes back exactly
  (offsets, keys, values), the topics are there with their partitions, and a
  group resumes exactly at the offsets it committed.
- SIGKILLed while a librdkafka idempotent producer sends with ``acks=all``
  (topic fsync ``"always"``, the default, and ``"never"``), then started again
  on the same port: the producer reconnects and retries what it had in
  flight; every record is acknowledged, at the offset where it is stored, and
  stored once (the retries of batches appended before the kill are answered
  as duplicates from the state rebuilt from the log).
- The same idempotent batch sent again with raw frames after a clean restart
  and after a SIGKILL is answered with its original base offset and not
  appended; the next sequence continues; a gap is refused; producer ids are
  never handed out twice.
- The producer snapshot is a cache: damaged, or naming a batch the log no
  longer holds (the topic deleted and created again), it is not trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import logstore
from tests.helpers_serve import RawClient, ServeProcess, idempotent_batch, need

need("kio")
ck = need("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
HOSTS = [f"host-{i:02d}".encode() for i in range(17)]


def _create(address: str, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": address})
    topic = NewTopic(name, partitions, 1, config=config or {})
    for future in admin.create_topics([topic]).values():
        assert future.result(timeout=10) is None


def _producer(address: str, **extra: Any) -> Any:
    return ck.Producer(
        {
            "bootstrap.servers": address,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            **extra,
        }
    )


def _read_all(
    address: str, topic: str, partitions: int
) -> dict[int, list[tuple[int, bytes, bytes]]]:
    """Every record of every partition, from offset 0 to the end offset, as delivered."""
    consumer = ck.Consumer(
        {"bootstrap.servers": address, "group.id": "reader-unused", "enable.auto.commit": False}
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(ck.TopicPartition(topic, p), 10)[1]
            for p in range(partitions)
        }
        consumer.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions) if ends[p]])
        got: dict[int, list[tuple[int, bytes, bytes]]] = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + 60
        while any(not got[p] or got[p][-1][0] < ends[p] - 1 for p in ends if ends[p]):
            assert time.monotonic() < deadline, {p: len(v) for p, v in got.items()}
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got[msg.partition()].append((msg.offset(), msg.key(), msg.value()))
        return got
    finally:
        consumer.close()


def _sent_by_partition(
    reports: list[Any], partitions: int
) -> dict[int, list[tuple[int, bytes, bytes]]]:
    sent: dict[int, list[tuple[int, bytes, bytes]]] = {p: [] for p in range(partitions)}
    for msg in reports:
        sent[msg.partition()].append((msg.offset(), msg.key(), msg.value()))
    for records in sent.values():
        records.sort()
    return sent


# ---------------------------------------------------------------- clean restart


def test_a_restart_between_produce_and_consume_keeps_records_topics_and_groups(tmp_path) -> None:
    serve = ServeProcess(tmp_path).start()
    try:
        _create(serve.address, "events", 4)
        _create(serve.address, "single", 1)
        producer = _producer(serve.address)
        reports: list[Any] = []
        errors: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            (errors if err is not None else reports).append(err or msg)

        for i in range(4000):
            topic = "events" if i % 4 else "single"
            producer.produce(topic, key=HOSTS[i % len(HOSTS)], value=b"v%d" % i, on_delivery=report)
        assert producer.flush(30) == 0
        assert errors == []
        # A group reads part of "events" and commits where it stopped in each partition.
        consumer = ck.Consumer(
            {
                "bootstrap.servers": serve.address,
                "group.id": "g",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.assign([ck.TopicPartition("events", p, 0) for p in range(4)])
        seen = 0
        while seen < 1000:
            msg = consumer.poll(5)
            assert msg is not None and msg.error() is None
            seen += 1
        committed = [ck.TopicPartition("events", p, 100 + 37 * p) for p in range(4)]
        consumer.commit(offsets=committed, asynchronous=False)
        consumer.close()
    finally:
        serve.stop()

    serve.start()
    try:
        admin = AdminClient({"bootstrap.servers": serve.address})
        metadata = admin.list_topics(timeout=10)
        assert {
            n: len(t.partitions) for n, t in metadata.topics.items() if not n.startswith("__")
        } == {
            "events": 4,
            "single": 1,
        }
        events = [m for m in reports if m.topic() == "events"]
        single = [m for m in reports if m.topic() == "single"]
        assert _read_all(serve.address, "events", 4) == _sent_by_partition(events, 4)
        assert _read_all(serve.address, "single", 1) == _sent_by_partition(single, 1)
        # The group resumes exactly at its commits.
        consumer = ck.Consumer(
            {
                "bootstrap.servers": serve.address,
                "group.id": "g",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            tps = [ck.TopicPartition("events", p) for p in range(4)]
            assert [(tp.partition, tp.offset) for tp in consumer.committed(tps, timeout=10)] == [
                (p, 100 + 37 * p) for p in range(4)
            ]
            consumer.subscribe(["events"])
            first: dict[int, int] = {}
            deadline = time.monotonic() + 30
            while len(first) < 4:
                assert time.monotonic() < deadline, first
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                assert msg.error() is None
                first.setdefault(msg.partition(), msg.offset())
            assert first == {p: 100 + 37 * p for p in range(4)}
        finally:
            consumer.close()
    finally:
        serve.stop()


# ---------------------------------------------------------------- SIGKILL during produce


def _kill_during_produce(tmp_path, config: dict[str, str]) -> None:
    """Kill the server while a producer sends; start it again on the same port; check."""
    total, partitions = 30_000, 3
    serve = ServeProcess(tmp_path).start()
    _create(serve.address, "t", partitions, config)
    producer = _producer(serve.address, **{"message.timeout.ms": 120_000})
    acked: list[Any] = []
    failed: list[Any] = []
    lock = threading.Lock()

    def report(err: Any, msg: Any) -> None:
        with lock:
            (failed if err is not None else acked).append(err or msg)

    killed = False

    def kill_once_a_third_is_acknowledged() -> None:
        nonlocal killed, acked_before
        if not killed and len(acked) >= total // 3:
            serve.kill()  # with batches in flight: librdkafka keeps sending into the void
            killed = True
            acked_before = len(acked)
            producer.poll(0.5)
            serve.start()  # same port: the producer reconnects and retries

    acked_before = 0
    for i in range(total):
        while True:
            try:
                producer.produce(
                    "t", key=HOSTS[i % len(HOSTS)], value=b"%d" % i, on_delivery=report
                )
                break
            except BufferError:
                producer.poll(0.01)
        if i % 500 == 0:
            producer.poll(0)
            kill_once_a_third_is_acknowledged()
    while not killed:
        producer.poll(0.001)
        kill_once_a_third_is_acknowledged()
    assert acked_before < total
    assert producer.flush(90) == 0
    try:
        assert failed == []
        assert len(acked) == total
        # Each record at the offset its delivery report gave, and only there.
        stored = _read_all(serve.address, "t", partitions)
        assert stored == _sent_by_partition(acked, partitions)
        values = Counter(v for records in stored.values() for _, _, v in records)
        assert values == Counter(b"%d" % i for i in range(total))
    finally:
        serve.stop()


def test_sigkill_during_acks_all_idempotent_produce_loses_and_duplicates_nothing(tmp_path) -> None:
    _kill_during_produce(tmp_path, {})  # fsync "always", the default


def test_sigkill_during_produce_with_fsync_never(tmp_path) -> None:
    _kill_during_produce(tmp_path, {"fsync": "never"})


# ---------------------------------------------------------------- a duplicate after a restart


def _values(n: int, start: int) -> list[bytes]:
    return [b"r%d" % (start + i) for i in range(n)]


def _duplicate_after_restart(tmp_path, restart: str) -> None:
    serve = ServeProcess(tmp_path).start()
    try:
        _create(serve.address, "d", 2)
        with RawClient(serve.address) as raw:
            pid, epoch = raw.init_producer_id()
            first = idempotent_batch(pid, epoch, 0, _values(10, 0))
            second = idempotent_batch(pid, epoch, 10, _values(10, 10))
            assert raw.produce("d", 1, first) == (0, 0)
            assert raw.produce("d", 1, second) == (0, 10)
            assert raw.produce("d", 1, second) == (0, 10)  # a retry before the restart too
    finally:
        if restart == "kill":
            serve.kill()
        else:
            serve.stop()
    serve.start()
    try:
        with RawClient(serve.address) as raw:
            assert raw.end_offset("d", 1) == 20
            assert raw.produce("d", 1, second) == (0, 10)  # duplicate: its original offset
            assert raw.produce("d", 1, first) == (0, 0)  # still among the last five
            assert raw.end_offset("d", 1) == 20  # neither appended again
            gap = idempotent_batch(pid, epoch, 25, _values(5, 25))
            assert raw.produce("d", 1, gap)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
            third = idempotent_batch(pid, epoch, 20, _values(5, 20))
            assert raw.produce("d", 1, third) == (0, 20)  # the next sequence continues
            assert raw.produce("d", 1, third) == (0, 20)
            new_pid, _ = raw.init_producer_id()
            assert new_pid > pid  # never handed out again
            assert raw.end_offset("d", 1) == 25
    finally:
        serve.stop()
    with logstore.Broker.open(tmp_path) as broker:
        log = broker.topic("d").partition(1)
        assert [(r.offset, r.value) for r in log.read(0)] == list(enumerate(_values(25, 0)))
        assert broker.topic("d").partition(0).end_offset == 0


def test_a_duplicate_batch_after_a_clean_restart_is_answered_not_appended(tmp_path) -> None:
    _duplicate_after_restart(tmp_path, "clean")
    assert (tmp_path / "serve-producer-state").exists()


def test_a_duplicate_batch_after_sigkill_is_answered_not_appended(tmp_path) -> None:
    _duplicate_after_restart(tmp_path, "kill")


def test_producer_ids_are_not_handed_out_twice_across_restarts(tmp_path) -> None:
    seen: list[int] = []
    for restart in ("kill", "clean", "kill"):
        with _Served(tmp_path, restart) as address, RawClient(address) as raw:
            seen += [raw.init_producer_id()[0] for _ in range(3)]
    assert len(set(seen)) == len(seen) == 9
    assert seen == sorted(seen)


class _Served:
    """A ``ServeProcess`` ended by SIGKILL or SIGTERM when the block ends."""

    def __init__(self, root: Any, ending: str) -> None:
        self.serve = ServeProcess(root)
        self.ending = ending

    def __enter__(self) -> str:
        return self.serve.start().address

    def __exit__(self, *exc: object) -> None:
        if self.ending == "kill":
            self.serve.kill()
        else:
            self.serve.stop()


# ---------------------------------------------------------------- the snapshot is a cache


@contextlib.contextmanager
def _served(root: Any) -> Iterator[str]:
    """An in-process server (closed cleanly, so it writes its snapshot): its address."""
    with logstore.serve(root, listen="127.0.0.1:0") as server:
        assert server.address is not None
        yield f"{server.address[0]}:{server.address[1]}"


def _one_batch_served(root: Any) -> bytes:
    """Topic ``s`` with one idempotent batch of 3 records at offset 0, the server then closed."""
    with _served(root) as address:
        _create(address, "s", 1)
        with RawClient(address) as raw:
            pid, epoch = raw.init_producer_id()
            batch = idempotent_batch(pid, epoch, 0, _values(3, 0))
            assert raw.produce("s", 0, batch) == (0, 0)
    return batch


def test_a_damaged_snapshot_falls_back_to_the_log(tmp_path) -> None:
    batch = _one_batch_served(tmp_path)
    snapshot = tmp_path / "serve-producer-state"
    data = bytearray(snapshot.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the body: the checksum no longer matches
    snapshot.write_bytes(bytes(data))
    with _served(tmp_path) as address, RawClient(address) as raw:
        assert raw.produce("s", 0, batch) == (0, 0)  # rebuilt from the log
        assert raw.end_offset("s", 0) == 3
    snapshot.write_bytes(b"")  # an empty (torn) snapshot too
    with _served(tmp_path) as address, RawClient(address) as raw:
        assert raw.produce("s", 0, batch) == (0, 0)
        assert raw.end_offset("s", 0) == 3
    # Its checksum right but not the shape this server writes: not understood, not trusted.
    body = b'{"partitions":[{"topic":"s","partition":0,"end":3,"last_batch":[0],"producers":[]}]}'
    snapshot.write_bytes(
        b"logstore-serve-producer-state 2 "
        + hashlib.sha256(body).hexdigest().encode()
        + b"\n"
        + body
    )
    with _served(tmp_path) as address, RawClient(address) as raw:
        assert raw.produce("s", 0, batch) == (0, 0)
        assert raw.end_offset("s", 0) == 3


def test_a_snapshot_naming_a_batch_the_log_no_longer_holds_is_not_trusted(tmp_path) -> None:
    batch = _one_batch_served(tmp_path)
    # Deleted and created again behind the server's back, with other records.
    with logstore.Broker.open(tmp_path) as broker:
        broker.delete_topic("s")
        broker.create_topic("s", 1)
        broker.topic("s").partition(0).append_many([b"other-%d" % i for i in range(5)])
    with _served(tmp_path) as address, RawClient(address) as raw:
        # Not a duplicate here: this topic never had that producer's batch.
        assert raw.produce("s", 0, batch) == (0, 5)
        assert raw.produce("s", 0, batch) == (0, 5)  # now it is one
        assert raw.end_offset("s", 0) == 8


def _spy_on_scans(monkeypatch: Any) -> list[tuple[int, int]]:
    """The ``(start, end)`` of every scan of a log for producer state, as they happen."""
    from logstore.server import producers

    scans: list[tuple[int, int]] = []
    real_scan = producers._scan
    monkeypatch.setattr(
        producers,
        "_scan",
        lambda log, start, end, state, *rest: (
            scans.append((start, end)),
            real_scan(log, start, end, state, *rest),
        ),
    )
    return scans


def test_a_valid_snapshot_spares_the_scan_of_what_it_covers(tmp_path, monkeypatch) -> None:
    with _served(tmp_path) as address:
        _create(address, "s", 1)
        with RawClient(address) as raw:
            pid, epoch = raw.init_producer_id()
            for i in range(4):
                batch = idempotent_batch(pid, epoch, 10 * i, _values(10, 10 * i))
                assert raw.produce("s", 0, batch) == (0, 10 * i)
    scans = _spy_on_scans(monkeypatch)
    with _served(tmp_path) as address, RawClient(address) as raw:
        assert raw.produce("s", 0, batch) == (0, 30)  # known from the snapshot alone
        assert scans == [(40, 40)]


def test_appends_after_the_snapshot_then_sigkill_are_rebuilt_from_the_log(tmp_path) -> None:
    serve = ServeProcess(tmp_path).start()
    try:
        _create(serve.address, "s", 1)
        with RawClient(serve.address) as raw:
            pid, epoch = raw.init_producer_id()
            early = idempotent_batch(pid, epoch, 0, _values(10, 0))
            assert raw.produce("s", 0, early) == (0, 0)
    finally:
        serve.stop()  # a snapshot as of offset 10
    serve.start()
    with RawClient(serve.address) as raw:
        assert raw.produce("s", 0, early) == (0, 0)
        late = idempotent_batch(pid, epoch, 10, _values(10, 10))
        assert raw.produce("s", 0, late) == (0, 10)
    serve.kill()  # the snapshot still says offset 10
    serve.start()
    try:
        with RawClient(serve.address) as raw:
            assert raw.produce("s", 0, late) == (0, 10)  # found by scanning after the snapshot
            assert raw.produce("s", 0, early) == (0, 0)
            assert raw.end_offset("s", 0) == 20
            nxt = idempotent_batch(pid, epoch, 20, _values(1, 20))
            assert raw.produce("s", 0, nxt) == (0, 20)
    finally:
        serve.stop()


def test_a_periodic_snapshot_bounds_the_scan_after_a_crash(tmp_path, monkeypatch) -> None:
    """Written while producers write: a restart without a clean close scans only what followed."""
    from logstore.server.producers import Producers, identities

    with logstore.Broker.open(tmp_path) as broker:
        broker.create_topic("s", 1)
        log = broker.topic("s").partition(0)
        running = Producers.open(broker, tmp_path, snapshot_interval_s=0.05)
        pid = running.new_id()

        def append(sequence: int, n: int) -> int:
            batch = idempotent_batch(pid, 0, sequence, _values(n, sequence))
            [identity] = identities(batch) or []
            with running.partition("s", 0):
                assert running.check("s", 0, identity) is None
                offset = log.append_batches(batch).start
                running.appended("s", 0, identity, offset)
            return offset

        assert append(0, 10) == 0
        snapshot = tmp_path / "serve-producer-state"
        deadline = time.monotonic() + 10
        while b'"end":10' not in (snapshot.read_bytes() if snapshot.exists() else b""):
            assert time.monotonic() < deadline, "no periodic snapshot"
            time.sleep(0.02)
        running._stop.set()  # no more snapshots, and no close: as if killed here
        running._thread.join()  # type: ignore[union-attr]
        assert append(10, 5) == 10

        scans = _spy_on_scans(monkeypatch)
        restarted = Producers.open(broker, tmp_path)
        try:
            retry = identities(idempotent_batch(pid, 0, 10, _values(5, 10)))
            first = identities(idempotent_batch(pid, 0, 0, _values(10, 0)))
            assert retry is not None and first is not None
            with restarted.partition("s", 0):
                assert restarted.check("s", 0, retry[0]) == 10  # found after the snapshot
                assert restarted.check("s", 0, first[0]) == 0  # from the snapshot
            assert scans == [(10, 15)]
            assert restarted.new_id() > pid
        finally:
            restarted.close()
