"""``indexcheck``: index files that disagree with their ``.log`` are found and rebuilt."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, Message, Record

from .helpers_damage import MONOTONIC, T0, _shift_time_index, _verify


def test_a_time_index_whose_last_entry_is_wrong_is_rebuilt_on_open(
    indexed: tuple[Path, list[Record]], tmp_path: Path
) -> None:
    source, records = indexed
    path = tmp_path / "log"
    shutil.copytree(source, path)
    tpath = path / f"{0:020d}.timeindex"
    original = tpath.read_bytes()
    entries = list(struct.iter_unpack(">qi", original))
    ts, offset = entries[-1]
    # Claims the segment's records end before `ts - 5`: the segment would be skipped.
    tpath.write_bytes(original[:-12] + struct.pack(">qi", ts - 5, offset))
    with logstore.Log.open(path, MONOTONIC) as log:
        want = next(r.offset for r in records if r.timestamp >= ts - 4)
        assert log.offset_for_timestamp(ts - 4) == want
    assert tpath.read_bytes() == original


def test_recover_rebuilds_a_wrong_index_below_the_recovery_point(
    indexed: tuple[Path, list[Record]], tmp_path: Path
) -> None:
    source, _ = indexed
    path = tmp_path / "log"
    shutil.copytree(source, path)
    tpath = path / f"{0:020d}.timeindex"
    original, entries = _shift_time_index(tpath)
    index = path / f"{0:020d}.index"
    dry = logstore.Log.recover(path, MONOTONIC, dry_run=True)
    wrong = [a for a in dry if a.action == "rebuild_index" and a.path == str(index)]
    assert len(wrong) == 1
    assert wrong[0].reason.startswith(
        f"{tpath} at byte 0: entry ({entries[0][0]}, {entries[1][1]}) does not match the log: "
    )
    assert tpath.read_bytes() != original
    logstore.Log.recover(path, MONOTONIC)
    assert tpath.read_bytes() == original


def test_a_wrong_index_of_the_active_segment_is_rebuilt_and_appends_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = LogConfig(fsync="never", index_interval_bytes=64)
    path = tmp_path / "log"
    with logstore.Log.open(path, config) as log:
        for i in range(30):
            log.append_many(
                Message(b"v%d" % (2 * i + j), b"k", (), T0 + 2 * i + j) for j in range(2)
            )
    ipath = path / f"{0:020d}.index"
    original = ipath.read_bytes()
    entries = list(struct.iter_unpack(">ii", original))
    wrong = [(rel, pos + 7) for rel, pos in entries[:-1]] + [entries[-1]]
    ipath.write_bytes(b"".join(struct.pack(">ii", *e) for e in wrong))
    with logstore.Log.open(path, config) as log:
        target = entries[2][0]
        assert [r.offset for r in log.read(target, max_records=2)] == [target, target + 1]
        assert ipath.read_bytes()[: len(original)] == original  # rebuilt (then preallocated)
        log.append_many(Message(b"w%d" % i, b"k", (), T0 + 100 + i) for i in range(40))
        assert [r.offset for r in log.scan()] == list(range(100))
    assert _verify(capsys, path)[0] == 0
    fresh = tmp_path / "fresh"
    with logstore.Log.open(fresh, config) as log:
        for i in range(30):
            log.append_many(
                Message(b"v%d" % (2 * i + j), b"k", (), T0 + 2 * i + j) for j in range(2)
            )
        log.append_many(Message(b"w%d" % i, b"k", (), T0 + 100 + i) for i in range(40))
    assert ipath.read_bytes() == (fresh / ipath.name).read_bytes()
