"""Offset and time indexes: lookups agree with a linear scan; rebuilds equal live writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import logstore
from logstore.index import OffsetIndex, TimeIndex
from logstore.segment import Segment, SegmentSettings

from .conftest import OpenLog


@given(
    rel=st.lists(st.integers(min_value=1, max_value=10_000), unique=True, max_size=50),
    probe=st.integers(min_value=-5, max_value=11_000),
)
def test_offset_lookup_is_the_largest_entry_not_above(rel: list[int], probe: int) -> None:
    index = OffsetIndex("/nonexistent", 1000, max_index_bytes=8 * 100)
    for n, r in enumerate(sorted(rel)):
        index.append(1000 + r, 10 * (n + 1))
    entries = index.as_list()
    below = [e for e in entries if e[0] <= 1000 + probe]
    assert index.lookup(1000 + probe) == (below[-1] if below else (1000, 0))


@given(
    stamps=st.lists(st.integers(min_value=0, max_value=10**6), unique=True, max_size=50),
    probe=st.integers(min_value=-1, max_value=10**6 + 5),
)
def test_time_lookup_is_the_largest_entry_not_above(stamps: list[int], probe: int) -> None:
    index = TimeIndex("/nonexistent", 0, max_index_bytes=12 * 100)
    for n, ts in enumerate(sorted(stamps)):
        index.maybe_append(ts, n * 3)
    below = [e for e in index.as_list() if e[0] <= probe]
    assert index.lookup(probe) == (below[-1][1] if below else 0)


def _write_varied(log: logstore.Log) -> list[logstore.Record]:
    # Timestamps go up and down, batches vary in size, so entries are sparse and uneven.
    for i in range(300):
        count = 1 + (i * 7) % 9
        log.append_many(
            logstore.Message(
                b"v" * ((i * 31) % 200),
                key=b"k%d" % i,
                timestamp=10_000 + ((i * 997 + j * 13) % 5000),
            )
            for j in range(count)
        )
    return list(log.scan())


def test_lookups_agree_with_a_linear_scan(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=20_000, index_interval_bytes=300)
    records = _write_varied(log)
    assert len(log.segments) > 3
    for r in records:
        assert log.read(r.offset, max_records=1) == [r]
    for ts in range(9_990, 15_010, 7):
        want = next((r.offset for r in records if r.timestamp >= ts), None)
        assert log.offset_for_timestamp(ts) == want, ts


def test_rebuilt_indexes_are_byte_identical_to_live_ones(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(segment_bytes=20_000, index_interval_bytes=300)
    _write_varied(log)
    log.close()
    files = sorted(p for p in log_dir.iterdir() if p.suffix in (".index", ".timeindex"))
    live = {p.name: p.read_bytes() for p in files}
    assert any(len(v) > 0 for v in live.values())
    for p in log_dir.iterdir():
        if p.suffix == ".log":
            settings = SegmentSettings(max_index_bytes=10 << 20, index_interval_bytes=300)
            seg = Segment.open_existing(str(log_dir), int(p.stem), settings=settings)
            seg.rebuild_indexes()
            seg.close_file()
    assert {p.name: p.read_bytes() for p in files} == live


def test_damaged_or_missing_indexes_are_rebuilt_and_lookups_stay_exact(
    open_log: OpenLog, log_dir: Path
) -> None:
    log = open_log(segment_bytes=20_000, index_interval_bytes=300)
    records = _write_varied(log)
    log.close()
    indexes = sorted(p for p in log_dir.iterdir() if p.suffix in (".index", ".timeindex"))
    indexes[0].unlink()  # missing
    with open(indexes[2], "r+b") as f:  # truncated mid-entry
        f.truncate(max(os.path.getsize(indexes[2]) - 3, 0))
    indexes[4].write_bytes(os.urandom(96))  # garbage
    with open(indexes[6], "r+b") as f:  # entries out of order
        data = bytearray(f.read())
        if len(data) >= 16:
            data[0:8], data[8:16] = data[8:16], data[0:8]
            f.seek(0)
            f.write(data)
    log = open_log()
    for r in records[::7]:
        assert log.read(r.offset, max_records=1) == [r]
    for ts in range(9_990, 15_010, 53):
        want = next((r.offset for r in records if r.timestamp >= ts), None)
        assert log.offset_for_timestamp(ts) == want
    assert list(log.scan()) == records


def test_a_rewritten_index_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuilt index reaches the disk before a clean marker can vouch for it."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    index = OffsetIndex(str(tmp_path / "00000000000000000000.index"), 0, max_index_bytes=800)
    tindex = TimeIndex(str(tmp_path / "00000000000000000000.timeindex"), 0, max_index_bytes=1200)
    index.append(5, 100)
    tindex.maybe_append(1_000, 5)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    index.write_all_entries()
    tindex.write_all_entries()
    monkeypatch.undo()
    assert synced == [index.path, tindex.path]
    assert (tmp_path / "00000000000000000000.index").read_bytes() == (5).to_bytes(4, "big") + (
        100
    ).to_bytes(4, "big")


def _pure_offset_entries(data: bytes, log_size: int) -> list[tuple[int, int]] | None:
    """The offset index's rule, entry by entry: ``None`` where the file is not sane."""
    entries = [
        (
            int.from_bytes(data[i : i + 4], "big", signed=True),
            int.from_bytes(data[i + 4 : i + 8], "big", signed=True),
        )
        for i in range(0, len(data), 8)
    ]
    for n, entry in enumerate(entries):
        if entry == (0, 0):
            if any(data[8 * n :]):
                return None
            entries = entries[:n]
            break
    out: list[tuple[int, int]] = []
    for rel, pos in entries:
        if out and (rel <= out[-1][0] or pos <= out[-1][1]):
            return None
        if rel < 0 or pos < 0 or pos >= log_size:
            return None
        out.append((rel, pos))
    return out


