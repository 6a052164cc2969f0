"""``Log.producer`` and ``Broker.producer``: exact offsets, batching, back-pressure, failures.

Batches are counted in the files: ``read_batches`` returns the stored batches,
whose headers give each one's record count. Waits end on handles and events
(generous timeouts as a safety net), never on sleeps; slow or failing writes
come from a wrapped ``Segment.append`` (one call per stored batch).
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore import (
    BufferFullError,
    InvalidRecordError,
    LogConfig,
    Message,
    ProducerClosedError,
    RecordTooLarge,
    WrongTypeError,
)
from logstore.local import LocalLog
from logstore.segment import Segment

from .conftest import REPO, OpenLog, child_env

LONG = 600_000  # a linger that never ends within a test: only size, flush or close write
WAIT = 30  # seconds: the safety net of every wait on a handle


def batch_counts(log: logstore.Log) -> list[int]:
    """Records per stored batch, in order, read from the batch headers in the files."""
    data = log.read_batches(log.start_offset, max_bytes=1 << 30) if log.end_offset else b""
    counts, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from(">i", data, pos + 8)
        (count,) = struct.unpack_from(">i", data, pos + 57)
        counts.append(count)
        pos += 12 + length
    return counts


def values(log: logstore.Log) -> list[bytes | None]:
    return [r.value for r in log.scan()]


def wrap_write(
    log: logstore.Log, monkeypatch: pytest.MonkeyPatch, before: Callable[[int], None]
) -> None:
    """Call ``before(n)`` ahead of the n-th batch written (from 1) into ``log``'s segments.

    The producer's writer holds the log's lock there, between two batches of a group.
    """
    real = Segment.append
    calls = [0]

    def append(seg: Segment, data: Any, spans: Any, *, record_count: int) -> None:
        if seg.log_path.startswith(log.path + os.sep):
            calls[0] += 1
            before(calls[0])
        real(seg, data, spans, record_count=record_count)

    monkeypatch.setattr(Segment, "append", append)


def test_every_handle_resolves_to_its_offset_in_send_order(open_log: OpenLog) -> None:
    log = open_log()
    with log.producer(linger_ms=LONG, batch_records=1000) as producer:
        handles = [producer.send(b"v%d" % i, key=b"k%d" % (i % 7)) for i in range(2500)]
    assert [h.result() for h in handles] == list(range(2500))
    assert all(h.done() and h.exception() is None for h in handles)
    assert values(log) == [b"v%d" % i for i in range(2500)]
    assert [r.key for r in log.read(0, max_records=8)] == [b"k%d" % (i % 7) for i in range(8)]
    assert batch_counts(log) == [1000, 1000, 500]


def test_records_with_headers_timestamps_and_tombstones_go_through_the_slow_path(
    open_log: OpenLog,
) -> None:
    log = open_log()
    with log.producer(linger_ms=LONG) as producer:
        a = producer.send(b"a", key=b"k", headers=[("h", b"1")], timestamp=1234)
        b = producer.send(None, key=b"k")
        c = producer.send(bytearray(b"c"))
        d = producer.send(memoryview(b"d"), key=bytearray(b"kd"), timestamp=5)
    assert [h.result() for h in (a, b, c, d)] == [0, 1, 2, 3]
    records = log.read(0)
    assert [(r.key, r.value, r.headers) for r in records] == [
        (b"k", b"a", (("h", b"1"),)),
        (b"k", None, ()),
        (None, b"c", ()),
        (b"kd", b"d", ()),
    ]
    assert (records[0].timestamp, records[3].timestamp) == (1234, 5)
    assert batch_counts(log) == [4]


def test_many_threads_each_keep_their_order_and_every_offset_is_exact(
    open_log: OpenLog,
) -> None:
    log = open_log()
    threads, per_thread = 8, 3000
    start = threading.Barrier(threads)
    sent: list[list[logstore.SendHandle[int]]] = [[] for _ in range(threads)]
    with log.producer(linger_ms=1, batch_records=500, max_buffered_bytes=64_000) as producer:

        def run(t: int) -> None:
            start.wait()
            sent[t] = [producer.send(b"%d-%d" % (t, i), key=b"t%d" % t) for i in range(per_thread)]

        workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(WAIT)
        producer.flush()
    stored = values(log)
    assert len(stored) == threads * per_thread
    every: list[int] = []
    for t, handles in enumerate(sent):
        offsets = [h.result() for h in handles]
        assert offsets == sorted(offsets)  # a thread's records in its order
        assert [stored[o] for o in offsets] == [b"%d-%d" % (t, i) for i in range(per_thread)]
        every += offsets
    assert sorted(every) == list(range(threads * per_thread))
    assert max(batch_counts(log)) <= 500


def test_the_linger_writes_a_partial_batch_without_flush(open_log: OpenLog) -> None:
    log = open_log()
    producer = log.producer(linger_ms=20, batch_records=1000)
    handles = [producer.send(b"x%d" % i) for i in range(3)]
    assert handles[2].result(timeout=WAIT) == 2  # no flush: the linger wrote it
    assert [h.result() for h in handles] == [0, 1, 2]
    assert batch_counts(log) == [3]
    producer.close()


def test_a_full_batch_is_written_at_once_and_the_rest_waits_for_the_linger(
    open_log: OpenLog,
) -> None:
    log = open_log()
    producer = log.producer(linger_ms=LONG, batch_records=100)
    handles = [producer.send(b"r%d" % i) for i in range(250)]
    assert handles[199].result(timeout=WAIT) == 199
    assert handles[99].result() == 99
    assert batch_counts(log) == [100, 100]
    assert not any(h.done() for h in handles[200:])  # 50: under batch_records, linger long
    with pytest.raises(TimeoutError):
        handles[200].result(timeout=0)
    producer.flush()
    assert [h.result() for h in handles[200:]] == list(range(200, 250))
    assert batch_counts(log) == [100, 100, 50]
    producer.close()


def test_batch_bytes_bounds_a_batch_by_the_records_estimated_size(open_log: OpenLog) -> None:
    log = open_log()
    # A 100-byte value without key counts 110 bytes, a batch 61 more: 5 records fit in 611.
    producer = log.producer(linger_ms=LONG, batch_bytes=61 + 5 * 110)
    handles = [producer.send(b"b" * 100) for _ in range(12)]
    assert handles[9].result(timeout=WAIT) == 9
    assert batch_counts(log) == [5, 5]
    assert producer.buffered_bytes == 2 * 110
    producer.close()
    assert batch_counts(log) == [5, 5, 2]
    assert producer.buffered_bytes == 0


def test_batch_bytes_is_cut_to_what_one_batch_of_the_log_may_be(
    open_log: OpenLog, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    log = open_log(max_message_bytes=4096)
    with caplog.at_level(logging.WARNING, logger="logstore"):
        producer = log.producer(batch_bytes=1 << 20)
    assert producer.batch_bytes == 4096
    assert "batch_bytes 1048576 cut to 4096" in caplog.text
    handles = [producer.send(b"c" * 100) for _ in range(100)]
    producer.close()
    assert [h.result() for h in handles] == list(range(100))
    counts = batch_counts(log)
    assert sum(counts) == 100 and counts[0] == (4096 - 61) // 110  # one stored batch each
    with caplog.at_level(logging.WARNING, logger="logstore"):
        caplog.clear()
        default = open_log(tmp_path / "default")
        assert default.producer().batch_bytes == 1 << 20  # the defaults agree: no cut
    assert caplog.text == ""


def test_flush_and_close(open_log: OpenLog) -> None:
    log = open_log()
    producer = log.producer(linger_ms=LONG)
    first = [producer.send(b"f%d" % i) for i in range(10)]
    producer.flush()
    assert all(h.done() for h in first)
    producer.flush()  # nothing pending: returns
    last = producer.send(b"last")
    producer.close()
    assert last.result() == 10
    assert producer.closed
    with pytest.raises(ProducerClosedError, match="producer is closed"):
        producer.send(b"late")
    with pytest.raises(ProducerClosedError):
        producer.send(b"late", key=b"k", headers=[("h", None)])
    producer.close()  # idempotent
    assert isinstance(ProducerClosedError("x"), logstore.LogStoreError)
    assert values(log) == [b"f%d" % i for i in range(10)] + [b"last"]


def test_closing_the_log_flushes_its_open_producers_first(log_dir: Path) -> None:
    log = logstore.Log.open(log_dir, LogConfig(fsync="always"))
    producer = log.producer(linger_ms=LONG)
    handles = [producer.send(b"p%d" % i) for i in range(5)]
    log.close()
    assert [h.result(timeout=0) for h in handles] == list(range(5))
    assert producer.closed
    with pytest.raises(ProducerClosedError):
        producer.send(b"after")
    with logstore.Log.open(log_dir) as reopened:
        assert values(reopened) == [b"p%d" % i for i in range(5)]


def test_a_producer_of_a_closed_log_fails_its_records_with_log_closed(
    open_log: OpenLog,
) -> None:
    log = open_log()
    producer = log.producer(linger_ms=LONG)
    log._producers = None  # as if the log had not known it: its close cannot flush it
    log.close()
    handle = producer.send(b"lost")
    producer.flush()
    assert isinstance(handle.exception(), logstore.LogClosedError)
    with pytest.raises(logstore.LogClosedError):
        handle.result()
    producer.close()
    with pytest.raises(logstore.LogClosedError):
        log.producer()


def test_a_full_buffer_blocks_send_then_raises_buffer_full(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    writing, release = threading.Event(), threading.Event()

    def block_first(n: int) -> None:
        if n == 1:
            writing.set()
            assert release.wait(WAIT)

    wrap_write(log, monkeypatch, block_first)
    # 110 bytes a record; 5 records fill the 550-byte buffer.
    producer = log.producer(linger_ms=0, max_buffered_bytes=550, max_block_ms=0)
    first = producer.send(b"a" * 100)
    assert writing.wait(WAIT)  # the writer is inside the first write, held there
    held = [producer.send(b"a" * 100) for _ in range(4)]
    assert producer.buffered_bytes == 550
    with pytest.raises(BufferFullError, match="max_buffered_bytes 550") as refused:
        producer.send(b"z")
    assert isinstance(refused.value, logstore.LogStoreError)
    producer.max_block_ms = 50
    with pytest.raises(BufferFullError, match="after max_block_ms 50"):
        producer.send(b"z")  # waited 50 ms, nothing freed
    producer.max_block_ms = WAIT * 1000
    late: list[logstore.SendHandle[int]] = []
    sender = threading.Thread(target=lambda: late.append(producer.send(b"late")))
    sender.start()
    sender.join(0.2)
    assert sender.is_alive() and not late  # blocked on the full buffer
    release.set()
    sender.join(WAIT)
    producer.close()
    assert [h.result() for h in (first, *held, late[0])] == [0, 1, 2, 3, 4, 5]
    assert values(log)[-1] == b"late"


def test_a_record_too_large_is_refused_at_send_as_append_many_refuses_it(
    open_log: OpenLog,
) -> None:
    log = open_log(max_message_bytes=1000)
    # The largest value append_many takes and the smallest it refuses: the producer agrees.
    fits = next(n for n in range(1000, 800, -1) if _appends(log, b"v" * n))
    with pytest.raises(RecordTooLarge) as by_append:
        log.append_many([b"v" * (fits + 1)])
    producer = log.producer(linger_ms=LONG)
    with pytest.raises(RecordTooLarge) as by_send:
        producer.send(b"v" * (fits + 1))
    assert str(by_send.value) == str(by_append.value)
    assert str(by_send.value).startswith(log.path)
    ok = producer.send(b"v" * fits)  # its estimate is over the limit; encoded, it fits
    buffered = log.producer(max_buffered_bytes=200)
    with pytest.raises(RecordTooLarge, match="max_buffered_bytes 200"):
        buffered.send(b"w" * 300)
    producer.close()
    buffered.close()
    assert ok.result() == log.end_offset - 1


def _appends(log: logstore.Log, value: bytes) -> bool:
    try:
        log.append_many([value])
    except RecordTooLarge:
        return False
    return True


def test_send_refuses_what_append_many_refuses(open_log: OpenLog, tmp_path: Path) -> None:
    log = open_log()
    producer = log.producer(linger_ms=LONG)
    with pytest.raises(WrongTypeError, match="value must be bytes-like"):
        producer.send("text")  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match="key must be bytes-like"):
        producer.send(b"v", key="k")  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match="header"):
        producer.send(b"v", headers=[("h",)])  # type: ignore[list-item]
    with pytest.raises(InvalidRecordError, match="negative"):
        producer.send(b"v", timestamp=-5)
    with pytest.raises(TypeError):
        producer.send(b"v", b"k")  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'partition'"):
        producer.send(b"v", partition=1)  # type: ignore[call-arg]
    producer.close()
    compacted = open_log(tmp_path / "compacted", cleanup_policy="compact")
    with pytest.raises(InvalidRecordError) as by_append:
        compacted.append_many([b"no key"])
    with compacted.producer() as keyed, pytest.raises(InvalidRecordError) as by_send:
        keyed.send(b"no key")
    assert str(by_send.value) == str(by_append.value)
    assert log.end_offset == 0 and compacted.end_offset == 0


def test_a_failed_write_fails_every_handle_of_its_batch_and_later_batches_go_on(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    error = OSError(28, "No space left on device")

    def fail_second(n: int) -> None:
        if n == 2:
            raise error

    wrap_write(log, monkeypatch, fail_second)
    # One batch per write, whatever queued: the group case is the test below.
    producer = log.producer(linger_ms=LONG, batch_records=10, max_group_bytes=0)
    handles = [producer.send(b"%d" % i) for i in range(30)]
    producer.close()
    assert [h.result() for h in handles[:10]] == list(range(10))
    assert all(h.exception() is error for h in handles[10:20])
    for h in handles[10:20]:
        with pytest.raises(OSError) as raised:
            h.result()
        assert raised.value is error
    assert [h.result() for h in handles[20:]] == list(range(10, 20))  # nothing of batch 2
    assert values(log) == [b"%d" % i for i in [*range(10), *range(20, 30)]]


def count_flushes(log: logstore.Log, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The log's end offset at each fsync of ``log`` (``LocalLog.flush``), appended as they run."""
    real, ends = LocalLog.flush, []

    def flush(local: LocalLog) -> None:
        real(local)
        if local is log._local:
            ends.append(local.end_offset)

    monkeypatch.setattr(LocalLog, "flush", flush)
    return ends


