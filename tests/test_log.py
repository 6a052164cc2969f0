"""Example-based tests of the ``logstore.Log`` contract (API.md, "A single partition")."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import struct
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore import Message, Record

from .conftest import FakeClock, OpenLog, run_python

NOW = FakeClock().now_ms  # the fake clock's start time


def segment_files(directory: Path) -> list[str]:
    """Every file named after a base offset (leftovers such as ``.deleted`` included)."""
    return sorted(p.name for p in directory.iterdir() if p.name[:20].isdigit())


def names_for(*bases: int) -> list[str]:
    return sorted(f"{b:020d}{suffix}" for b in bases for suffix in (".log", ".index", ".timeindex"))


# ---------------------------------------------------------------- appending


def test_append_returns_consecutive_offsets(open_log: OpenLog) -> None:
    log = open_log()
    assert [log.append(b"v%d" % i) for i in range(5)] == [0, 1, 2, 3, 4]
    assert log.end_offset == 5
    assert log.start_offset == 0
    assert [r.offset for r in log.read(0)] == [0, 1, 2, 3, 4]


def test_append_many_returns_a_range(open_log: OpenLog) -> None:
    log = open_log()
    assert log.append_many([b"a", b"b", b"c"]) == range(0, 3)
    assert log.append(b"d") == 3
    assert log.append_many([Message(b"e"), b"f"]) == range(4, 6)
    assert log.append_many([]) == range(6, 6)
    assert log.append_many(iter([b"g"])) == range(6, 7)  # any iterable
    assert log.end_offset == 7
    assert [r.value for r in log.read(0)] == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]


def test_timestamps_default_to_the_clock(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log()
    log.append(b"a")
    clock.advance(5)
    log.append_many([b"b", Message(b"c"), Message(b"d", timestamp=42)])
    assert [(r.offset, r.timestamp) for r in log.read(0)] == [
        (0, NOW),
        (1, NOW + 5),
        (2, NOW + 5),
        (3, 42),
    ]


def test_read_at_end_offset_returns_nothing(open_log: OpenLog) -> None:
    log = open_log()
    assert log.read(0) == []
    log.append_many([b"a", b"b"])
    assert log.read(2) == []
    assert log.read(2, max_records=10, max_bytes=10) == []
    assert list(log.scan(2)) == []


def test_read_outside_the_log_raises_offset_out_of_range(open_log: OpenLog) -> None:
    log = open_log(segment_messages=5)
    log.append_many([b"%d" % i for i in range(12)])
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(13)
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(-1)
    log.delete_before(7)
    assert log.start_offset == 7
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(6)
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(0)
    with pytest.raises(logstore.OffsetOutOfRange):
        list(log.scan(6))
    assert [r.offset for r in log.read(7)] == [7, 8, 9, 10, 11]
    assert [r.offset for r in log.scan()] == [7, 8, 9, 10, 11]


def test_read_starts_inside_a_batch_and_honours_max_records(open_log: OpenLog) -> None:
    log = open_log()
    log.append_many([b"%d" % i for i in range(20)])  # one batch
    assert [r.offset for r in log.read(7, max_records=3)] == [7, 8, 9]
    assert [r.offset for r in log.read(7, max_records=0)] == []
    assert [r.offset for r in log.read(18, max_records=5)] == [18, 19]
    # max_bytes smaller than a batch: still at least one record, from the offset on
    got = [r.offset for r in log.read(7, max_bytes=1)]
    assert got
    assert got == list(range(7, 7 + len(got)))


def test_max_bytes_stops_at_batch_boundaries(open_log: OpenLog) -> None:
    log = open_log()
    for i in range(10):
        log.append(b"x" * 100, key=b"%d" % i)  # ten batches of equal size
    batch = log.segments[0].size_bytes // 10
    assert [r.offset for r in log.read(0, max_bytes=batch)] == [0]
    assert [r.offset for r in log.read(0, max_bytes=3 * batch)] == [0, 1, 2]
    assert [r.offset for r in log.read(2, max_bytes=3 * batch + 1)] == [2, 3, 4]
    assert [r.offset for r in log.read(0, max_bytes=10_000)] == list(range(10))


def test_scan_ranges(open_log: OpenLog) -> None:
    log = open_log(segment_messages=4)
    log.append_many([b"%d" % i for i in range(10)])
    assert [r.offset for r in log.scan()] == list(range(10))
    assert [r.offset for r in log.scan(3, 7)] == [3, 4, 5, 6]
    assert [r.offset for r in log.scan(4, 8)] == [4, 5, 6, 7]
    assert [r.offset for r in log.scan(5, 5)] == []
    assert [r.offset for r in log.scan(6, 2)] == []
    assert [r.offset for r in log.scan(8, 1000)] == [8, 9]
    assert [r.offset for r in log.scan(end_offset=3)] == [0, 1, 2]


def test_scan_range_is_fixed_when_it_starts(open_log: OpenLog) -> None:
    log = open_log()
    log.append_many([b"a", b"b"])
    it = log.scan()
    log.append(b"c")
    assert [r.value for r in it] == [b"a", b"b"]


def test_offset_for_timestamp(open_log: OpenLog) -> None:
    log = open_log(segment_messages=3, index_interval_bytes=0)
    stamps = [100, 300, 200, 300, 500, 400, 50, 600]
    log.append_many([Message(b"%d" % i, timestamp=t) for i, t in enumerate(stamps)])
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(100) == 0
    assert log.offset_for_timestamp(101) == 1
    assert log.offset_for_timestamp(200) == 1
    assert log.offset_for_timestamp(301) == 4
    assert log.offset_for_timestamp(450) == 4
    assert log.offset_for_timestamp(501) == 7
    assert log.offset_for_timestamp(600) == 7
    assert log.offset_for_timestamp(601) is None
    log.delete_before(5)
    assert log.offset_for_timestamp(0) == 5
    assert log.offset_for_timestamp(300) == 5
    assert log.offset_for_timestamp(401) == 7


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda log: log.append(1), id="value-int"),
        pytest.param(lambda log: log.append("text"), id="value-str"),
        pytest.param(lambda log: log.append(b"v", key="k"), id="key-str"),
        pytest.param(lambda log: log.append(b"v", key=7), id="key-int"),
        pytest.param(lambda log: log.append(b"v", headers=[("k",)]), id="header-1-tuple"),
        pytest.param(lambda log: log.append(b"v", headers=[("k", b"v", b"w")]), id="header-3"),
        pytest.param(lambda log: log.append(b"v", headers=[(b"k", b"v")]), id="header-key-bytes"),
        pytest.param(lambda log: log.append(b"v", headers=[("k", "v")]), id="header-value-str"),
        pytest.param(lambda log: log.append(b"v", headers=["kv"]), id="header-not-pair"),
        pytest.param(lambda log: log.append(b"v", headers=5), id="headers-int"),
        pytest.param(lambda log: log.append(b"v", timestamp=1.5), id="timestamp-float"),
        pytest.param(lambda log: log.append(b"v", timestamp="1"), id="timestamp-str"),
        pytest.param(lambda log: log.append_many("abc"), id="many-str"),
        pytest.param(lambda log: log.append_many(b"abc"), id="many-bytes"),
        pytest.param(lambda log: log.append_many([b"ok", "abc"]), id="many-item-str"),
        pytest.param(lambda log: log.append_many([b"ok", 1]), id="many-item-int"),
        pytest.param(lambda log: log.append_many([(b"v", b"k")]), id="many-item-plain-tuple"),
        pytest.param(lambda log: log.append_many([Message(b"v", key="k")]), id="many-key-str"),
        pytest.param(lambda log: log.append_many([Message(3)]), id="many-value-int"),
        pytest.param(lambda log: log.read("0"), id="read-offset-str"),
    ],
)
def test_wrong_types_raise_type_error_and_write_nothing(open_log: OpenLog, call) -> None:
    log = open_log()
    log.append(b"first")
    with pytest.raises(TypeError):
        call(log)
    assert log.end_offset == 1
    assert log.read(0) == [Record(0, NOW, None, b"first", ())]
    assert log.append(b"next") == 1


def test_record_too_large(open_log: OpenLog) -> None:
    log = open_log(max_message_bytes=1000)
    log.append(b"small")
    size = log.size_bytes
    with pytest.raises(logstore.RecordTooLarge):
        log.append(b"x" * 2000)
    with pytest.raises(logstore.RecordTooLarge):
        log.append_many([Message(b"x" * 2000, key=b"k")])
    assert log.end_offset == 1
    assert log.size_bytes == size
    assert os.path.getsize(log.segments[-1].path) == size
    assert [r.value for r in log.read(0)] == [b"small"]
    assert log.append(b"after") == 1
    # Many records that together exceed max_message_bytes are split into batches.
    assert log.append_many([b"y" * 300] * 10) == range(2, 12)
    assert [r.offset for r in log.scan()] == list(range(12))


def test_record_too_large_is_measured_after_compression(open_log: OpenLog) -> None:
    log = open_log(max_message_bytes=1000, compression="gzip")
    assert log.append(b"a" * 5000) == 0  # 5000 bytes compress far below 1000
    assert log.read(0)[0].value == b"a" * 5000
    with pytest.raises(logstore.RecordTooLarge):
        log.append(random.Random(1).randbytes(2000))  # incompressible
    assert log.end_offset == 1


def test_record_larger_than_a_segment_is_too_large(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=500)
    with pytest.raises(logstore.RecordTooLarge):
        log.append(b"x" * 600)
    assert log.end_offset == 0
    assert log.size_bytes == 0


def test_too_large_record_in_append_many_writes_nothing(open_log: OpenLog) -> None:
    """A call that raises RecordTooLarge must not leave some of its records behind.

    The caller gets no range back, so it cannot know which offsets were used;
    ``TypeError`` and ``InvalidRecordError`` already reject the whole call.
    """
    log = open_log(max_message_bytes=1000)
    with pytest.raises(logstore.RecordTooLarge):
        log.append_many([b"ok", b"x" * 2000])
    assert log.end_offset == 0
    assert log.read(0) == []
    assert log.size_bytes == 0


def test_compacted_log_rejects_records_without_a_key(open_log: OpenLog) -> None:
    log = open_log(cleanup_policy="compact")
    with pytest.raises(logstore.InvalidRecordError):
        log.append(b"v")
    with pytest.raises(logstore.InvalidRecordError):
        log.append_many([b"v"])
    with pytest.raises(logstore.InvalidRecordError):
        log.append_many([Message(b"v", key=b"k"), Message(b"v")])
    assert log.end_offset == 0
    assert log.append(b"v", key=b"k") == 0
    assert log.append(None, key=b"k") == 1  # a tombstone has a key
    assert log.read(0) == [Record(0, NOW, b"k", b"v", ()), Record(1, NOW, b"k", None, ())]


def test_compact_delete_policy_also_needs_keys(open_log: OpenLog) -> None:
    log = open_log(cleanup_policy="compact,delete")
    with pytest.raises(logstore.InvalidRecordError):
        log.append(b"v")
    assert log.end_offset == 0


def test_no_timestamp_records_after_a_roll(open_log: OpenLog) -> None:
    """-1 ("no timestamp") is accepted by append; a second such batch in a fresh
    segment must not crash when an index entry is due."""
    log = open_log(index_interval_bytes=0)
    log.append(b"z", timestamp=5)
    log.roll()
    assert log.append(b"a", timestamp=-1) == 1
    assert log.append(b"b", timestamp=-1) == 2
    assert log.append(b"c", timestamp=7) == 3
    assert log.read(0) == [
        Record(0, 5, None, b"z", ()),
        Record(1, -1, None, b"a", ()),
        Record(2, -1, None, b"b", ()),
        Record(3, 7, None, b"c", ()),
    ]


# ---------------------------------------------------------------- closing and locking


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda log: log.append(b"v"), id="append"),
        pytest.param(lambda log: log.append_many([b"v"]), id="append_many"),
        pytest.param(lambda log: log.read(0), id="read"),
        pytest.param(lambda log: list(log.scan()), id="scan"),
        pytest.param(lambda log: log.flush(), id="flush"),
        pytest.param(lambda log: log.offset_for_timestamp(0), id="offset_for_timestamp"),
        pytest.param(lambda log: log.truncate(0), id="truncate"),
        pytest.param(lambda log: log.delete_before(1), id="delete_before"),
        pytest.param(lambda log: log.roll(), id="roll"),
    ],
)
def test_use_after_close_raises_log_closed(open_log: OpenLog, call) -> None:
    log = open_log()
    log.append_many([b"a", b"b"])
    log.close()
    with pytest.raises(logstore.LogClosedError):
        call(log)


def test_close_is_idempotent_and_context_manager_closes(log_dir: Path) -> None:
    config = logstore.LogConfig(fsync="never")
    with logstore.Log.open(log_dir, config) as log:
        log.append(b"a")
    log.close()
    log.close()
    with pytest.raises(logstore.LogClosedError):
        log.append(b"b")
    with logstore.Log.open(log_dir, config) as again:
        assert [r.value for r in again.read(0)] == [b"a"]


def test_second_open_in_the_same_process_is_locked(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log()
    log.append(b"a")
    with pytest.raises(logstore.LogLockedError):
        logstore.Log.open(log_dir, logstore.LogConfig(fsync="never"))
    # The failed open did not disturb the owner.
    assert log.append(b"b") == 1
    log.close()
    with logstore.Log.open(log_dir, logstore.LogConfig(fsync="never")) as again:
        assert [r.value for r in again.read(0)] == [b"a", b"b"]


LOCK_PROBE = """
    import sys
    import logstore
    try:
        log = logstore.Log.open(sys.argv[1], logstore.LogConfig(fsync="never"))
    except Exception as exc:
        print(type(exc).__name__)
    else:
        print("opened", log.end_offset)
        log.close()
