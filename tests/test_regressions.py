"""Regression tests for defects found in review: each reproduces one concrete failure."""

from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import logstore
from logstore import CorruptLogError, LogConfig, Message, cleaner

COMPACT = LogConfig(
    cleanup_policy="compact", segment_messages=10, fsync="never", min_cleanable_dirty_ratio=1.0
)


def test_compaction_racing_a_truncate_is_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logstore.Log.open(tmp_path, COMPACT)
    for i in range(25):
        log.append(b"v%d" % i, key=b"k%d" % (i % 3))
    real = cleaner.clean_round

    def racing(*args: object, **kwargs: object) -> cleaner.Round:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        log.truncate(15)  # lands inside the last sealed input while the round runs
        log.append_many([Message(b"NEW15", key=b"k0"), Message(b"NEW16", key=b"k1")])
        return result

    monkeypatch.setattr(cleaner, "clean_round", racing)
    log.compact()
    monkeypatch.setattr(cleaner, "clean_round", real)
    assert [(r.offset, r.value) for r in log.read(15)] == [(15, b"NEW15"), (16, b"NEW16")]
    log.append(b"NEW17", key=b"k2")
    log.close()
    with logstore.Log.open(tmp_path, COMPACT) as reopened:
        assert [(r.offset, r.value) for r in reopened.read(15)] == [
            (15, b"NEW15"),
            (16, b"NEW16"),
            (17, b"NEW17"),
        ]


def _compacted_log(directory: Path) -> list[logstore.Record]:
    with logstore.Log.open(directory, COMPACT) as log:
        for i in range(40):
            log.append(b"v%d" % i, key=b"k%d" % (i % 3))
        log.compact()
        return list(log.scan())


def test_recover_keeps_a_compacted_log(tmp_path: Path) -> None:
    records = _compacted_log(tmp_path / "a")
    actions = logstore.Log.recover(tmp_path / "a", force=True)  # default config: "delete"
    assert [a for a in actions if a.action in ("truncate", "quarantine", "damaged")] == []
    with logstore.Log.open(tmp_path / "a", COMPACT) as log:
        assert list(log.scan()) == records
    records = _compacted_log(tmp_path / "b")
    for name in (".kafka_cleanshutdown", "recovery-point-offset-checkpoint"):
        (tmp_path / "b" / name).unlink()
    logstore.Log.recover(tmp_path / "b")
    with logstore.Log.open(tmp_path / "b", COMPACT) as log:
        assert list(log.scan()) == records
    assert not [n for n in os.listdir(tmp_path / "b") if ".corrupt-" in n]


TRUNCATE_CRASH = r"""
import os, sys, logstore
from logstore import segment, LogConfig
log = logstore.Log.open(sys.argv[1], LogConfig(fsync="always"))
log.append_many([b"r%d" % i for i in range(10)])  # one batch, offsets 0..9, durable
real = segment.Segment.truncate_to
def crash_after(self, *a, **k):
    real(self, *a, **k)
    os._exit(9)  # the process dies right after the cut
segment.Segment.truncate_to = crash_after
log.truncate(5)  # keep offsets 0..4
"""