@given(
    entries=st.lists(st.tuples(st.integers(-3, 60), st.integers(-3, 60)), max_size=12),
    padding=st.integers(0, 3),
    tail=st.sampled_from([b"", b"\x00" * 4 + b"\x00\x00\x00\x01"]),
)
def test_offset_index_load_takes_exactly_the_sane_files(
    tmp_path_factory: pytest.TempPathFactory,
    entries: list[tuple[int, int]],
    padding: int,
    tail: bytes,
) -> None:
    """The column-wise check at load accepts and refuses what the entry-by-entry rule does."""
    data = b"".join(
        r.to_bytes(4, "big", signed=True) + p.to_bytes(4, "big", signed=True) for r, p in entries
    )
    data += bytes(8 * padding) + tail
    path = tmp_path_factory.mktemp("idx") / "0.index"
    path.write_bytes(data)
    index = OffsetIndex(str(path), 100, max_index_bytes=1 << 16)
    expected = _pure_offset_entries(data, 50)
    if expected is None:
        with pytest.raises(logstore.CorruptLogError):
            index.load(50)
    else:
        index.load(50)
        assert index.as_list() == [(100 + r, p) for r, p in expected]


@given(
    entries=st.lists(
        st.tuples(
            st.sampled_from([-(1 << 63), -5, 0, 1, 1 << 31, (1 << 32) + 7, 1 << 40, (1 << 62) + 3]),
            st.integers(-2, 9),
        ),
        max_size=8,
    ),
    padding=st.integers(0, 2),
)
def test_time_index_load_takes_exactly_the_sane_files(
    tmp_path_factory: pytest.TempPathFactory, entries: list[tuple[int, int]], padding: int
) -> None:
    """Timestamps past 32 bits come back whole; order and bounds as the entry-by-entry rule says."""
    data = b"".join(
        t.to_bytes(8, "big", signed=True) + r.to_bytes(4, "big", signed=True) for t, r in entries
    )
    data += bytes(12 * padding)
    path = tmp_path_factory.mktemp("tidx") / "0.timeindex"
    path.write_bytes(data)
    index = TimeIndex(str(path), 100, max_index_bytes=1 << 16)
    kept = []
    sane = True
    for n, (ts, rel) in enumerate(entries):
        if (ts, rel) == (0, 0):
            sane = not any(data[12 * n :])
            break
        prev = kept[-1] if kept else (-(1 << 63), -1)
        if ts <= prev[0] or rel < prev[1] or rel < 0 or rel >= 8:
            sane = False
            break
        kept.append((ts, rel))
    if not sane:
        with pytest.raises(logstore.CorruptLogError):
            index.load(8)
    else:
        index.load(8)
        assert index.as_list() == [(t, 100 + r) for t, r in kept]