"""


def test_second_open_from_another_process_is_locked(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log()
    log.append(b"a")
    probe = run_python(LOCK_PROBE, str(log_dir))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "LogLockedError"
    log.close()
    probe = run_python(LOCK_PROBE, str(log_dir))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "opened 1"


# ---------------------------------------------------------------- flushing


def test_flushed_offset_reaches_end_offset_after_flush(open_log: OpenLog) -> None:
    log = open_log(fsync="never")
    log.append_many([b"a", b"b", b"c"])
    assert log.flushed_offset <= log.end_offset
    log.flush()
    assert log.flushed_offset == log.end_offset == 3


def test_fsync_always_flushes_every_append(open_log: OpenLog) -> None:
    log = open_log(fsync="always", segment_messages=2)
    for i in range(5):
        log.append(b"%d" % i)
        assert log.flushed_offset == log.end_offset == i + 1
    log.append_many([b"x", b"y", b"z"])
    assert log.flushed_offset == log.end_offset == 8


# ---------------------------------------------------------------- segments and rolling


def test_segment_files_are_named_by_base_offset(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log()
    log.append_many([b"a", b"b", b"c"])
    log.roll()
    log.append(b"d")
    log.roll()
    assert [(s.base_offset, s.next_offset, s.records) for s in log.segments] == [
        (0, 3, 3),
        (3, 4, 1),
        (4, 4, 0),
    ]
    assert [s.path for s in log.segments] == [
        str(log_dir / "00000000000000000000.log"),
        str(log_dir / "00000000000000000003.log"),
        str(log_dir / "00000000000000000004.log"),
    ]
    assert segment_files(log_dir) == names_for(0, 3, 4)
    assert log.size_bytes == sum(os.path.getsize(s.path) for s in log.segments)
    log.roll()  # the active segment is empty: no new segment
    assert len(log.segments) == 3


def test_roll_by_segment_bytes(open_log: OpenLog, log_dir: Path) -> None:
    probe = open_log(path=log_dir.parent / "probe")
    probe.append(b"x" * 100, timestamp=NOW)
    batch = probe.segments[0].size_bytes  # one record's batch

    log = open_log(segment_bytes=3 * batch + batch - 1)
    for i in range(10):
        assert log.append(b"x" * 100, timestamp=NOW) == i
    assert [(s.base_offset, s.records, s.size_bytes) for s in log.segments] == [
        (0, 3, 3 * batch),
        (3, 3, 3 * batch),
        (6, 3, 3 * batch),
        (9, 1, batch),
    ]


def test_roll_by_segment_messages_in_one_call(open_log: OpenLog) -> None:
    log = open_log(segment_messages=10)
    assert log.append_many([b"%d" % i for i in range(35)]) == range(35)
    assert [(s.base_offset, s.next_offset, s.records) for s in log.segments] == [
        (0, 10, 10),
        (10, 20, 10),
        (20, 30, 10),
        (30, 35, 5),
    ]
    assert [r.offset for r in log.scan()] == list(range(35))


def test_roll_by_segment_messages_across_calls(open_log: OpenLog) -> None:
    log = open_log(segment_messages=10)
    log.append_many([b"a"] * 4)
    log.append_many([b"b"] * 9)
    log.append(b"c")
    log.append_many([b"d"] * 13)
    assert [s.records for s in log.segments] == [10, 10, 7]
    assert [s.base_offset for s in log.segments] == [0, 10, 20]


def test_segment_messages_still_holds_after_a_roll_for_another_reason(open_log: OpenLog) -> None:
    # The first batch of the call rolls by age, so the new segment starts empty:
    # it must still take no more than segment_messages records.
    log = open_log(segment_messages=3, segment_ms=1000)
    log.append(b"a", timestamp=NOW - 5000)
    assert log.append_many([b"b", b"c", b"d", b"e", b"f"]) == range(1, 6)
    assert [(s.base_offset, s.records) for s in log.segments] == [(0, 1), (1, 3), (4, 2)]


def test_segment_messages_still_holds_after_a_roll_by_size(
    open_log: OpenLog, log_dir: Path
) -> None:
    probe = open_log(path=log_dir.parent / "probe")
    probe.append(b"x" * 100, timestamp=NOW)
    batch = probe.segments[0].size_bytes
    log = open_log(segment_messages=4, segment_bytes=batch + 50)
    log.append(b"x" * 100, timestamp=NOW)  # the segment is now too full for another batch
    assert log.append_many([Message(b"y", timestamp=NOW)] * 8) == range(1, 9)
    assert [(s.base_offset, s.records) for s in log.segments] == [(0, 1), (1, 4), (5, 4)]


def test_roll_by_segment_ms(open_log: OpenLog) -> None:
    log = open_log(segment_ms=1000)
    t = NOW
    log.append(b"0", timestamp=t)
    log.append(b"1", timestamp=t + 1000)  # exactly segment_ms past: same segment
    log.append(b"2", timestamp=t + 1001)  # more than segment_ms past: new segment
    log.append(b"3", timestamp=t + 500)  # older than the segment's first: same
    log.append(b"4", timestamp=t + 2001)
    log.append(b"5", timestamp=t + 2002)
    assert [(s.base_offset, s.records) for s in log.segments] == [(0, 2), (2, 3), (5, 1)]
    assert [s.first_timestamp for s in log.segments] == [t, t + 1001, t + 2002]
    assert [s.max_timestamp for s in log.segments] == [t + 1000, t + 2001, t + 2002]


def test_roll_when_the_offset_index_is_full(open_log: OpenLog, log_dir: Path) -> None:
    # 40 bytes hold 5 offset-index entries; with index_interval_bytes=0 every batch
    # but a segment's first gets one, so a segment takes 6 single-record batches.
    # Equal timestamps keep the time index (3 slots) from filling first.
    log = open_log(max_index_bytes=40, index_interval_bytes=0)
    for i in range(20):
        assert log.append(b"v%02d" % i, timestamp=NOW) == i
    assert [(s.base_offset, s.records) for s in log.segments] == [(0, 6), (6, 6), (12, 6), (18, 2)]
    for base in (0, 6, 12):
        assert (log_dir / f"{base:020d}.index").stat().st_size == 40
    for offset in range(20):
        assert [r.value for r in log.read(offset, max_records=1)] == [b"v%02d" % offset]
    log.close()
    log = open_log()
    assert [r.value for r in log.scan(5, 13)] == [b"v%02d" % i for i in range(5, 13)]


def test_roll_when_the_time_index_is_full(open_log: OpenLog) -> None:
    # 40 bytes: 3 time-index slots, one kept for the entry written on roll, so a
    # segment takes 3 batches of rising timestamps.
    log = open_log(max_index_bytes=40, index_interval_bytes=0)
    for i in range(8):
        log.append(b"v", timestamp=NOW + i)
    assert [(s.base_offset, s.records) for s in log.segments] == [(0, 3), (3, 3), (6, 2)]
    assert log.offset_for_timestamp(NOW + 4) == 4


# ---------------------------------------------------------------- values round-trip


def test_headers_null_and_empty_values_round_trip(open_log: OpenLog) -> None:
    log = open_log()
    headers = [("a", b"1"), ("a", None), ("", b""), ("ünï", b"\x00\xff"), ("a", b"1")]
    log.append(b"", key=b"", headers=headers, timestamp=0)
    log.append(None, key=None)
    log.append(None, key=b"k", headers=[("h", None)])
    log.append_many(
        [
            Message(bytearray(b"ba"), key=memoryview(b"mv"), headers=(("x", bytearray(b"y")),)),
            Message(b"\x00" * 3, key=b"\x00"),
        ]
    )
    want = [
        Record(0, 0, b"", b"", tuple(headers)),
        Record(1, NOW, None, None, ()),
        Record(2, NOW, b"k", None, (("h", None),)),
        Record(3, NOW, b"mv", b"ba", (("x", b"y"),)),
        Record(4, NOW, b"\x00", b"\x00\x00\x00", ()),
    ]
    assert log.read(0) == want
    got = log.read(3)[0]
    assert type(got.key) is bytes
    assert type(got.value) is bytes
    assert type(got.headers) is tuple
    assert type(got.headers[0][1]) is bytes
    log.close()
    log = open_log()
    assert list(log.scan()) == want


CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd", "lz4", "snappy"])
def test_every_codec_round_trips(open_log: OpenLog, codec: str) -> None:
    rng = random.Random(codec)
    messages = [
        Message(b"a" * 1000, key=b"compressible"),
        Message(rng.randbytes(500), key=None, headers=[("h", rng.randbytes(20))]),
        Message(None, key=b"tombstone", timestamp=NOW - 10),
        Message(b""),
    ] + [Message(b"record %d " % i * 20, key=b"%d" % (i % 3)) for i in range(200)]
    log = open_log(compression=codec, segment_bytes=20_000)
    assert log.append_many(messages) == range(len(messages))
    log.append(b"single", key=b"k")
    want = [
        Record(i, NOW if m.timestamp is None else m.timestamp, m.key, m.value, tuple(m.headers))
        for i, m in enumerate([*messages, Message(b"single", key=b"k")])
    ]
    assert log.read(0) == want
    assert log.read(150, max_records=2) == want[150:152]
    first = Path(log.segments[0].path).read_bytes()
    (attributes,) = struct.unpack_from(">h", first, 21)
    assert attributes & 0x07 == CODEC_IDS[codec]
    if codec != "none":
        assert log.size_bytes < sum(len(r.value or b"") for r in want) // 2
    log.close()
    log = open_log(compression="none")  # the stored codec, not the config, decides
    assert list(log.scan()) == want


# ---------------------------------------------------------------- threads


def test_concurrent_appends_from_eight_threads(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=8192)
    per_thread = 200
    returned: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(tid: int) -> None:
        try:
            barrier.wait()
            mine = []
            for i in range(per_thread):
                mine.append(log.append(b"%d" % i, key=b"thread-%d" % tid))
            returned[tid] = mine
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(tid,)) for tid in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert log.end_offset == 8 * per_thread
    records = list(log.scan())
    assert [r.offset for r in records] == list(range(8 * per_thread))
    all_returned = sorted(o for offsets in returned.values() for o in offsets)
    assert all_returned == list(range(8 * per_thread))
    for tid in range(8):
        key = b"thread-%d" % tid
        mine = [r for r in records if r.key == key]
        assert [r.value for r in mine] == [b"%d" % i for i in range(per_thread)]
        assert [r.offset for r in mine] == returned[tid]


def test_concurrent_readers_never_see_partial_records(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=6000, index_interval_bytes=100)
    total = 3000
    done = threading.Event()
    errors: list[BaseException] = []

    def value_for(offset: int) -> bytes:
        return b"%08d" % offset * (1 + offset % 7)

    def check(records: list[Record], start: int) -> None:
        for expected_offset, r in enumerate(records, start):
            assert r.offset == expected_offset, (r.offset, expected_offset)
            assert r.key == b"k%d" % r.offset
            assert r.value == value_for(r.offset)
            assert r.headers == (("o", b"%d" % r.offset),)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not done.is_set():
                end = log.end_offset
                records = list(log.scan())
                assert len(records) >= end
                check(records, 0)
                start = rng.randrange(0, end + 1)
                got = log.read(start, max_records=rng.choice([None, 1, 50]))
                check(got, start)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
    for t in readers:
        t.start()
    try:
        offset = 0
        rng = random.Random(0)
        while offset < total:
            n = rng.choice([1, 1, 3, 17])
            batch = [
                Message(value_for(o), key=b"k%d" % o, headers=[("o", b"%d" % o)])
                for o in range(offset, offset + n)
            ]
            assert log.append_many(batch) == range(offset, offset + n)
            offset += n
    finally:
        done.set()
        for t in readers:
            t.join()
    assert errors == []
    check(list(log.scan()), 0)


def test_scan_started_before_delete_before_finishes_or_reports_out_of_range(
    open_log: OpenLog,
) -> None:
    """A scan's range is fixed when it starts. If delete_before then removes its
    segments, the scan may still deliver them or raise OffsetOutOfRange, but an
    OSError about a vanished file is not part of the contract."""
    log = open_log(segment_messages=20)
    log.append_many([b"%d" % i for i in range(200)])
    it = log.scan()
    assert next(it).offset == 0
    log.delete_before(150)
    try:
        rest = [(r.offset, r.value) for r in it]
    except logstore.OffsetOutOfRange:
        return
    assert rest == [(i, b"%d" % i) for i in range(1, 200)]


def test_reads_racing_delete_before(open_log: OpenLog) -> None:
    """Readers racing a writer and delete_before get the right records or
    OffsetOutOfRange (their offset fell below the start), never an OSError.
    The scanning reader yields the GIL after each record, as a consumer doing
    work would, so deletions land in the middle of its scans."""
    log = open_log(segment_messages=10)
    stop = threading.Event()
    unexpected: list[str] = []
    delivered = [0]

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 1_000_000:
            log.append_many([b"%d" % o for o in range(i, i + 5)])
            i += 5

    def deleter() -> None:
        while not stop.is_set():
            end = log.end_offset
            if end > 50:
                log.delete_before(end - 50)

    def reader(slow: bool) -> None:
        while not stop.is_set():
            try:
                start = log.start_offset
                records = log.read(start, max_records=40) if not slow else log.scan(start)
                for r in records:
                    if r.value != b"%d" % r.offset:
                        unexpected.append(f"wrong record {r}")
                    delivered[0] += 1
                    if slow:
                        time.sleep(0)
            except logstore.OffsetOutOfRange:
                pass
            except Exception as exc:
                unexpected.append(f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=writer),
        threading.Thread(target=deleter),
        threading.Thread(target=reader, args=(True,)),
        threading.Thread(target=reader, args=(False,)),
    ]
    for t in threads:
        t.start()
    stop.wait(2)
    stop.set()
    for t in threads:
        t.join()
    assert unexpected[:3] == []
    assert delivered[0] > 0
    assert log.end_offset > 50


# ---------------------------------------------------------------- truncate and delete_before


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_truncate_inside_a_batch(open_log: OpenLog, codec: str) -> None:
    log = open_log(compression=codec)
    log.append_many([Message(b"v%d" % i, key=b"k%d" % i, timestamp=100 + i) for i in range(10)])
    log.append_many([b"second batch"] * 3)
    log.truncate(4)
    assert log.end_offset == 4
    want = [Record(i, 100 + i, b"k%d" % i, b"v%d" % i, ()) for i in range(4)]
    assert log.read(0) == want
    assert log.read(2) == want[2:]
    assert log.read(4) == []
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(5)
    assert log.segments[-1].records == 4
    assert log.segments[-1].max_timestamp == 103
    assert log.offset_for_timestamp(104) is None
    assert log.append(b"new", timestamp=500) == 4
    assert log.append_many([b"x", b"y"]) == range(5, 7)
    assert [r.value for r in log.scan()] == [b"v0", b"v1", b"v2", b"v3", b"new", b"x", b"y"]
    log.close()
    log = open_log()
    assert log.end_offset == 7
    assert log.read(0)[:4] == want
    assert [r.value for r in log.read(4)] == [b"new", b"x", b"y"]


def test_truncate_across_segments(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(segment_messages=5)
    log.append_many([b"%d" % i for i in range(17)])
    assert [s.base_offset for s in log.segments] == [0, 5, 10, 15]
    log.truncate(7)
    assert [(s.base_offset, s.next_offset) for s in log.segments] == [(0, 5), (5, 7)]
    assert segment_files(log_dir) == names_for(0, 5)
    assert log.append_many([b"a", b"b", b"c", b"d"]) == range(7, 11)
    assert [(s.base_offset, s.records) for s in log.segments] == [(0, 5), (5, 5), (10, 1)]
    assert [r.value for r in log.scan(5)] == [b"5", b"6", b"a", b"b", b"c", b"d"]
    log.truncate(100)  # at or past the end: nothing happens
    assert log.end_offset == 11
    log.truncate(0)
    assert log.end_offset == 0
    assert log.read(0) == []
    assert log.append(b"again") == 0


def test_truncate_removes_the_newest_segment_first(
    open_log: OpenLog, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power loss part-way through a truncation leaves a log cut at a segment boundary.

    Directory entries change in order, so renaming the newest segment first
    means any prefix of the renames is a shorter, gap-free log (found by the
    crash-state harness: oldest first left segments 0 and 15 with 5..14 gone).
    """
    log = open_log(segment_messages=5)
    log.append_many([b"%d" % i for i in range(22)])
    renamed: list[str] = []
    real_rename = os.rename

    def recording_rename(src: str, dst: str) -> None:
        if dst.endswith(".deleted"):
            renamed.append(os.path.basename(src))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", recording_rename)
    log.truncate(7)
    monkeypatch.undo()
    assert [name.split(".")[0][-2:] for name in renamed if name.endswith(".log")] == [
        "20",
        "15",
        "10",
    ]
    assert [(s.base_offset, s.next_offset) for s in log.segments] == [(0, 5), (5, 7)]