def test_a_crash_inside_truncate_keeps_the_records_below_it(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", TRUNCATE_CRASH, str(tmp_path)], check=False)
    assert done.returncode == 9
    with logstore.Log.open(tmp_path) as log:
        assert [r.value for r in log.read(0)] == [b"r%d" % i for i in range(5)]
        assert log.end_offset == 5


def test_recovery_below_the_start_offset_starts_over_empty(tmp_path: Path) -> None:
    config = LogConfig(fsync="interval", segment_messages=10)
    log = logstore.Log.open(tmp_path, config)
    for i in range(15):
        log.append(b"x%d" % i)
    log.delete_before(15)
    segment = log.segments[-1].path
    log._abandon()  # a crash: no clean-shutdown marker
    os.truncate(segment, os.path.getsize(segment) - 2 * 70)  # the unflushed tail is lost
    with logstore.Log.open(tmp_path, config) as reopened:
        assert (reopened.start_offset, reopened.end_offset) == (15, 15)
        assert reopened.append(b"new") == 15
        assert [r.value for r in reopened.read(15)] == [b"new"]


def test_compaction_never_rewrites_a_damaged_batch_under_a_fresh_crc(tmp_path: Path) -> None:
    config = dataclasses.replace(COMPACT, segment_messages=4, verify_crc_on_read=False)
    with logstore.Log.open(tmp_path, config) as log:
        log.append_many([Message(b"AAAA", key=b"a"), Message(b"BBBB", key=b"b")])
        log.append_many([Message(b"a2", key=b"a"), Message(b"c", key=b"c")])
        for i in range(6):
            log.append(b"z", key=b"z%d" % i)
        path = log.segments[0].path
    data = bytearray(Path(path).read_bytes())
    data[data.index(b"BBBB")] = ord("X")
    Path(path).write_bytes(data)
    with logstore.Log.open(tmp_path, config) as log, pytest.raises(CorruptLogError):
        log.compact()
    strict = dataclasses.replace(config, verify_crc_on_read=True)
    with (
        logstore.Log.open(tmp_path, strict) as log,
        pytest.raises(CorruptLogError, match="CRC mismatch"),
    ):
        log.read(0)


def test_truncate_makes_the_records_after_it_dirty_again(tmp_path: Path) -> None:
    now = [1_000_000]
    config = dataclasses.replace(COMPACT, segment_messages=5, delete_retention_ms=10)
    with logstore.Log.open(tmp_path, config, clock=lambda: now[0]) as log:
        log.append(b"a-v0", key=b"a")
        for i in range(1, 20):
            log.append(b"x", key=b"f%d" % i)
        log.compact()
        log.truncate(12)
        log.append_many(
            [Message(None, key=b"a")] + [Message(b"y", key=b"g%d" % i) for i in range(20)]
        )
        log.compact()
        now[0] += 1000
        log.compact()
        assert [(r.offset, r.value) for r in log.scan() if r.key == b"a"] == []


def test_a_base_offset_that_goes_back_is_reported_not_served(tmp_path: Path) -> None:
    with logstore.Log.open(tmp_path) as log:
        for i in range(3):
            log.append(b"rec%d" % i)
        path = log.segments[0].path
    data = bytearray(Path(path).read_bytes())
    first = 12 + struct.unpack_from(">i", data, 8)[0]
    struct.pack_into(">q", data, first, 0)  # batch 2's base offset 1 -> 0 (outside the CRC)
    Path(path).write_bytes(data)
    with logstore.Log.open(tmp_path) as log:
        with pytest.raises(CorruptLogError, match="overlaps or goes back") as info:
            log.read(0)
        assert info.value.position == first
        with pytest.raises(CorruptLogError):
            list(log.scan())


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


def test_quarantine_files_are_never_overwritten(tmp_path: Path) -> None:
    for round_ in range(2):
        log = logstore.Log.open(tmp_path, LogConfig(fsync="never"))
        log.append(b"ok")
        size = os.path.getsize(log.segments[0].path)
        path = log.segments[0].path
        log._abandon()
        with open(path, "ab") as f:
            f.write(b"garbage-%d" % round_)
        logstore.Log.open(tmp_path, LogConfig(fsync="never")).close()
        log = logstore.Log.open(tmp_path, LogConfig(fsync="never"))
        log.truncate(round_)  # keep exactly the first record's batch for the next round
        log.close()
        assert size > 0
    names = sorted(n for n in os.listdir(tmp_path) if ".corrupt-" in n)
    assert len(names) == 2
    contents = sorted((tmp_path / n).read_bytes() for n in names)
    assert contents == [b"garbage-0", b"garbage-1"]
