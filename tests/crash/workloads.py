"""Workloads the tracer runs: each operation between a ``begin`` and an ``end`` marker.

Every operation that changes what a reader may see is wrapped by ``Driver``:
``begin`` before the call (with what it will write: an append's offsets are
known in advance, there is one writer), ``end`` after it returned, with the
log's start offset then. The checker reads acknowledgement from these markers:
an operation is acknowledged once its ``end`` is in the trace.

Logs live two directory levels below the root (``data/log``), so creating them
exercises every missing level.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Callable
from typing import Any

import logstore
from logstore import Broker, Log, LogConfig, Message

Mark = Callable[..., None]
#: Appends and produces per step are multiplied by this (the slow mode's longer traces).
SCALE = int(os.environ.get("LOGSTORE_CRASH_SCALE", "1"))
LOG_DIR = os.path.join("data", "log")
BROKER_DIR = os.path.join("data", "broker")


class Clock:
    """Milliseconds advancing by one per call: deterministic, never rolls by age."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def value_for(i: int) -> bytes:
    """Values of 20 to ~700 bytes, so batches straddle 512-byte sector boundaries."""
    return (b"value-%d-" % i) * (2 + (i * 37) % 70)


class Driver:
    """Wraps each operation in ``begin``/``end`` markers."""

    def __init__(self, mark: Mark) -> None:
        self.mark = mark
        self.ids = itertools.count()

    def append(self, log: Log, name: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
        base = log.end_offset
        planned = [(base + i, k, v) for i, (k, v) in enumerate(records)]
        op = next(self.ids)
        self.mark("begin", id=op, op="append", log=name, records=planned)
        got = log.append_many([Message(v, key=k) for k, v in records])
        assert list(got) == [o for o, _, _ in planned], (got, planned)
        # What a roll made due (retention) runs on the maintenance thread: count it as
        # part of this append, so the start offset it reaches is in the end marker.
        assert log._housekeeping.maintenance.wait_idle(60)
        self.mark("end", id=op, log=name, start=log.start_offset, flushed=log.flushed_offset)

    def call(
        self, log: Log | None, name: str, op_name: str, fn: Callable[[], Any], **data: Any
    ) -> Any:
        op = next(self.ids)
        self.mark("begin", id=op, op=op_name, log=name, **data)
        result = fn()
        if log is None:
            self.mark("end", id=op, log=name)
        else:
            self.mark("end", id=op, log=name, start=log.start_offset, flushed=log.flushed_offset)
        return result

    def close(self, log: Log) -> None:
        self.call(log, LOG_DIR, "close", log.close)


def _open_log(root: str, config: LogConfig, clock: Clock) -> Log:
    return Log.open(os.path.join(root, LOG_DIR), config, clock=clock)


def _appends(d: Driver, log: Log, start: int, count: int, *, keys: int = 0) -> None:
    for i in range(start * SCALE, (start + count) * SCALE):
        n = 1 + i % 3  # one to three records per batch
        d.append(
            log,
            LOG_DIR,
            [
                (b"k%d" % ((i + j) % keys if keys else i * 3 + j), value_for(i * 3 + j))
                for j in range(n)
            ],
        )


def value_for_batch_size(size: int, key: bytes) -> bytes:
    """A value whose one-record batch is exactly ``size`` bytes."""
    for n in range(size):
        value = b"p" * n
        if len(logstore.batch.encode_batch([(value, key, (), 0)], base_offset=0)) == size:
            return value
    raise AssertionError(f"no value gives a batch of {size} bytes")


def appends(root: str, mark: Mark, *, fsync: str = "always") -> None:
    """Appends over several rolls, close and reopen, more appends.

    The first batch is 498 bytes, so the second one's magic byte (at 498 + 16)
    lies after the 512-byte sector boundary and its length before it: the torn
    append that keeps the file size but not the second sector.
    """
    d, clock = Driver(mark), Clock()
    config = CONFIGS[f"appends_{fsync}" if fsync != "always" else "appends"]
    log = _open_log(root, config, clock)
    d.append(log, LOG_DIR, [(b"first", value_for_batch_size(498, b"first"))])
    _appends(d, log, 0, 12)
    d.close(log)
    log = _open_log(root, config, clock)
    _appends(d, log, 12, 6)
    d.close(log)


def appends_never(root: str, mark: Mark) -> None:
    appends(root, mark, fsync="never")


def appends_interval(root: str, mark: Mark) -> None:
    appends(root, mark, fsync="interval")


def reopen_untouched(root: str, mark: Mark) -> None:
    """Opens that change nothing between ones that append (``fsync="never"``).

    An open that only reads keeps the clean-shutdown marker and its close
    writes nothing; the first append after such an open deletes the marker
    before its write. Every crash state in between must recover.
    """
    d, clock = Driver(mark), Clock()
    config = CONFIGS["reopen_untouched"]
    log = _open_log(root, config, clock)
    _appends(d, log, 0, 6)
    d.close(log)
    for _ in range(2):
        log = _open_log(root, config, clock)
        assert log.read(log.end_offset - 1, max_records=1)
        d.close(log)
    log = _open_log(root, config, clock)
    _appends(d, log, 6, 4)
    d.close(log)
    log = _open_log(root, config, clock)
    d.close(log)


def retention(root: str, mark: Mark) -> None:
    """Size and count retention applied between appends, and ``delete_before``."""
    d, clock = Driver(mark), Clock()
    config = LogConfig(
        fsync="always", segment_bytes=1536, index_interval_bytes=512, retention_bytes=3000
    )
    log = _open_log(root, config, clock)
    _appends(d, log, 0, 10)
    d.call(log, LOG_DIR, "retention", log.apply_retention)
    _appends(d, log, 10, 4)
    d.call(log, LOG_DIR, "delete_before", lambda: log.delete_before(log.end_offset - 3))
    _appends(d, log, 14, 3)
    d.close(log)
    config = LogConfig(
        fsync="always", segment_bytes=1536, index_interval_bytes=512, retention_messages=6
    )
    log = _open_log(root, config, clock)
    _appends(d, log, 17, 4)
    d.call(log, LOG_DIR, "retention", log.apply_retention)
    d.close(log)


def truncate(root: str, mark: Mark) -> None:
    """Truncation inside a batch and at a segment boundary, each followed by appends."""
    d, clock = Driver(mark), Clock()
    config = LogConfig(fsync="always", segment_bytes=2048, index_interval_bytes=512)
    log = _open_log(root, config, clock)
    _appends(d, log, 0, 10)
    inside = log.end_offset - 2  # inside the last batch of three records
    d.call(log, LOG_DIR, "truncate", lambda: log.truncate(inside), offset=inside)
    _appends(d, log, 10, 3)
    boundary = log.segments[1].base_offset  # drops whole segments
    d.call(log, LOG_DIR, "truncate", lambda: log.truncate(boundary), offset=boundary)
    _appends(d, log, 13, 4)
    d.close(log)


COMPACTED = LogConfig(
    fsync="always",
    segment_bytes=1536,
    index_interval_bytes=512,
    cleanup_policy="compact",
    min_cleanable_dirty_ratio=1.0,  # only the explicit compact() calls
)


def compaction(root: str, mark: Mark) -> None:
    """A compacted log with few keys: compaction over several rolls, then more appends."""
    d, clock = Driver(mark), Clock()
    log = _open_log(root, COMPACTED, clock)
    _appends(d, log, 0, 12, keys=5)
    d.call(log, LOG_DIR, "compact", log.compact)
    _appends(d, log, 12, 6, keys=5)
    d.call(log, LOG_DIR, "compact", log.compact)
    _appends(d, log, 18, 2, keys=5)
    d.close(log)


class BrokerDriver(Driver):
    """Markers for topic and consumer-group operations, partitions named by directory."""

    def produce(self, broker: Broker, topic: str, i: int, count: int) -> None:
        t = broker.topic(topic)
        for j in range(i * SCALE, (i + count) * SCALE):
            p = j % t.partitions
            log = t.partition(p)
            self.append(log, os.path.join(BROKER_DIR, f"{topic}-{p}"), [(b"k%d" % j, value_for(j))])

    def commit(self, broker: Broker, consumer: logstore.Consumer, group: str) -> None:
        while consumer.poll(max_records=3):
            pass
        positions = {f"{t}-{p}": o for (t, p), o in sorted(consumer._positions.items())}
        op = next(self.ids)
        self.mark("begin", id=op, op="commit", group=group, positions=positions)
        consumer.commit()
        self.mark("end", id=op)

    def topic_op(self, op_name: str, fn: Callable[[], Any], **data: Any) -> None:
        op = next(self.ids)
        self.mark("begin", id=op, op=op_name, **data)
        fn()
        self.mark("end", id=op)


def broker(root: str, mark: Mark) -> None:
    """Topics created and deleted, records produced, consumer offsets committed, reopened."""
    d, clock = BrokerDriver(mark), Clock()
    config = LogConfig(fsync="always", segment_bytes=2048, index_interval_bytes=512)
    path = os.path.join(root, BROKER_DIR)

    def open_broker() -> Broker:
        return Broker.open(path, config, maintenance_interval_ms=None, clock=clock)

    b = open_broker()
    d.topic_op("create_topic", lambda: b.create_topic("a", 2), topic="a", partitions=2)
    d.produce(b, "a", 0, 6)
    consumer = b.consumer("g", "a")
    d.commit(b, consumer, "g")
    d.topic_op("create_topic", lambda: b.create_topic("b", 1), topic="b", partitions=1)
    d.produce(b, "b", 6, 3)
    d.produce(b, "a", 9, 2)
    d.commit(b, consumer, "g")
    consumer.close()
    other = b.consumer("h", "b")
    d.commit(b, other, "h")
    other.close()
    d.topic_op("delete_topic", lambda: b.delete_topic("a"), topic="a")
    b.close()
    b = open_broker()
    d.produce(b, "b", 11, 2)
    d.topic_op("create_topic", lambda: b.create_topic("a", 1), topic="a", partitions=1)
    d.produce(b, "a", 13, 2)
    b.close()


def producer(root: str, mark: Mark) -> None:
    """A producer's group commit, with a write failing inside a group.

    Batches of 3 records (small, so ``batch_records`` alone seals them). The
    first write is held until batches 2, 3 and 4 queue behind it, so the
    second group is those three, under one fsync; the write of batch 3 fails
    (``EIO``, before a byte is written): batch 2 stays, is fsynced and
    resolved, batches 3 and 4 fail. Then 30 records more, grouped as they
    come, across rolls. Each record is one operation: begun at its ``send``
    (at the offset it will get: a failed batch's records at the offsets the
    next ones take), acknowledged in its handle's done callback.
    """
    from logstore.segment import Segment

    d, clock = Driver(mark), Clock()
    log = _open_log(root, CONFIGS["producer"], clock)
    writing, release = threading.Event(), threading.Event()
    writes = itertools.count(1)
    real = Segment.append

    def append(seg: Segment, data: Any, spans: Any, *, record_count: int) -> None:
        n = next(writes)
        if n == 1:
            writing.set()
            assert release.wait(60)
        if n == 3:
            raise OSError(errno.EIO, "injected write failure", seg.log_path)
        real(seg, data, spans, record_count=record_count)

    Segment.append = append  # type: ignore[method-assign]
    prod = log.producer(linger_ms=600_000, batch_records=3)
    handles: list[logstore.SendHandle[int]] = []

    def send(i: int) -> None:
        # Batches 3 and 4 (records 6 to 11) fail: records 12 on take their offsets.
        key, value, offset = b"k%d" % i, (b"value-%d-" % i) * (1 + i % 4), i if i < 12 else i - 6
        op = next(d.ids)
        mark("begin", id=op, op="append", log=LOG_DIR, records=[(offset, key, value)])
        handle = prod.send(value, key=key)
        handle.add_done_callback(
            lambda h, op=op: (
                h.exception() is None
                and mark(
                    "end", id=op, log=LOG_DIR, start=log.start_offset, flushed=log.flushed_offset
                )
            )
        )
        handles.append(handle)

    for i in range(3):
        send(i)
    assert writing.wait(60)  # the writer holds batch 1; 2, 3, 4 queue behind it
    for i in range(3, 12):
        send(i)
    release.set()
    for h in handles[6:]:
        assert isinstance(h.exception(timeout=60), OSError)
    for i in range(12, 42):
        send(i)
    prod.close()
    got = [h.result() for h in (*handles[:6], *handles[12:])]
    assert got == list(range(36)), got
    assert log.end_offset == 36
    d.close(log)


def unsynced_file(root: str, mark: Mark) -> None:
    """Deliberately broken: a file acknowledged without fsyncing its directory.

    The harness must report a violation here (``test_harness_catches_...``).
    """
    d = Driver(mark)
    op = next(d.ids)
    mark("begin", id=op, op="raw_file", path="acked.txt", data=b"acknowledged")
    fd = os.open(os.path.join(root, "acked.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"acknowledged")
    os.fsync(fd)
    os.close(fd)
    mark("end", id=op)


def new_log(root: str, mark: Mark) -> None:
    """One record appended to a log whose directories did not exist."""
    d = Driver(mark)
    log = _open_log(root, CONFIGS["new_log"], Clock())
    d.append(log, LOG_DIR, [(b"k", b"acknowledged")])


def new_topic(root: str, mark: Mark) -> None:
    """A new broker root, a new topic, two records produced, a group's offsets committed."""
    d, clock = BrokerDriver(mark), Clock()
    b = Broker.open(
        os.path.join(root, BROKER_DIR), CONFIGS["broker"], maintenance_interval_ms=None, clock=clock
    )
    d.topic_op("create_topic", lambda: b.create_topic("t", 2), topic="t", partitions=2)
    d.produce(b, "t", 0, 2)
    d.commit(b, b.consumer("g", "t"), "g")


def unsynced_log_dirs(root: str, mark: Mark) -> None:
    """Deliberately broken: ``appends`` with Log.open creating its directories the old
    way (``os.makedirs``, no fsync of the parents). The harness must report it."""
    import logstore.opener

    logstore.opener.make_dirs = lambda path: os.makedirs(path, exist_ok=True)  # type: ignore[attr-defined]
    appends(root, mark)


WORKLOADS: dict[str, Callable[[str, Mark], None]] = {
    "appends": appends,
    "appends_never": appends_never,
    "appends_interval": appends_interval,
    "retention": retention,
    "reopen_untouched": reopen_untouched,
    "truncate": truncate,
    "compaction": compaction,
    "broker": broker,
    "unsynced_file": unsynced_file,
    "unsynced_log_dirs": unsynced_log_dirs,
    "new_log": new_log,
    "new_topic": new_topic,
    "producer": producer,
}
#: The config each workload's logs are recovered with (the one they were written with,
#: less retention limits, which only ``apply_retention`` applies).
CONFIGS: dict[str, LogConfig] = {
    "appends": LogConfig(fsync="always", segment_bytes=2048, index_interval_bytes=512),
    "appends_never": LogConfig(fsync="never", segment_bytes=2048, index_interval_bytes=512),
    # flushes every 4 records only (the timer never fires within the workload)
    "appends_interval": LogConfig(
        fsync="interval",
        fsync_interval_messages=4,
        fsync_interval_ms=3_600_000,
        segment_bytes=2048,
        index_interval_bytes=512,
    ),
    "retention": LogConfig(fsync="always", segment_bytes=1536, index_interval_bytes=512),
    "reopen_untouched": LogConfig(fsync="never", segment_bytes=2048, index_interval_bytes=512),
    "truncate": LogConfig(fsync="always", segment_bytes=2048, index_interval_bytes=512),
    "compaction": COMPACTED,
    "broker": LogConfig(fsync="always", segment_bytes=2048, index_interval_bytes=512),
    "unsynced_file": LogConfig(),
    "unsynced_log_dirs": LogConfig(fsync="always", segment_bytes=2048, index_interval_bytes=512),
    "new_log": LogConfig(fsync="always"),
    "producer": LogConfig(fsync="always", segment_bytes=1024, index_interval_bytes=256),
    "new_topic": LogConfig(fsync="always", segment_bytes=2048, index_interval_bytes=512),
}
#: The workloads whose crash states must all pass (the broken ones must not).
CORRECT = (
    "appends",
    "appends_interval",
    "appends_never",
    "retention",
    "reopen_untouched",
    "truncate",
    "compaction",
    "broker",
    "producer",
)