def held_first_write(
    log: logstore.Log, monkeypatch: pytest.MonkeyPatch, fail: dict[int, OSError] | None = None
) -> tuple[threading.Event, threading.Event]:
    """``(writing, release)``: the first batch write waits for ``release``; the n-th raises
    ``fail[n]`` before a byte is written. Batches sealed meanwhile queue: the next group."""
    writing, release = threading.Event(), threading.Event()

    def before(n: int) -> None:
        if n == 1:
            writing.set()
            assert release.wait(WAIT)
        if fail and n in fail:
            raise fail[n]

    wrap_write(log, monkeypatch, before)
    return writing, release


def flushed_when_resolved(log: logstore.Log, handles: list[logstore.SendHandle[int]]) -> list[int]:
    """``log.flushed_offset`` as each handle's done callback saw it, in resolution order."""
    seen: list[int] = []
    for h in handles:
        h.add_done_callback(lambda _: seen.append(log.flushed_offset))
    return seen


def test_batches_queued_behind_a_write_go_under_one_fsync_each_its_own_batch(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(fsync="always")
    flushes = count_flushes(log, monkeypatch)
    writing, release = held_first_write(log, monkeypatch)
    producer = log.producer(linger_ms=LONG, batch_records=10)
    handles = [producer.send(b"%d" % i) for i in range(10)]
    assert writing.wait(WAIT)  # batch 1 is being written; 2, 3 and 4 queue behind it
    handles += [producer.send(b"%d" % i, key=b"k") for i in range(10, 40)]
    seen = flushed_when_resolved(log, handles[10::10])
    release.set()
    assert [h.result(timeout=WAIT) for h in handles] == list(range(40))
    assert batch_counts(log) == [10, 10, 10, 10]  # each its own batch
    assert flushes == [10, 40]  # batch 1, then one fsync for batches 2 to 4
    assert seen == [40, 40, 40]  # each resolved after that fsync
    assert values(log) == [b"%d" % i for i in range(40)]
    producer.close()


def test_max_group_bytes_bounds_a_group(open_log: OpenLog, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(fsync="always")
    flushes = count_flushes(log, monkeypatch)
    writing, release = held_first_write(log, monkeypatch)
    # 110 bytes a record, 1,100 a batch of 10: two batches make a group of 2,200.
    producer = log.producer(linger_ms=LONG, batch_records=10, max_group_bytes=2200)
    handles = [producer.send(b"g" * 100) for _ in range(10)]
    assert writing.wait(WAIT)
    handles += [producer.send(b"g" * 100) for _ in range(50)]  # batches 2 to 6
    release.set()
    assert [h.result(timeout=WAIT) for h in handles] == list(range(60))
    assert flushes == [10, 30, 50, 60]  # groups: 1 | 2 3 | 4 5 | 6
    producer.close()


def test_a_write_failing_inside_a_group_fails_it_and_the_rest_the_batches_before_are_fsynced(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(fsync="always")
    flushes = count_flushes(log, monkeypatch)
    error = OSError(5, "Input/output error")
    writing, release = held_first_write(log, monkeypatch, fail={3: error})
    producer = log.producer(linger_ms=LONG, batch_records=10)
    handles = [producer.send(b"%d" % i) for i in range(10)]
    assert writing.wait(WAIT)
    handles += [producer.send(b"%d" % i) for i in range(10, 40)]  # group: batches 2, 3, 4
    seen = flushed_when_resolved(log, handles[10:11])
    release.set()
    assert [h.result(timeout=WAIT) for h in handles[:20]] == list(range(20))
    assert seen == [20]  # batch 2 resolved once fsynced, after batch 3's write failed
    assert all(h.exception(timeout=WAIT) is error for h in handles[20:])  # 3 failed, 4 not tried
    assert flushes == [10, 20]
    later = [producer.send(b"%d" % i) for i in range(40, 50)]
    producer.close()
    assert [h.result() for h in later] == list(range(20, 30))  # later groups go on
    assert values(log) == [b"%d" % i for i in [*range(20), *range(40, 50)]]


def test_a_failed_fsync_fails_every_batch_of_its_group(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(fsync="always")
    writing, release = held_first_write(log, monkeypatch)
    error = OSError(5, "Input/output error")
    real, calls = LocalLog.flush, [0]

    def flush(local: LocalLog) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise error
        real(local)

    monkeypatch.setattr(LocalLog, "flush", flush)
    producer = log.producer(linger_ms=LONG, batch_records=10)
    handles = [producer.send(b"%d" % i) for i in range(10)]
    assert writing.wait(WAIT)
    handles += [producer.send(b"%d" % i) for i in range(10, 30)]  # group: batches 2 and 3
    release.set()
    assert [h.result(timeout=WAIT) for h in handles[:10]] == list(range(10))
    # Written but not known durable: failed, never reported written. (A failed fsync
    # says nothing of what reached the disk: the bytes stay in the file.)
    assert all(h.exception(timeout=WAIT) is error for h in handles[10:])
    assert log.flushed_offset == 10
    later = [producer.send(b"%d" % i) for i in range(30, 40)]
    producer.close()
    assert [h.result() for h in later] == list(range(30, 40))
    assert log.flushed_offset == 40


def test_done_callbacks_run_once_the_batch_resolves(open_log: OpenLog) -> None:
    log = open_log()
    producer = log.producer(linger_ms=LONG)
    seen: list[tuple[str, int]] = []
    handle = producer.send(b"cb")
    handle.add_done_callback(lambda h: seen.append((threading.current_thread().name, h.result())))
    handle.add_done_callback(lambda h: 1 / 0)  # logged, and the others still run
    assert seen == [] and repr(handle) == "<SendHandle pending>"
    producer.flush()
    assert [offset for _, offset in seen] == [0]
    assert seen[0][0].startswith("logstore-producer-")
    handle.add_done_callback(lambda h: seen.append(("now", h.result())))
    assert seen[-1] == ("now", 0)
    assert repr(handle) == "<SendHandle 0>"
    producer.close()


def test_options_are_checked(open_log: OpenLog) -> None:
    log = open_log()
    for bad in (
        {"linger_ms": -1},
        {"batch_records": 0},
        {"batch_bytes": 10},
        {"max_buffered_bytes": 0},
        {"max_block_ms": -1},
        {"max_group_bytes": -1},
        {"linger_ms": 1.5},
    ):
        with pytest.raises(logstore.ConfigError, match=next(iter(bad))):
            log.producer(**bad)  # type: ignore[arg-type]


def test_the_topic_producer_routes_as_produce_many(tmp_path: Path) -> None:
    config = LogConfig(fsync="never")
    keys = [b"host-%d" % (i % 11) if i % 4 else None for i in range(400)]
    records = [Message(b"r%d" % i, key=k) for i, k in enumerate(keys)]
    with logstore.Broker.open(tmp_path / "a", config) as broker:
        broker.create_topic("t", 5)
        expected = broker.produce_many("t", records)
    with logstore.Broker.open(tmp_path / "b", config) as broker:
        broker.create_topic("t", 5)
        with broker.producer("t", linger_ms=LONG, batch_records=30) as producer:
            handles = [producer.send(m.value, key=m.key) for m in records]
        assert [h.result() for h in handles] == expected
        t = broker.topic("t")
        for p in range(5):
            mine = [r.value for r in t.partition(p).scan()]
            assert mine == [records[i].value for i, (q, _) in enumerate(expected) if q == p]


def test_closing_the_broker_flushes_its_producers_and_consumers_see_the_records(
    tmp_path: Path,
) -> None:
    with logstore.Broker.open(tmp_path, LogConfig(fsync="never")) as broker:
        broker.create_topic("t", 2)
        producer = broker.producer("t", linger_ms=LONG)
        handles = [producer.send(b"c%d" % i, key=b"k%d" % i) for i in range(6)]
        with pytest.raises(logstore.UnknownTopicError):
            broker.producer("nope")
    assert producer.closed
    results = [h.result(timeout=0) for h in handles]
    assert sorted(results) == sorted(set(results)) and len(results) == 6
    with logstore.Broker.open(tmp_path, LogConfig(fsync="never")) as broker:
        consumer = broker.consumer("g", "t")
        got = {(r.partition, r.record.offset): r.record.value for r in consumer.poll(timeout_ms=0)}
        assert got == {pair: b"c%d" % i for i, pair in enumerate(results)}


def test_the_topic_producer_follows_a_reopened_topic(tmp_path: Path) -> None:
    with logstore.Broker.open(tmp_path, LogConfig(fsync="never")) as broker:
        broker.create_topic("t", 1)
        with broker.producer("t", linger_ms=LONG) as producer:
            before = producer.send(b"before")
            producer.flush()
            broker.alter_topic("t", {"retention_ms": 1000})  # closes and reopens the logs
            after = producer.send(b"after")
        assert (before.result(), after.result()) == ((0, 0), (0, 1))


# Callbacks run on the sending thread (a handle already resolved) or the writer's:
# one lock keeps their lines whole.
CHILD = """
import sys, threading, logstore
log = logstore.Log.open(sys.argv[1], logstore.LogConfig(fsync="always"))
producer = log.producer(linger_ms=1, batch_records=200)
lock = threading.Lock()
def report(i):
    def line(h):
        with lock:
            sys.stdout.write(f"{i} {h.result()}\\n")
            sys.stdout.flush()
    return line
for i in range(1_000_000):
    h = producer.send(b"value-%d" % i, key=b"k%d" % (i % 5))
    h.add_done_callback(report(i))
"""


def test_every_offset_resolved_before_a_sigkill_is_stored(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", CHILD, str(tmp_path)]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, text=True, env=child_env(), cwd=REPO
    ) as child:
        assert child.stdout is not None
        acked = [tuple(map(int, child.stdout.readline().split())) for _ in range(3000)]
        child.kill()  # SIGKILL: batches in memory and in flight are lost, not the resolved
        child.wait()
    assert [o for _, o in acked] == sorted(o for _, o in acked)
    with logstore.Log.open(tmp_path) as log:
        assert log.end_offset >= len(acked)
        stored = {r.offset: r.value for r in log.read(0, max_records=len(acked) + 10_000)}
    for i, offset in acked:
        assert stored[offset] == b"value-%d" % i


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_that_dies_fails_every_waiting_record_and_closes_the_producer(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()

    def die(n: int) -> None:
        if n == 2:
            raise SystemExit("gone")  # not an Exception: the writer thread ends

    wrap_write(log, monkeypatch, die)
    producer = log.producer(linger_ms=LONG, batch_records=5)
    handles = [producer.send(b"%d" % i) for i in range(5)]  # batch 1: written
    assert handles[4].result(timeout=WAIT) == 4
    more = [producer.send(b"%d" % i) for i in range(5, 13)]  # batch 2 dies, 3 waits
    for h in more:
        assert isinstance(h.exception(timeout=WAIT), SystemExit)
    with pytest.raises(ProducerClosedError):
        producer.send(b"after")
    producer.close()
    assert values(log) == [b"%d" % i for i in range(5)]


def test_threads_sending_to_a_topic_keep_each_keys_order(tmp_path: Path) -> None:
    threads, per_thread = 4, 1500
    with logstore.Broker.open(tmp_path, LogConfig(fsync="never")) as broker:
        broker.create_topic("t", 3)
        sent: list[list[logstore.SendHandle[tuple[int, int]]]] = [[] for _ in range(threads)]
        with broker.producer("t", linger_ms=1, batch_records=100) as producer:

            def run(t: int) -> None:
                sent[t] = [
                    producer.send(b"%d-%d" % (t, i), key=b"key-%d-%d" % (t, i % 5))
                    for i in range(per_thread)
                ]

            workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(WAIT)
        topic = broker.topic("t")
        stored = {p: [r.value for r in topic.partition(p).scan()] for p in range(3)}
        assert sum(map(len, stored.values())) == threads * per_thread
        for t, handles in enumerate(sent):
            for k in range(5):  # one key: one partition, offsets in send order
                mine = [h.result() for h in handles[k::5]]
                assert len({p for p, _ in mine}) == 1
                assert [o for _, o in mine] == sorted(o for _, o in mine)
            for i, h in enumerate(handles):
                p, o = h.result()
                assert stored[p][o] == b"%d-%d" % (t, i)
