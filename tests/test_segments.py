"""``Segments``: the one place that rolls, removes, replaces and truncates; ``Segment.should_roll``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logstore import batch
from logstore.batch import BatchSpan
from logstore.segment import Segment, SegmentSettings
from logstore.segments import Segments


def _segments(directory: Path) -> Segments:
    settings = SegmentSettings(max_index_bytes=1 << 20, index_interval_bytes=4096)
    first = Segment.create(str(directory), 0, settings=settings)
    return Segments(
        str(directory),
        [first],
        settings=settings,
        fsync=True,
        handles=None,
        contiguous=True,
    )


def _append(segs: Segments, base_offset: int, count: int, ts: int = 1000) -> None:
    entries = [(b"v%d" % i, None, (), ts) for i in range(count)]
    section, _, max_ts = batch.encode_section(entries, ts, start=0, stop=count, now=ts)
    data = batch.build_batch(
        section,
        base_offset=base_offset,
        record_count=count,
        last_offset_delta=count - 1,
        base_timestamp=ts,
        max_timestamp=max_ts,
    )
    span = BatchSpan(len(data), base_offset + count - 1, max_ts)
    segs.active.append(data, (span,), record_count=count)


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


def test_truncate_removes_newest_first_and_rebuilds_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segs = _segments(tmp_path)
    _append(segs, 0, 4)
    segs.roll(4)
    _append(segs, 4, 4)
    segs.roll(8)
    renamed: list[str] = []
    real = os.rename
    monkeypatch.setattr(
        os, "rename", lambda a, b: (renamed.append(os.path.basename(a)), real(a, b))
    )
    segs.truncate(2, compression_level=None)
    monkeypatch.undo()
    assert [n for n in renamed if n.endswith(".log")] == [
        "00000000000000000008.log",
        "00000000000000000004.log",
    ]
    assert [s.base_offset for s in segs] == [0]
    assert segs.active.next_offset == 2
    records = batch.decode_records(segs.active.read(0, segs.active.size), 0)
    assert [(r.offset, r.value) for r in records] == [(0, b"v0"), (1, b"v1")]
    assert sorted(os.listdir(tmp_path)) == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
    ]


def test_a_crash_after_truncation_rewrote_its_batch_leaves_a_log_that_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rewritten batch and the old batch's remains lie above the recovery point
    that truncation lowered first: the next open cuts the remains as a torn tail
    (it would refuse them as flushed damage if the recovery point still named the end)."""
    import logstore

    path = tmp_path / "log"
    config = logstore.LogConfig(fsync="always")
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        log.append_many([b"v%d" % i for i in range(10)])  # one batch, offsets 0..9
        real_overwrite = Segment.overwrite

        def overwrite_then_die(self: Segment, position: int, data: bytes) -> None:
            real_overwrite(self, position, data)
            raise OSError("the power went")

        monkeypatch.setattr(Segment, "overwrite", overwrite_then_die)
        with pytest.raises(OSError, match="the power went"):
            log.truncate(5)
        monkeypatch.undo()
    assert (path / "recovery-point-offset-checkpoint").read_text() == "0\n1\nlog 0 0\n"
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        assert [r.value for r in log.scan()] == [b"v%d" % i for i in range(5)]
        assert log.end_offset == 5
