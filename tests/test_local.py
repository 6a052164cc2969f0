"""``LocalLog``: appends, flushes, truncation and ``delete_before``; failed writes and crashes."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import crc32c
import pytest

import logstore
from logstore import CorruptLogError, LogConfig, Message, Record, batch
from logstore import batchfile as batchfile_module
from logstore import index as index_module
from logstore import segment as segment_module
from logstore._fs import Writable
from logstore.local import LocalLog

from .conftest import FakeClock, OpenLog
from .helpers import COMPACT, SEGMENT_0, _batch_ends, _producer_batches, names_for, segment_files


def test_a_damaged_index_found_on_read_is_rebuilt_with_an_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    config = LogConfig(fsync="never", index_interval_bytes=0, segment_messages=3)
    with logstore.Log.open(path, config) as log:
        for i in range(6):
            log.append(b"v%d" % i)
    index = path / f"{0:020d}.index"
    with open(index, "ab") as f:
        f.write(b"\x00\x00\x00")  # not a whole entry: the index is not sane
    with (
        caplog.at_level(logging.INFO, logger="logstore"),
        logstore.Log.open(path, config) as log,
    ):
        assert [r.value for r in log.read(1)] == [b"v%d" % i for i in range(1, 6)]
    rebuilt = [r for r in caplog.records if r.name == "logstore.segment"]
    assert [r.levelno for r in rebuilt] == [logging.INFO]
    assert str(index) in rebuilt[0].getMessage()
    assert rebuilt[0].getMessage().endswith(f"rebuilding the indexes of {SEGMENT_0}")


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


def test_append_batches_assigns_offsets_by_rewriting_only_the_base_offset(
    open_log: OpenLog,
) -> None:
    log = open_log()
    log.append(b"before")
    sent = _producer_batches(3, 4, codec=4)
    assert log.append_batches(sent) == range(1, 13)
    stored = log.read_batches(1, max_bytes=1 << 20)
    assert len(stored) == len(sent)
    # Identical except the 8-byte base offsets, and every CRC still valid.
    position = 0
    for expected_base in (1, 5, 9):
        header = batch.read_header(stored, position)
        assert header.base_offset == expected_base
        assert (
            stored[position + 8 : position + header.size]
            == sent[position + 8 : position + header.size]
        )
        position += header.size
    assert [(r.offset, r.value) for r in log.read(1)] == [
        (1 + 4 * b + i, b"value-%d-%d" % (b, i)) for b in range(3) for i in range(4)
    ]


@pytest.mark.parametrize("sent_base", [-1, 5, -(1 << 63), (1 << 63) - 1])
def test_append_batches_ignores_the_base_offset_a_sender_wrote(
    open_log: OpenLog, sent_base: int
) -> None:
    # The base offset is the log's to assign (outside the CRC): whatever a sender
    # put there, every record is checked and stored, none skipped as "below 0".
    log = open_log()
    sent = bytearray(_producer_batches(2, 3))
    sent[0:8] = sent_base.to_bytes(8, "big", signed=True)
    assert log.append_batches(sent) == range(0, 6)
    assert [(r.offset, r.value) for r in log.read(0)] == [
        (3 * b + i, b"value-%d-%d" % (b, i)) for b in range(2) for i in range(3)
    ]
    # A malformed record under a valid CRC (the sender checksummed garbage) is
    # refused too: with a negative base offset it used to be skipped unchecked.
    bad = bytearray(batch.encode_batch([(b"v", b"k", (), 0)] * 3, base_offset=0))
    bad[batch.HEADER_SIZE] = 0x7E  # first record's length varint: 63 bytes, past the end
    bad[17:21] = crc32c.crc32c(bytes(bad[21:])).to_bytes(4, "big")
    bad[0:8] = sent_base.to_bytes(8, "big", signed=True)
    with pytest.raises(CorruptLogError, match="record"):
        log.append_batches(bad)
    assert log.end_offset == 6


# ---------------------------------------------------------------- write failures
class _DiskFull:
    """Make the n-th write of segment data fail after writing part of it (ENOSPC)."""

    def __init__(self, fail_on: int) -> None:
        self.calls = 0
        self.fail_on = fail_on
        self.real = batchfile_module.write_all

    def __call__(self, fd: int, data: Writable, position: int) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            whole = b"".join(data) if isinstance(data, tuple) else bytes(data)
            self.real(fd, whole[: len(whole) // 2], position)  # a torn write
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(fd, data, position)


def test_write_failure_mid_append_many_keeps_whole_batches_only(
    open_log: OpenLog, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(max_message_bytes=600)
    log.append_many([b"before"] * 3)
    failing = _DiskFull(fail_on=3)
    monkeypatch.setattr(batchfile_module, "write_all", failing)
    with pytest.raises(OSError) as info:
        log.append_many([b"x" * 100] * 20)  # several batches of ~5 records
    assert info.value.errno == errno.ENOSPC
    kept = log.end_offset
    assert kept > 3
    assert [r.value for r in log.scan()] == [b"before"] * 3 + [b"x" * 100] * (kept - 3)
    assert os.path.getsize(log_dir / SEGMENT_0) == _batch_ends(log_dir / SEGMENT_0)[-1]
    monkeypatch.setattr(batchfile_module, "write_all", failing.real)  # space is back
    assert log.append(b"after") == kept
    log.close()
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as reopened:
        assert reopened.end_offset == kept + 1
        assert reopened.read(kept)[0].value == b"after"


def test_a_write_that_cannot_be_undone_closes_the_log(
    open_log: OpenLog, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    log.append(b"kept")
    monkeypatch.setattr(batchfile_module, "write_all", _DiskFull(fail_on=1))

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segment_module.os, "ftruncate", no_truncate)
    with pytest.raises(OSError):
        log.append(b"torn")
    monkeypatch.undo()
    with pytest.raises(logstore.LogClosedError):
        log.append(b"more")
    assert not (log_dir / ".kafka_cleanshutdown").exists()
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as reopened:  # recovery cuts it
        assert [r.value for r in reopened.scan()] == [b"kept"]


# ---------------------------------------------------------------- group commit
def _count_flushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    real, ends = LocalLog.flush, []

    def flush(local: LocalLog) -> None:
        real(local)
        ends.append(local.end_offset)

    monkeypatch.setattr(LocalLog, "flush", flush)
    return ends


def test_append_groups_writes_each_group_as_its_batches_under_one_flush(
    open_log: OpenLog, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(fsync="always", max_message_bytes=300, segment_bytes=400)
    log.append(b"first")
    flushes = _count_flushes(monkeypatch)
    results = log._append_groups(
        [
            [b"a", b"b"],
            [b"x" * 400],  # refused: over max_message_bytes, nothing of it written
            [Message(b"c", key=b"k")],
            ["not bytes"],  # type: ignore[list-item]
            [b"y" * 100] * 3,  # two batches (max_message_bytes), across a roll (segment_bytes)
        ]
    )
    assert results[0] == range(1, 3) and results[2] == range(3, 4) and results[4] == range(4, 7)
    assert isinstance(results[1], logstore.RecordTooLarge)
    assert str(results[1]).startswith(f"{log_dir}: ")  # named as append_many names it
    assert isinstance(results[3], TypeError)
    assert flushes == [7]  # one flush for all of them
    assert log.flushed_offset == 7
    # Records per segment: the 2 batches of group 5 each roll (segment_bytes 400).
    assert [s.records for s in log.segments] == [4, 2, 1]
    assert [r.value for r in log.scan()] == [b"first", b"a", b"b", b"c", *[b"y" * 100] * 3]


def test_append_groups_a_failed_write_keeps_the_groups_before_it_flushed(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(fsync="always")
    flushes = _count_flushes(monkeypatch)
    monkeypatch.setattr(batchfile_module, "write_all", _DiskFull(fail_on=2))
    results = log._append_groups([[b"a"], [b"torn"], [b"not tried"]])
    assert results[0] == range(0, 1)
    assert all(isinstance(r, OSError) and r.errno == errno.ENOSPC for r in results[1:])
    assert results[1] is results[2]
    assert flushes == [1]  # the written group was flushed before it was reported
    assert log.flushed_offset == 1
    assert [r.value for r in log.scan()] == [b"a"]  # the torn write was cut back


def test_append_groups_a_write_that_cannot_be_undone_fails_every_group(
    open_log: OpenLog, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(fsync="always")
    log.append(b"kept")
    monkeypatch.setattr(batchfile_module, "write_all", _DiskFull(fail_on=2))

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segment_module.os, "ftruncate", no_truncate)
    results = log._append_groups([[b"written"], [b"torn"], [b"not tried"]])
    monkeypatch.undo()
    # The log was abandoned before it could fsync group 1: nothing is reported written.
    assert all(isinstance(r, OSError) and r.errno == errno.ENOSPC for r in results)
    with pytest.raises(logstore.LogClosedError):
        log._append_groups([[b"more"]])
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as reopened:  # recovery cuts it
        # Failed is not "not stored": group 1's bytes were written (not known durable).
        assert [r.value for r in reopened.scan()] == [b"kept", b"written"]


def test_a_truncate_that_fails_halfway_closes_the_log(
    open_log: OpenLog, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = LogConfig(fsync="never", index_interval_bytes=100)
    log = open_log(config=config)
    for i in range(40):
        log.append(b"a%02d" % i * 50, timestamp=1000 + i)
    log.close()  # every index entry is in the files now
    log = open_log(config=config)
    records = list(log.scan())
    real = index_module.write_all

    def fail_zeroing(fd: int, data: bytes, position: int) -> None:
        if data and not any(data):
            raise OSError(errno.EIO, "Input/output error")
        real(fd, data, position)

    monkeypatch.setattr(index_module, "write_all", fail_zeroing)
    with pytest.raises(OSError):
        log.truncate(10)  # the .log is cut, then zeroing the index entries fails
    monkeypatch.undo()
    with pytest.raises(logstore.LogClosedError):  # no append on a state that lies
        log.append(b"more")
    assert not (log_dir / ".kafka_cleanshutdown").exists()
    with logstore.Log.open(log_dir, config) as reopened:
        assert list(reopened.scan()) == records[:10]
        for i in range(40):  # batches of another size: stale index entries would show
            reopened.append(b"b%02d" % i * 30, timestamp=5000 + i)
        expected = list(reopened.scan())
    with logstore.Log.open(log_dir, config) as clean:
        for r in expected:
            assert clean.read(r.offset, max_records=1) == [r]
            assert clean.offset_for_timestamp(r.timestamp) == r.offset


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_real_disk_full_on_a_small_tmpfs(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        ballast = mount / "ballast"
        ballast.write_bytes(bytes(64 * 1024))  # freed later: "space is back"
        config = LogConfig(fsync="always", max_index_bytes=4096)
        with logstore.Log.open(mount / "p-0", config) as log:
            acked = 0
            with pytest.raises(OSError) as info:
                while True:
                    log.append(b"y" * 1000)
                    acked += 1
            assert info.value.errno == errno.ENOSPC
            assert log.end_offset == acked
            assert [len(r.value or b"") for r in log.scan()] == [1000] * acked
            ballast.unlink()
            assert log.append(b"z") == acked
        with logstore.Log.open(mount / "p-0", config) as log:
            assert [r.value for r in log.scan()] == [b"y" * 1000] * acked + [b"z"]
    finally:
        subprocess.run(["umount", str(mount)])


# ---------------------------------------------------------------- killed writers
CHILD = """
import sys, logstore
log = logstore.Log.open(sys.argv[1], logstore.LogConfig(segment_bytes=20_000))  # fsync="always"
n = log.end_offset
while True:
    r = log.append_many([b"%d:" % (n + i) + b"x" * (n % 200) for i in range(1 + n % 7)])
    print(r.start, r.stop, flush=True)  # acknowledge only what returned
    n += len(r)
"""


@pytest.mark.slow
def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(11)
    directory = tmp_path / "p-0"
    acked_end = 0
    for round_ in range(25):
        argv = [sys.executable, "-c", CHILD, str(directory)]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            lines = rng.randrange(1, 120)
            for _ in range(lines):
                start, stop = map(int, child.stdout.readline().split())
                assert start == acked_end, round_
                acked_end = stop
            child.kill()  # SIGKILL: no close(), no atexit
        with logstore.Log.open(directory, LogConfig(fsync="never")) as log:
            assert log.end_offset >= acked_end
            values = [r.value for r in log.scan()]
            for offset in range(acked_end):
                assert values[offset] is not None
                assert values[offset].startswith(b"%d:" % offset)
            for offset in range(0, acked_end, 37):  # lookups through the rebuilt indexes
                assert log.read(offset, max_records=1)[0].offset == offset
            acked_end = log.end_offset  # unacknowledged but complete batches may survive
            clock = FakeClock()
            assert clock() > 0


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
