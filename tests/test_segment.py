"""``Segment``: when it rolls (``should_roll``), its settings, its names, and index entries
trusted only as far as its ``.log`` confirms them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import struct
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, Message, Record
from logstore.segment import SegmentSettings

from .conftest import OpenLog
from .helpers import NOW, _append, _segments, names_for, segment_files
from .helpers_damage import MONOTONIC, T0, _shift_time_index, _verify


def test_segment_settings_come_from_the_log_config_and_are_frozen() -> None:
    settings = SegmentSettings.of(logstore.LogConfig(max_index_bytes=4096, index_interval_bytes=77))
    assert settings == SegmentSettings(max_index_bytes=4096, index_interval_bytes=77)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.index_interval_bytes = 1  # type: ignore[misc]


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


def test_a_wrong_time_index_never_gives_a_wrong_answer(
    indexed: tuple[Path, list[Record]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, records = indexed
    path = tmp_path / "log"
    shutil.copytree(source, path)
    tpath = path / f"{0:020d}.timeindex"
    original, entries = _shift_time_index(tpath)
    code, err = _verify(capsys, path)
    assert code == 1
    assert f"{tpath} at byte 0: entry ({entries[0][0]}, {entries[1][1]}) does not match" in err
    with (
        caplog.at_level(logging.WARNING, logger="logstore"),
        logstore.Log.open(path, MONOTONIC) as log,
    ):
        ts, _ = entries[1]
        # The first record at ts: found through a shifted entry it would be a later one.
        assert log.offset_for_timestamp(ts) == next(r.offset for r in records if r.timestamp >= ts)
        assert f"{tpath}: entry ({ts}, {entries[2][1]}) does not match the log" in caplog.text
        for r in records:
            assert log.offset_for_timestamp(r.timestamp) == r.offset
            assert log.offset_for_timestamp(r.timestamp - 5) == r.offset
    assert tpath.read_bytes() == original  # rebuilt as a fresh build writes it
    assert _verify(capsys, path)[0] == 0


def test_a_wrong_offset_index_never_moves_a_read(
    indexed: tuple[Path, list[Record]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, records = indexed
    path = tmp_path / "log"
    shutil.copytree(source, path)
    ipath = path / f"{0:020d}.index"
    original = ipath.read_bytes()
    entries = list(struct.iter_unpack(">ii", original))
    assert len(entries) >= 4
    # Every entry but the last points 7 bytes into its batch: ascending, in the file, wrong.
    wrong = [(rel, pos + 7) for rel, pos in entries[:-1]] + [entries[-1]]
    ipath.write_bytes(b"".join(struct.pack(">ii", *e) for e in wrong))
    code, err = _verify(capsys, path)
    assert code == 1
    assert (
        f"{ipath} at byte 0: entry ({entries[0][0]}, {entries[0][1] + 7}) does not match the log: "
        "no batch starts there"
    ) in err
    with (
        caplog.at_level(logging.WARNING, logger="logstore"),
        logstore.Log.open(path, MONOTONIC) as log,
    ):
        target = entries[1][0]
        assert log.read(target, max_records=3) == records[target : target + 3]
        assert (
            f"{ipath}: entry ({target}, {entries[1][1] + 7}) does not match the log" in caplog.text
        )
        for r in records:
            assert log.read(r.offset, max_records=1) == [r]
    assert ipath.read_bytes() == original
    assert _verify(capsys, path)[0] == 0


def test_a_time_index_entry_that_hides_an_earlier_later_timestamp_is_not_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Timestamps go 100, 300, 200, 400, 500: an entry (200, 2) matches its own batch,
    but the batch before it already reached 300, so it is no running maximum."""
    config = LogConfig(fsync="never", index_interval_bytes=1)
    path = tmp_path / "log"
    with logstore.Log.open(path, config) as log:
        for ts in (100, 300, 200, 400, 500):
            log.append(b"v%d" % ts, timestamp=T0 + ts)
    tpath = path / f"{0:020d}.timeindex"
    original = tpath.read_bytes()
    assert list(struct.iter_unpack(">qi", original)) == [
        (T0 + 300, 1),
        (T0 + 400, 3),
        (T0 + 500, 4),
    ]
    tpath.write_bytes(struct.pack(">qi", T0 + 200, 2) + original[12:])
    code, err = _verify(capsys, path)
    assert code == 1
    assert (
        f"{tpath} at byte 0: entry ({T0 + 200}, 2) does not match the log: the batch ending "
        f"there has largest timestamp {T0 + 200}, the segment {T0 + 300} so far"
    ) in err
    with (
        caplog.at_level(logging.WARNING, logger="logstore"),
        logstore.Log.open(path, config) as log,
    ):
        assert log.offset_for_timestamp(T0 + 250) == 1
        assert f"{tpath}: entry ({T0 + 200}, 2) does not match the log" in caplog.text
        assert [log.offset_for_timestamp(T0 + t) for t in (50, 150, 300, 301, 450, 501)] == [
            0,
            1,
            1,
            3,
            4,
            None,
        ]
    assert tpath.read_bytes() == original


def test_a_wrong_index_entry_never_skips_records(tmp_path: Path) -> None:
    config = LogConfig(index_interval_bytes=200, segment_messages=40, fsync="never")
    with logstore.Log.open(tmp_path, config) as log:
        for i in range(50):
            log.append(b"v%02d" % i + b"." * 60)
        entries = log._local.segments[0].offset_index.as_list()
        index = log._local.segments[0].index_path
    data = bytearray(Path(index).read_bytes())
    # entry 2 now points at a later batch boundary (still increasing, so it loads)
    struct.pack_into(">i", data, 2 * 8 + 4, entries[2][1] + 132)
    Path(index).write_bytes(data)
    with logstore.Log.open(tmp_path, config) as log:
        target = entries[2][0]
        assert [r.offset for r in log.read(target, max_records=4)] == list(
            range(target, target + 4)
        )


def test_should_roll_names_kafkas_reasons_in_order(tmp_path: Path) -> None:
    segs = _segments(tmp_path)
    seg = segs.active
    limits = {"segment_bytes": 1 << 20, "segment_ms": None, "segment_messages": None}
    assert seg.should_roll(1 << 30, 0, 0, **limits) is None  # an empty segment takes anything
    _append(segs, 0, 3, ts=1000)
    assert seg.should_roll(10, 1000, 3, **limits) is None
    assert seg.should_roll(1 << 20, 1000, 3, **limits) == "size"
    assert seg.should_roll(10, 1501, 3, **{**limits, "segment_ms": 500}) == "age"
    assert seg.should_roll(10, 1500, 3, **{**limits, "segment_ms": 500}) is None
    assert seg.should_roll(10, 1000, 3, **{**limits, "segment_messages": 3}) == "messages"
    assert seg.should_roll(10, 1000, 1 << 31, **limits) == "offset"
