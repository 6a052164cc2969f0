"""Offsets and indexes are trusted only as far as the log confirms them.

A batch's base offset lies outside its CRC, and the ``.index``/``.timeindex``
files carry no checksum at all. Every test here damages one of them in a way
no checksum can see, and asserts the exact outcome: the error with its file and
byte position, the records kept, the answer given, the file rebuilt.
"""

from __future__ import annotations

import logging
import shutil
import struct
from pathlib import Path

import pytest

import logstore
from logstore import CorruptLogError, LogConfig, Message, Record, cli

from .conftest import child_env, file_hashes, run_python

CONFIG = LogConfig(fsync="never", segment_messages=20, index_interval_bytes=64)
T0 = 1_700_000_000_000


def _batch_positions(path: Path) -> list[tuple[int, int]]:
    """``(position, base offset)`` of every batch of a ``.log`` file, read raw."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        out.append((pos, struct.unpack_from(">q", data, pos)[0]))
        pos += 12 + struct.unpack_from(">i", data, pos + 8)[0]
    return out


def _flip(path: Path, position: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


def _verify(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str]:
    try:
        cli.main(["verify", str(path)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err  # problems on stdout, the verdict on stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    """A closed log of 100 records in batches of 5, timestamps rising with the offset."""
    path = tmp_path_factory.mktemp("offsets") / "log"
    with logstore.Log.open(path, CONFIG) as log:
        for i in range(20):
            log.append_many(
                Message(b"v%d" % (5 * i + j), b"k", (), T0 + 10 * (5 * i + j)) for j in range(5)
            )
        records = list(log.scan())
        assert [s.base_offset for s in log.segments] == [0, 20, 40, 60, 80]
    return path, records


# ---------------------------------------------------------------- base offsets (case 2)

SEALED = f"{20:020d}.log"  # offsets 20..39 in four batches of five


@pytest.mark.parametrize("which", [0, 1, 3], ids=["first", "middle", "last"])
@pytest.mark.parametrize("byte", range(8))
@pytest.mark.parametrize("mask", [0x01, 0x08, 0x80])
def test_a_damaged_base_offset_in_a_sealed_segment_is_never_served(
    image: tuple[Path, list[Record]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    which: int,
    byte: int,
    mask: int,
) -> None:
    source, records = image
    path = tmp_path / "log"
    shutil.copytree(source, path)
    sealed = path / SEALED
    position, base = _batch_positions(sealed)[which]
    assert base == 20 + 5 * which
    _flip(sealed, position + byte, mask)
    where = f"{sealed} at byte {position}: "
    with logstore.Log.open(path, CONFIG) as log:
        for call in (
            lambda: list(log.scan()),
            lambda: list(log.scan(20)),
            lambda: log.read(20),
            lambda: log.read(15, max_records=100),
            lambda: log.read_batches(20),
        ):
            with pytest.raises(CorruptLogError) as info:
                call()
            assert (info.value.path, info.value.position) == (str(sealed), position)
            assert info.value.kind in ("offset_mismatch", "offset_regression")
            assert str(info.value).startswith(where)
        # Records before the damage are still served exactly.
        assert log.read(0, max_records=20) == records[:20]
        assert list(log.scan(40)) == records[40:]
    code, err = _verify(capsys, path)
    assert code == 1
    assert where in err


def test_the_reported_case_63_instead_of_55(
    image: tuple[Path, list[Record]], tmp_path: Path
) -> None:
    """Offsets 55..59 stored as 63..67: the scan used to go on from 63 without a word."""
    source, _ = image
    path = tmp_path / "log"
    shutil.copytree(source, path)
    sealed = path / f"{40:020d}.log"
    position, base = _batch_positions(sealed)[3]
    assert base == 55
    _flip(sealed, position + 7, 55 ^ 63)
    with logstore.Log.open(path, CONFIG) as log:
        got = []
        with pytest.raises(CorruptLogError) as info:
            got.extend(r.offset for r in log.scan())
        assert got == list(range(55))
        assert str(info.value) == (
            f"{sealed} at byte {position}: batch base offset 63 does not follow offset 54 "
            "(a gap in a log that was never compacted)"
        )
        assert info.value.kind == "offset_mismatch"


def test_a_segment_whose_batches_reach_into_the_next_is_reported_even_with_gaps_allowed(
    tmp_path: Path,
) -> None:
    """In a compacted log gaps are legal, but never past the next segment's base offset."""
    config = LogConfig(
        fsync="never", segment_messages=20, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0
    )
    path = tmp_path / "log"
    with logstore.Log.open(path, config) as log:
        for i in range(20):
            log.append_many(Message(b"v", b"k%d" % (5 * i + j), (), T0) for j in range(5))
    sealed = path / SEALED
    position, _ = _batch_positions(sealed)[3]
    _flip(sealed, position + 7, 0x08)  # 35 -> 43: its last offset 47 >= 40, the next base
    with logstore.Log.open(path, config) as log:
        with pytest.raises(CorruptLogError) as info:
            list(log.scan())
        assert (info.value.path, info.value.position) == (str(sealed), position)
        assert "reach past offset 39" in str(info.value)


