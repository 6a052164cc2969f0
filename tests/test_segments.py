"""``Segments``: the one place that removes, replaces and truncates (newest segment first)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logstore import batch
from logstore.segment import Segment

from .conftest import OpenLog
from .helpers import _append, _segments


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