def test_truncate_below_start_offset_raises(open_log: OpenLog) -> None:
    log = open_log(segment_messages=5)
    log.append_many([b"%d" % i for i in range(12)])
    log.delete_before(6)
    with pytest.raises(logstore.OffsetOutOfRange):
        log.truncate(5)
    assert log.end_offset == 12
    log.truncate(6)
    assert log.end_offset == 6
    assert log.start_offset == 6
    assert log.append(b"x") == 6
    assert [r.value for r in log.scan()] == [b"x"]


def test_delete_before_deletes_whole_segments(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(segment_messages=5)
    log.append_many([b"%d" % i for i in range(23)])
    assert segment_files(log_dir) == names_for(0, 5, 10, 15, 20)
    log.delete_before(12)
    assert log.start_offset == 12
    assert log.end_offset == 23
    assert segment_files(log_dir) == names_for(10, 15, 20)
    assert [s.base_offset for s in log.segments] == [10, 15, 20]
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(11)
    assert [r.value for r in log.read(12)] == [b"%d" % i for i in range(12, 23)]
    assert [r.offset for r in log.scan()] == list(range(12, 23))
    assert log.offset_for_timestamp(0) == 12
    log.delete_before(3)  # below the start: nothing changes
    assert log.start_offset == 12
    with pytest.raises(logstore.OffsetOutOfRange):
        log.delete_before(24)
    log.delete_before(15)  # exactly a segment's base
    assert segment_files(log_dir) == names_for(15, 20)
    log.close()

    log = open_log()
    assert (log.start_offset, log.end_offset) == (15, 23)
    assert segment_files(log_dir) == names_for(15, 20)
    assert [r.offset for r in log.scan()] == list(range(15, 23))
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(14)
    assert log.append(b"23") == 23


def test_delete_before_inside_a_segment_survives_reopen(open_log: OpenLog) -> None:
    log = open_log(segment_messages=5)
    log.append_many([b"%d" % i for i in range(8)])
    log.delete_before(7)
    log.close()
    log = open_log()
    assert (log.start_offset, log.end_offset) == (7, 8)
    assert [r.value for r in log.scan()] == [b"7"]
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(6)


def test_delete_before_end_offset_empties_the_log(open_log: OpenLog) -> None:
    log = open_log(segment_messages=5)
    log.append_many([b"%d" % i for i in range(12)])
    log.delete_before(12)
    assert (log.start_offset, log.end_offset) == (12, 12)
    assert log.read(12) == []
    assert list(log.scan()) == []
    assert log.offset_for_timestamp(0) is None
    assert log.append(b"12") == 12
    log.close()
    log = open_log()
    assert (log.start_offset, log.end_offset) == (12, 13)
    assert [r.value for r in log.scan()] == [b"12"]


# ---------------------------------------------------------------- memory

SCAN_MEMORY_PROBE = """
    import resource, sys
    import logstore
    log = logstore.Log.open(sys.argv[1], logstore.LogConfig(fsync="never"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = 0
    last = -1
    for record in log.scan():
        assert record.offset == last + 1
        last = record.offset
        count += 1
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    log.close()
    print(count, last, before, after)
"""


def test_scan_memory_stays_flat(open_log: OpenLog, log_dir: Path) -> None:
    total, per_call = 600_000, 5_000
    log = open_log(segment_bytes=16 << 20)
    value = b"v" * 100
    for _ in range(total // per_call):
        log.append_many([value] * per_call)
    assert log.end_offset == total
    assert log.size_bytes > 60_000_000
    log.close()
    probe = run_python(SCAN_MEMORY_PROBE, str(log_dir), timeout=240)
    assert probe.returncode == 0, probe.stderr
    count, last, before_kib, after_kib = map(int, probe.stdout.split())
    assert (count, last) == (total, total - 1)
    assert (after_kib - before_kib) * 1024 < 50_000_000


# ---------------------------------------------------------------- open files


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _hundred_segments(log_dir: Path) -> None:
    with logstore.Log.open(log_dir, logstore.LogConfig(fsync="never")) as log:
        for i in range(100):
            log.append(b"v%03d" % i)
            log.roll()
        assert len(log.segments) == 101


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_standalone_log_bounds_its_open_files(log_dir: Path) -> None:
    _hundred_segments(log_dir)
    before = _open_fds()
    log = logstore.Log.open(log_dir, logstore.LogConfig(fsync="never"), max_open_files=8)
    try:
        assert [r.value for r in log.scan()] == [b"v%03d" % i for i in range(100)]
        assert _open_fds() - before <= 8 + 1  # the handles, plus the lock file
        # reads after eviction reopen the files and still give the right records
        for offset in (0, 57, 3, 99, 0):
            assert [(r.offset, r.value) for r in log.read(offset, max_records=1)] == [
                (offset, b"v%03d" % offset)
            ]
        assert log.offset_for_timestamp(0) == 0
        assert log.append(b"new") == 100
        assert [r.value for r in log.scan(98)] == [b"v098", b"v099", b"new"]
        assert _open_fds() - before <= 8 + 1
    finally:
        log.close()
    assert _open_fds() == before


def test_standalone_log_is_bounded_by_default(log_dir: Path) -> None:
    _hundred_segments(log_dir)
    with logstore.Log.open(log_dir, logstore.LogConfig(fsync="never")) as log:
        assert [r.offset for r in log.scan()] == list(range(100))
        handles = log._local.segments._handles
        assert handles is not None and handles.limit == 1024  # Broker.open's default
        assert len(handles) == 100  # each sealed segment read counts (the empty active: unopened)


def test_open_records_its_config_for_tools(log_dir: Path) -> None:
    config = logstore.LogConfig(
        fsync="never", cleanup_policy="compact", min_compaction_lag_ms=5000, segment_bytes=4096
    )
    assert logstore.Log.recorded_config(log_dir) is None  # nothing there yet
    with logstore.Log.open(log_dir, config):
        pass
    record = log_dir / "logstore-config.json"
    assert logstore.Log.recorded_config(log_dir) == config
    assert json.loads(record.read_bytes())["config"]["cleanup_policy"] == "compact"
    inode = record.stat().st_ino
    with logstore.Log.open(log_dir, config):  # unchanged: not written again
        pass
    assert record.stat().st_ino == inode
    changed = dataclasses.replace(config, cleanup_policy="delete", min_compaction_lag_ms=0)
    with logstore.Log.open(log_dir, changed):
        pass
    assert record.stat().st_ino != inode
    assert logstore.Log.recorded_config(log_dir) == changed
    assert not (log_dir / "logstore-config.json.tmp").exists()


def test_recorded_config_leaves_out_the_archive_hook(log_dir: Path) -> None:
    config = logstore.LogConfig(fsync="never", archive=lambda paths: None)
    with logstore.Log.open(log_dir, config):
        pass
    assert logstore.Log.recorded_config(log_dir) == dataclasses.replace(config, archive=None)


def test_record_config_false_records_nothing(log_dir: Path) -> None:
    with logstore.Log.open(log_dir, logstore.LogConfig(fsync="never"), record_config=False):
        pass
    assert not (log_dir / "logstore-config.json").exists()
    assert logstore.Log.recorded_config(log_dir) is None


def test_an_unreadable_config_record_names_its_file(log_dir: Path) -> None:
    log_dir.mkdir()
    record = log_dir / "logstore-config.json"
    record.write_text("{not json")
    with pytest.raises(logstore.ConfigError, match=f"^{record}: not a logstore config record"):
        logstore.Log.recorded_config(log_dir)
    record.write_text('{"version": 1, "config": {"cleanup_policy": "shred"}}')
    with pytest.raises(logstore.ConfigError, match=f"^{record}: cleanup_policy must be one of"):
        logstore.Log.recorded_config(log_dir)
    record.write_text('{"version": 1, "config": {"cleanup_policy": "compact", "later": 1}}')
    assert logstore.Log.recorded_config(log_dir) == logstore.LogConfig(cleanup_policy="compact")