@pytest.mark.parametrize("byte", range(8))
def test_a_tail_batch_with_a_bad_base_offset_is_cut_by_recovery(
    tmp_path: Path, byte: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    log = logstore.Log.open(path, CONFIG)
    for i in range(18):
        log.append_many(Message(b"v%d" % (5 * i + j), b"k", (), T0) for j in range(5))
    records = list(log.scan())
    crash = tmp_path / "crash"
    shutil.copytree(path, crash)  # an unclean shutdown: no marker, recovery point 0
    log.close()
    active = crash / f"{80:020d}.log"
    batches = _batch_positions(active)
    assert [b for _, b in batches] == [80, 85]
    position = batches[1][0]
    original = active.read_bytes()
    _flip(active, position + byte, 0x04)
    before = file_hashes(crash)
    with pytest.raises(CorruptLogError) as info:
        logstore.Log.open(crash, LogConfig(fsync="never", recovery="fail"))
    assert (info.value.path, info.value.position) == (str(active), position)
    assert file_hashes(crash) == before
    with (
        caplog.at_level(logging.WARNING, logger="logstore"),
        logstore.Log.open(crash, CONFIG) as log,
    ):
        assert list(log.scan()) == records[:85]
        assert log.end_offset == 85
    assert active.read_bytes() == original[:position]
    damaged = bytearray(original)
    damaged[position + byte] ^= 0x04
    assert (crash / f"{active.name}.corrupt-{position}").read_bytes() == bytes(damaged[position:])
    assert f"{active} at byte {position}: " in caplog.text


def test_a_clean_open_refuses_a_last_batch_whose_base_offset_moved(
    image: tuple[Path, list[Record]], tmp_path: Path
) -> None:
    """The log's end offset comes from its last batch: appends must not follow a damaged one."""
    source, _ = image
    path = tmp_path / "log"
    shutil.copytree(source, path)
    active = path / f"{80:020d}.log"
    position, _ = _batch_positions(active)[-1]
    _flip(active, position + 4, 0x01)  # 95 -> 2**24 + 95
    with pytest.raises(CorruptLogError) as info:
        logstore.Log.open(path, CONFIG)
    assert info.value.path == str(active)
    assert "closed at offset 100" in str(info.value)


def _key(i: int) -> bytes:
    """Seven keys written over and over, and every third record a key of its own: gaps."""
    return b"unique-%d" % i if i % 3 == 0 else b"key-%d" % (i % 7)


def _latest_per_key(records: list[Record]) -> list[Record]:
    latest = {r.key: r.offset for r in records}
    return [r for r in records if latest[r.key] == r.offset]


def _compacted_log(path: Path) -> list[Record]:
    config = LogConfig(
        fsync="never",
        segment_bytes=400,
        cleanup_policy="compact",
        min_cleanable_dirty_ratio=1.0,
        index_interval_bytes=64,
    )
    with logstore.Log.open(path, config) as log:
        for i in range(60):
            log.append(b"value-%d" % i, key=_key(i), timestamp=T0 + i)
        log.roll()
        log.compact()
        kept = list(log.scan())
    offsets = [r.offset for r in kept]
    assert offsets != list(range(offsets[0], offsets[0] + len(offsets)))  # gaps
    return kept


def test_a_compacted_log_with_gaps_reads_without_false_alarms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log"
    kept = _compacted_log(path)
    # Opened as it was made, then with the default (delete) policy: the gaps are legal.
    for config in (LogConfig(cleanup_policy="compact"), LogConfig()):
        with logstore.Log.open(path, config) as log:
            assert list(log.scan()) == kept
            for r in kept:
                assert log.read(r.offset, max_records=1) == [r]
            assert log.offset_for_timestamp(T0) == kept[0].offset
    assert [a.action for a in logstore.Log.recover(path) if a.action != "rebuild_index"] == []
    with logstore.Log.open(path) as log:
        assert list(log.scan()) == kept
    assert _verify(capsys, path)[0] == 0


CHILD = """
import sys, logstore
config = logstore.LogConfig(
    segment_bytes=400, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0, fsync="never"
)
log = logstore.Log.open(sys.argv[1], config)
log.compact()
"""


def test_a_crash_right_after_the_first_compaction_swap_still_marks_the_log_compacted(
    tmp_path: Path,
) -> None:
    """The mark that allows gaps is durable before the first gap exists."""
    path = tmp_path / "log"
    config = LogConfig(
        fsync="never", segment_bytes=400, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0
    )
    with logstore.Log.open(path, config) as log:
        for i in range(60):
            log.append(b"value-%d" % i, key=_key(i), timestamp=T0 + i)
        log.roll()
        everything = list(log.scan())
        log.append(b"tail", key=b"tail", timestamp=T0 + 60)
    child = run_python(CHILD, str(path), env=child_env(LOGSTORE_CRASH_AT="swapped"))
    assert child.returncode == 77, child.stderr
    # Recovered and reopened with the default policy, as `logstore recover` or a new
    # owner would: the gaps are legal, nothing is cut.
    actions = logstore.Log.recover(path, force=True)
    assert [a for a in actions if a.action in ("truncate", "quarantine", "damaged")] == []
    with logstore.Log.open(path) as log:
        kept = list(log.scan())
        assert log.end_offset == 61
    assert kept[:-1] == _latest_per_key(everything)
    assert not list(path.glob("*.corrupt-*"))


# ---------------------------------------------------------------- indexes (case 3)

MONOTONIC = LogConfig(fsync="never", segment_bytes=2000, index_interval_bytes=64)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    """A closed log whose first segment (offsets 0..) has several index entries."""
    path = tmp_path_factory.mktemp("indexed") / "log"
    with logstore.Log.open(path, MONOTONIC) as log:
        for i in range(40):
            log.append_many(
                Message(b"v%d" % (2 * i + j), b"k", (), T0 + 10 * (2 * i + j)) for j in range(2)
            )
        records = list(log.scan())
        assert len(log.segments) >= 2
    return path, records


def _shift_time_index(path: Path) -> tuple[bytes, list[tuple[int, int]]]:
    """Give each time-index entry the next entry's offset: ascending, well-formed, wrong."""
    original = path.read_bytes()
    entries = list(struct.iter_unpack(">qi", original))
    assert len(entries) >= 4
    shifted = [(ts, entries[min(i + 1, len(entries) - 1)][1]) for i, (ts, _) in enumerate(entries)]
    shifted[-1] = entries[-1]  # the last entry stays right: only a query finds the others
    path.write_bytes(b"".join(struct.pack(">qi", *e) for e in shifted))
    return original, entries


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


def test_compaction_refuses_to_rewrite_a_damaged_base_offset(tmp_path: Path) -> None:
    """The cleaner rewrites what it reads: a wrong base offset must not become the truth."""
    config = LogConfig(
        fsync="never", segment_messages=20, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0
    )
    path = tmp_path / "log"
    with logstore.Log.open(path, config) as log:
        for _ in range(20):
            log.append_many(Message(b"v", b"k%d" % (j % 3), (), T0) for j in range(5))
    sealed = path / SEALED
    position, base = _batch_positions(sealed)[1]
    assert base == 25
    _flip(sealed, position + 7, 0x01)  # 25 -> 24: overlaps the batch before
    before = file_hashes(path)
    with logstore.Log.open(path, config) as log:
        with pytest.raises(CorruptLogError) as info:
            log.compact()
        assert (info.value.path, info.value.position) == (str(sealed), position)
        assert "overlaps or goes back" in str(info.value)
    after = file_hashes(path)
    assert {k: v for k, v in after.items() if k.endswith(".log")} == {
        k: v for k, v in before.items() if k.endswith(".log")
    }


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


@pytest.mark.parametrize("policy", ["compact", "delete"])
def test_a_base_offset_moved_into_the_next_batches_is_never_served(
    tmp_path: Path, policy: str
) -> None:
    """Gaps may be legal (a compacting policy), overlaps never: a batch whose base
    offset moved up into its successors' offsets is refused before it is served,
    by read, scan, read_batches and offset_for_timestamp alike."""
    path = tmp_path / "log"
    config = LogConfig(
        fsync="never",
        segment_messages=50,
        cleanup_policy=policy,  # type: ignore[arg-type]
        min_cleanable_dirty_ratio=1.0,
    )
    with logstore.Log.open(path, config) as log:
        for i in range(150):
            log.append(b"v%03d" % i, key=b"k%03d" % i, timestamp=1000 + i)
    sealed = path / f"{50:020d}.log"
    position = dict((base, pos) for pos, base in _batch_positions(sealed))[65]
    data = bytearray(sealed.read_bytes())
    struct.pack_into(">q", data, position, 68)
    sealed.write_bytes(bytes(data))
    with logstore.Log.open(path, config) as log:
        assert [r.offset for r in log.read(60, max_records=5)] == [60, 61, 62, 63, 64]
        for call in (
            lambda: log.read(65, max_records=3),
            lambda: log.read(60, max_records=10),
            lambda: log.read_batches(65),
            lambda: log.offset_for_timestamp(1065),
        ):
            with pytest.raises(CorruptLogError) as info:
                call()
            assert info.value.path == str(sealed)
        served = []
        with pytest.raises(CorruptLogError):
            for record in log.scan(60):
                served.append(record.offset)
        assert served == [60, 61, 62, 63, 64]
