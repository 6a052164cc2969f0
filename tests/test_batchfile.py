"""``BatchFile``: the one walk over stored batches gives every caller the same verdict."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logstore import batch
from logstore.batchfile import CHUNK_BYTES, BatchFile
from logstore.errors import CorruptLogError
from logstore.segment import Segment, SegmentSettings

SETTINGS = SegmentSettings(max_index_bytes=1 << 20, index_interval_bytes=4096)


def _batch(base_offset: int, value: bytes) -> bytes:
    return batch.encode_batch([(value, None, [], 1_000)], base_offset=base_offset)


def _segment(path: Path, data: bytes) -> Segment:
    (path / "00000000000000000000.log").write_bytes(data)
    return Segment.open_existing(str(path), 0, settings=SETTINGS)


def test_zeros_followed_by_bytes_past_the_first_chunk_are_damage_for_every_walk(
    tmp_path: Path,
) -> None:
    """A zero run is a preallocated tail only if nothing follows it.

    The zeros here run past the first 1 MiB chunk and end in a non-zero byte:
    recovery (``validate``) and a read (``iter_batches``) both see the same
    damage at the same byte, not a zero-filled tail.
    """
    first = _batch(0, b"v" * 100)
    seg = _segment(tmp_path, first + b"\x00" * CHUNK_BYTES + b"\x01")
    result = seg.validate()
    assert result.error is not None
    assert (result.error.kind, result.error.position, result.valid_bytes) == (
        "invalid_length",
        len(first),
        len(first),
    )
    with pytest.raises(CorruptLogError) as read:
        list(seg.iter_batches(0, seg.size, verify_crc=True))
    assert (read.value.kind, read.value.position, read.value.reason) == (
        "invalid_length",
        len(first),
        result.error.reason,
    )
    assert str(read.value) == str(result.error)
    seg.close_file()


def test_a_batch_larger_than_a_chunk_is_read_whole_or_checked_in_pieces(tmp_path: Path) -> None:
    small, large = _batch(0, b"a" * 10), _batch(1, b"b" * (CHUNK_BYTES + 5000))
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(small + large)
    file = BatchFile(str(path))
    whole = [
        (p, h.base_offset, len(buf) - rel)
        for p, h, buf, rel in file.iter_batches(0, len(small + large), verify_crc=True)
    ]
    assert whole == [(0, 0, CHUNK_BYTES), (len(small), 1, len(large))]  # a first chunk, then whole
    pieces = [
        (p, h.base_offset, buf)
        for p, h, buf, _ in file.iter_batches(
            0, len(small + large), verify_crc=True, max_read=CHUNK_BYTES
        )
    ]
    assert pieces[1] == (len(small), 1, b"")  # checked, never held whole
    headers = [
        (p, h)
        for p, h, _, _ in file.iter_batches(
            0, len(small + large), verify_crc=False, headers_only=True
        )
    ]
    assert [(p, h.base_offset, h.size) for p, h in headers] == [
        (0, 0, len(small)),
        (len(small), 1, len(large)),
    ]
    # A flipped byte at the end of the large batch: its CRC fails, checked in pieces too.
    damaged = bytearray(small + large)
    damaged[-1] ^= 0xFF
    path.write_bytes(bytes(damaged))
    for max_read in (None, CHUNK_BYTES):
        with pytest.raises(CorruptLogError) as exc:
            list(file.iter_batches(0, len(damaged), verify_crc=True, max_read=max_read))
        assert (exc.value.kind, exc.value.position, exc.value.path) == (
            "crc_mismatch",
            len(small),
            str(path),
        )
    file.close()


def test_headers_only_walk_reports_a_batch_past_the_end(tmp_path: Path) -> None:
    data = _batch(0, b"x" * 50)
    seg = _segment(tmp_path, data)
    with pytest.raises(CorruptLogError) as exc:
        list(seg.iter_headers(0, len(data) - 1))
    assert str(exc.value) == (
        f"{seg.log_path} at byte 0: batch of {len(data)} bytes runs past the end of the data "
        f"({len(data) - 1} bytes left)"
    )
    assert exc.value.kind == "truncated"
    seg.close_file()


# ---------------------------------------------------------------- appends: pieces and writeback


def test_a_batch_written_as_header_and_records_is_the_joined_batch(tmp_path: Path) -> None:
    """``build_batch_parts`` + one ``pwritev`` store exactly the bytes ``build_batch`` makes."""
    section = batch.encode_records(
        [(b"v%d" % i * 50, b"k", (), 1_000 + i) for i in range(40)], 1_000
    )
    fields = dict(
        base_offset=7,
        record_count=40,
        last_offset_delta=39,
        base_timestamp=1_000,
        max_timestamp=1_039,
    )
    header, body = batch.build_batch_parts(section, **fields)  # type: ignore[arg-type]
    assert len(header) == batch.HEADER_SIZE and body is section  # the records are not copied
    whole = batch.build_batch(section, **fields)  # type: ignore[arg-type]
    assert header + body == whole
    file = BatchFile.create(str(tmp_path / "00000000000000000000.log"))
    file.append((header, body), 0)
    file.append(whole, len(whole))
    file.close()
    assert (tmp_path / "00000000000000000000.log").read_bytes() == whole + whole


def test_a_short_pwritev_writes_the_rest_from_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logstore import _fs

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    real = os.pwritev

    def short(fd: int, buffers: list[bytes], position: int) -> int:
        return real(fd, [bytes(buffers[0])[:3]], position)  # a file system taking 3 bytes only

    monkeypatch.setattr(_fs.os, "pwritev", short)
    try:
        _fs.write_all(fd, (b"header", b"records"), 10)
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(10) + b"headerrecords"


def test_appended_bytes_are_handed_to_writeback_once_enough_gathered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every appended byte is handed over exactly once, in ranges of ``WRITEBACK_BYTES`` or more."""
    from logstore import batchfile

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(batchfile, "WRITEBACK_BYTES", 100)
    monkeypatch.setattr(
        batchfile, "start_writeback", lambda fd, pos, size: calls.append((pos, size))
    )
    file = BatchFile.create(str(tmp_path / "00000000000000000000.log"))
    position = 0
    for size in (60, 30, 20, 250, 10):
        file.append(b"x" * size, position)
        position += size
    file.truncate(300)  # cut back below what was handed over: counting restarts at the cut
    file.append(b"y" * 120, 300)
    file.close()
    assert calls == [(0, 110), (110, 250), (300, 120)]
    assert (tmp_path / "00000000000000000000.log").read_bytes() == b"x" * 300 + b"y" * 120


def test_start_writeback_changes_no_byte(tmp_path: Path) -> None:
    from logstore import _fs

    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    fd = os.open(path, os.O_RDWR)
    try:
        _fs.start_writeback(fd, 0, 3000)
        _fs.start_writeback(fd, 1000, 10_000)  # past the end: still only a hint
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abc" * 1000
