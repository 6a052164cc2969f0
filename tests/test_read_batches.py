"""``read_batches``' one-copy path and ``batch_ranges``' file ranges, against the stored bytes.

Every answer is compared with what the segment files hold: the batch
holding the offset, then whole batches while the total stays within
``max_bytes`` (the first one whatever its size), across segments.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, batch, rangecrc
from logstore.batchfile import BatchFile

from .conftest import OpenLog


def _stored(log: logstore.Log) -> list[tuple[int, int, bytes]]:
    """``(base offset, last offset, bytes)`` of every stored batch, oldest first."""
    out = []
    for info in log.segments:
        data = Path(info.path).read_bytes()
        position = 0
        while position < len(data):
            header = batch.read_header(data, position)
            out.append(
                (header.base_offset, header.last_offset, data[position : position + header.size])
            )
            position += header.size
    return out


def _expected(stored: list[tuple[int, int, bytes]], offset: int, max_bytes: int) -> bytes:
    pieces: list[bytes] = []
    total = 0
    for _, last, data in stored:
        if last < offset:
            continue
        if pieces and total + len(data) > max_bytes:
            break
        pieces.append(data)
        total += len(data)
    return b"".join(pieces)


def _fill(log: logstore.Log, batches: int) -> None:
    for b in range(batches):
        size = 1 + (b * 7) % 13  # records per batch vary, so batch sizes do
        log.append_many([b"%d-%d-" % (b, i) + b"x" * ((b * 31 + i) % 300) for i in range(size)])


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("verify", [True, False])
def test_read_batches_and_ranges_hold_exactly_the_stored_batches(
    open_log: OpenLog, compression: str, verify: bool
) -> None:
    log = open_log(segment_bytes=6_000, compression=compression, verify_crc_on_read=verify)
    _fill(log, 120)
    assert len(log.segments) >= 4
    stored = _stored(log)
    sizes = sorted({len(d) for _, _, d in stored})
    budgets = [1, 61, sizes[0], sizes[-1], sizes[-1] + 1, 3_000, 5_999, 6_000, 20_000, 1 << 30]
    for offset in range(0, log.end_offset, 7):
        for max_bytes in budgets:
            want = _expected(stored, offset, max_bytes)
            assert log.read_batches(offset, max_bytes) == want, (offset, max_bytes)
            with log.batch_ranges(offset, max_bytes) as ranges:
                assert ranges.size == len(ranges) == len(want)
                assert ranges.read() == want, (offset, max_bytes)
                sent = b"".join(os.pread(fd, n, at) for fd, at, n in ranges.ranges)
                assert sent == want
    assert log.read_batches(log.end_offset) == b""
    assert log.batch_ranges(log.end_offset).size == 0


def test_small_batches_past_the_length_hops_are_cut_after_the_last_whole_one(
    open_log: OpenLog,
) -> None:
    """More batches than ``read_stored`` sizes by their prefixes: the rest is read to
    the budget and cut, with the same answer."""
    log = open_log()
    for i in range(300):
        log.append(b"v%d" % i)
    stored = _stored(log)
    for offset in (0, 1, 150, 299):
        for max_bytes in (1, 500, 64 * len(stored[0][2]) + 3, 10_000, 1 << 20):
            assert log.read_batches(offset, max_bytes) == _expected(stored, offset, max_bytes)
            with log.batch_ranges(offset, max_bytes) as ranges:
                assert ranges.read() == _expected(stored, offset, max_bytes)


def test_a_compacted_log_gives_the_same_batches_both_ways(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=2_000, cleanup_policy="compact", min_cleanable_dirty_ratio=0.0)
    for i in range(400):
        log.append(b"value-%d" % i, key=b"k%d" % (i % 17))
    log.compact()
    stored = _stored(log)
    for offset in range(log.start_offset, log.end_offset, 11):
        for max_bytes in (1, 700, 5_000, 1 << 20):
            want = _expected(stored, offset, max_bytes)
            assert log.read_batches(offset, max_bytes) == want
            with log.batch_ranges(offset, max_bytes) as ranges:
                assert ranges.read() == want


def test_ranges_held_through_retention_still_hold_the_deleted_segments_bytes(
    open_log: OpenLog,
) -> None:
    log = open_log(segment_bytes=3_000)
    _fill(log, 60)
    want = log.read_batches(0, 1 << 30)
    ranges = log.batch_ranges(0, 1 << 30)
    first = log.segments[0].path
    log.delete_before(log.segments[-1].base_offset)  # every sealed segment goes
    assert not os.path.exists(first)
    assert ranges.read() == want
    assert b"".join(os.pread(fd, n, at) for fd, at, n in ranges.ranges) == want
    ranges.close()
    ranges.close()  # idempotent
    with pytest.raises(logstore.OffsetOutOfRange):
        log.batch_ranges(0)


def test_ranges_of_a_file_cut_shorter_raise_instead_of_reading_fewer_bytes(
    open_log: OpenLog,
) -> None:
    log = open_log()
    _fill(log, 5)
    with log.batch_ranges(0, 1 << 20) as ranges:
        log.truncate(2)
        with pytest.raises(OSError, match="shortened"):
            ranges.read()


def test_damage_is_reported_by_both_paths(tmp_path: Path) -> None:
    path = tmp_path / "log"
    config = LogConfig(fsync="never", segment_messages=4)
    with logstore.Log.open(path, config) as log:
        for i in range(6):
            log.append(b"value-%d" % i)
        stored = _stored(log)
    third = len(stored[0][2]) + len(stored[1][2])
    segment = path / f"{0:020d}.log"  # sealed: opening does not check it
    data = bytearray(segment.read_bytes())
    data[third + 16] = 7  # the third batch's magic
    segment.write_bytes(bytes(data))
    with logstore.Log.open(path, config) as log:
        assert log.read_batches(0, third) == bytes(data[:third])
        with log.batch_ranges(0, third) as ranges:
            assert ranges.read() == bytes(data[:third])
        for call in (log.read_batches, log.batch_ranges):
            with pytest.raises(logstore.CorruptLogError, match=f"at byte {third}: magic 7"):
                call(0, 1 << 20)


def _damage_middle_segment(path: Path, config: LogConfig) -> tuple[str, int, bytes]:
    """A log of 4 sealed segments and an active one; one bit flipped inside the records
    section of the second batch of the second segment. ``(its file, its position, the
    undamaged bytes read_batches gives from offset 0 up to it)``."""
    with logstore.Log.open(path, config) as log:
        for b in range(10):
            log.append_many([b"batch-%d-record-%d-" % (b, i) + b"z" * 40 for i in range(2)])
        assert len(log.segments) == 5
        middle = log.segments[1]
        batches = [s for s in _stored(log) if middle.base_offset <= s[0] < middle.next_offset]
        before = log.read_batches(0, 1 << 30)
    position = len(batches[0][2])  # the segment's second batch
    data = bytearray(Path(middle.path).read_bytes())
    data[position + batch.HEADER_SIZE + 5] ^= 0x10  # inside its records section
    Path(middle.path).write_bytes(bytes(data))
    upto = before.index(batches[1][2])
    return middle.path, position, before[:upto]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_a_crc_failure_in_a_middle_segment_raises_the_same_error_from_both_paths(
    tmp_path: Path, compression: str
) -> None:
    config = LogConfig(fsync="never", segment_messages=4, compression=compression)  # type: ignore[arg-type]
    path, position, intact = _damage_middle_segment(tmp_path / "log", config)
    with logstore.Log.open(tmp_path / "log", config) as log:
        with pytest.raises(logstore.CorruptLogError) as read:
            log.read_batches(0, 1 << 20)
        fds = _open_fds()  # the segments' own handles are open by now
        with pytest.raises(logstore.CorruptLogError) as ranged:
            log.batch_ranges(0, 1 << 20)
        assert _open_fds() == fds  # the ranges' descriptors were closed
        assert str(ranged.value) == str(read.value)
        assert str(read.value).startswith(f"{path} at byte {position}: CRC mismatch")
        assert (ranged.value.path, ranged.value.position, ranged.value.kind) == (
            path,
            position,
            logstore.ErrorKind.CRC_MISMATCH,
        )
        # Up to the damaged batch, both serve the same bytes; past it too.
        assert log.read_batches(0, len(intact)) == intact
        with log.batch_ranges(0, len(intact)) as ranges:
            assert ranges.read() == intact
        after = log.segments[2].base_offset
        with log.batch_ranges(after, 1 << 20) as ranges:
            assert ranges.read() == log.read_batches(after, 1 << 20)


def test_with_verify_crc_on_read_off_the_damaged_ranges_are_returned_as_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = LogConfig(fsync="never", segment_messages=4, verify_crc_on_read=False)
    path, _, _ = _damage_middle_segment(tmp_path / "log", config)
    checked: list[int] = []
    monkeypatch.setattr(
        logstore.batchfile, "batches_hold_crc", lambda fd, at, n: checked.append(n) or True
    )
    with logstore.Log.open(tmp_path / "log", config) as log:
        stored = b"".join(Path(info.path).read_bytes() for info in log.segments)
        assert log.read_batches(0, 1 << 30) == stored
        with log.batch_ranges(0, 1 << 30) as ranges:
            assert ranges.read() == stored
            assert any(fd_path == path for fd_path in _paths(ranges))
    assert not checked  # no CRC pass at all


def _paths(ranges: logstore.FileRanges) -> list[str]:
    return [os.readlink(f"/proc/self/fd/{fd}") for fd, _, _ in ranges.ranges]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_intact_ranges_are_crc_checked_once_and_not_walked(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    """With ``verify_crc_on_read`` each range is checked once (``rangecrc``) and
    the reading walk never runs; the bytes are those stored."""
    log = open_log(segment_bytes=6_000, compression=compression)
    _fill(log, 80)
    checked: list[tuple[int, int]] = []
    real = logstore.batchfile.batches_hold_crc

    def counted(fd: int, position: int, length: int) -> bool:
        checked.append((position, length))
        return real(fd, position, length)

    def no_walk(*args: object) -> None:
        raise AssertionError("the reading walk ran")

    monkeypatch.setattr(logstore.batchfile, "batches_hold_crc", counted)
    monkeypatch.setattr(logstore.reader, "_ranges_by_walk", no_walk)
    stored = _stored(log)
    for offset in (0, 7, 150, log.end_offset - 1):
        checked.clear()
        with log.batch_ranges(offset, 20_000) as ranges:
            assert ranges.read() == _expected(stored, offset, 20_000)
            assert checked == [(at, n) for _, at, n in ranges.ranges]


def test_the_range_crc_check_at_any_position_and_past_the_end(
    open_log: OpenLog, tmp_path: Path
) -> None:
    """``rangecrc`` checks a range at any position, across several of its read
    pieces; a range the file no longer holds is refused."""
    log = open_log()
    _fill(log, 30)
    stored = b"".join(data for _, _, data in _stored(log))
    lead = 3 * rangecrc.PIECE + 17  # past several pieces, unaligned
    path = tmp_path / "copy.log"
    path.write_bytes(b"\xff" * lead + stored)
    file = BatchFile(str(path))
    fd = file.dup()
    try:
        assert rangecrc.batches_hold_crc(fd, lead, len(stored))
        assert file.crcs_hold(fd, lead, len(stored))
        assert not file.crcs_hold(fd, lead, len(stored) + 1)  # past the end
        assert not rangecrc.batches_hold_crc(fd, lead, len(stored) + 1)
        assert not rangecrc.batches_hold_crc(fd, lead, len(stored) - 1)  # a torn last batch
        damaged = bytearray(stored)
        damaged[-3] ^= 0x01  # the last batch's last record
        writer = os.open(path, os.O_WRONLY)
        os.pwrite(writer, bytes(damaged), lead)
        os.close(writer)
        assert not file.crcs_hold(fd, lead, len(stored))
        first = batch.peek_header(stored, 0).size
        assert file.crcs_hold(fd, lead, first)  # the batches before it still hold
    finally:
        os.close(fd)
        file.close()


def test_a_truncation_waits_for_the_crc_pass_over_its_file(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: ``Log.truncate`` cutting the very range being CRC-checked.
    The cut waits for the check; the check sees the whole range; the ranges then
    hold what they held, and the truncation happens."""
    log = open_log()
    _fill(log, 8)
    want = log.read_batches(0, 1 << 20)
    inside, cut = threading.Event(), threading.Event()
    seen: list[bool] = []
    real = logstore.batchfile.batches_hold_crc

    def slow(fd: int, position: int, length: int) -> bool:
        inside.set()
        cut.wait(0.5)  # the truncation's chance to cut under the check
        seen.append(os.fstat(fd).st_size >= position + length)
        return real(fd, position, length)

    monkeypatch.setattr(logstore.batchfile, "batches_hold_crc", slow)
    got: list[logstore.FileRanges] = []
    reader = threading.Thread(target=lambda: got.append(log.batch_ranges(0, 1 << 20)))
    reader.start()
    assert inside.wait(10)

    def truncate() -> None:
        log.truncate(2)
        cut.set()

    cutter = threading.Thread(target=truncate)
    cutter.start()
    reader.join(10)
    cutter.join(10)
    assert seen == [True]  # the file still held the range while it was checked
    assert cut.is_set() and log.end_offset == 2
    with got[0] as ranges:
        assert ranges.size == len(want)


def test_a_read_error_during_the_crc_check_is_a_failed_check(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the disk fails a read (EIO) in the middle of a batch: a
    ``False`` for the caller (whose checking walk then raises), not a crash."""
    log = open_log()
    _fill(log, 30)
    stored = b"".join(data for _, _, data in _stored(log))
    fd = os.open(log.segments[0].path, os.O_RDONLY)
    try:
        assert rangecrc.batches_hold_crc(fd, 0, len(stored))

        def failing(*args: object) -> int:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(rangecrc.os, "preadv", failing)
        assert not rangecrc.batches_hold_crc(fd, 0, len(stored))
    finally:
        os.close(fd)
