"""``read_batches``' one-copy path and ``batch_ranges``' file ranges, against the stored bytes.

Every answer is compared with what the segment files hold: the batch
holding the offset, then whole batches while the total stays within
``max_bytes`` (the first one whatever its size), across segments.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, batch

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
