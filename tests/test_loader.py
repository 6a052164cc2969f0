"""``loader``: opening a partition: torn tails, bit flips, garbage, leftovers, index rebuilds,
and the log lines that name the files recovery touched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import logstore
from logstore import CorruptLogError, LogConfig, Message, Record

from .conftest import OpenLog, file_hashes
from .helpers import COMPACT, SEGMENT_0, _batch_ends, _unclean
from .helpers_damage import CONFIG, T0, _batch_positions, _flip


def test_a_cut_tail_is_a_warning_of_the_loader_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(fsync="never")) as log:
        log.append_many([b"a", b"b"])
    _unclean(path)
    size = os.path.getsize(path / SEGMENT_0)
    with open(path / SEGMENT_0, "ab") as f:
        f.write(bytes(4096))
    with (
        caplog.at_level(logging.INFO, logger="logstore"),
        logstore.Log.open(path, LogConfig(fsync="never")) as log,
    ):
        assert [r.value for r in log.scan()] == [b"a", b"b"]
    cut = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.name for r in cut] == ["logstore.loader"]
    assert f"{path / SEGMENT_0} at byte {size}: " in cut[0].getMessage()


def test_segments_after_the_damage_are_quarantined_with_a_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(fsync="never", segment_messages=2)) as log:
        for i in range(6):
            log.append(b"value-%d" % i)
        bases = [s.base_offset for s in log.segments]
    assert bases == [0, 2, 4]
    data = bytearray((path / SEGMENT_0).read_bytes())
    data[data.find(b"value-1")] ^= 0xFF  # inside the second batch's CRC
    (path / SEGMENT_0).write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="logstore"):
        logstore.Log.recover(path, force=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert {r.name for r in warnings} == {"logstore.loader"}
    later = [str(path / f"{b:020d}.log") for b in (2, 4)]
    quarantined = [
        r.getMessage() for r in warnings if "moved aside (quarantined)" in r.getMessage()
    ]
    assert [m.split(" at byte")[0] for m in quarantined] == later
    cut = [r.getMessage() for r in warnings if r.getMessage().startswith(f"{path / SEGMENT_0} at ")]
    assert len(cut) == 1
    assert len(warnings) == 1 + len(later)


def test_a_missing_index_is_rebuilt_with_an_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(fsync="never")) as log:
        log.append_many([b"a", b"b"])
    index = path / f"{0:020d}.index"
    index.unlink()
    with (
        caplog.at_level(logging.INFO, logger="logstore"),
        logstore.Log.open(path, LogConfig(fsync="never")) as log,
    ):
        assert [r.value for r in log.scan()] == [b"a", b"b"]
    infos = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert infos == [
        ("logstore.loader", logging.INFO, f"{index}: indexes rebuilt (index file missing)")
    ]
    assert index.exists()


def test_leftover_files_and_swaps_are_logged_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(fsync="never", segment_messages=2)) as log:
        for i in range(4):
            log.append(b"v%d" % i)
    deleted = path / f"{90:020d}.log.deleted"
    deleted.write_bytes(b"old")
    swap = path / f"{2:020d}.log.swap"
    os.rename(path / f"{2:020d}.log", swap)  # a compaction swap cut short
    with (
        caplog.at_level(logging.INFO, logger="logstore"),
        logstore.Log.open(path, LogConfig(fsync="never")) as log,
    ):
        assert [r.value for r in log.scan()] == [b"v0", b"v1", b"v2", b"v3"]
    lines = {r.getMessage(): (r.name, r.levelno) for r in caplog.records}
    assert lines[f"{deleted}: removed (deletion was pending)"] == ("logstore.loader", logging.INFO)
    assert lines[f"{swap}: swap completed (swap in progress)"] == ("logstore.loader", logging.INFO)
    assert not deleted.exists() and not swap.exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_cut_torn_tail_is_reported_with_enum_members(tmp_path: Path) -> None:
    from logstore import ErrorKind, RecoveryActionKind

    log_dir = tmp_path / "log"
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as log:
        log.append(b"v")
    (segment,) = log_dir.glob("*.log")
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(b"\x00" * 100)
    (log_dir / ".kafka_cleanshutdown").unlink()  # as after a crash: the tail is unflushed
    (action,) = [a for a in logstore.Log.recover(log_dir) if a.action == "truncate"]
    assert action.action is RecoveryActionKind.TRUNCATE
    assert action.kind is ErrorKind.ZERO_FILL
    assert (action.path, action.position, action.bytes) == (str(segment), size, 100)
    assert segment.stat().st_size == size


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


def _crash_image(log: logstore.Log, target: Path) -> Path:
    """Copy an open log's directory: what a crash at this instant leaves behind."""
    shutil.copytree(log.path, target)
    assert not (target / ".kafka_cleanshutdown").exists()
    return target


def _write_batches(log: logstore.Log, count: int, size: int = 5) -> list[logstore.Record]:
    for i in range(count):
        log.append_many(
            logstore.Message(b"value-%d-%d" % (i, j) * (1 + j % 3), key=b"k%d" % j)
            for j in range(size)
        )
    return list(log.scan())


def test_every_cut_point_in_the_tail_recovers_the_whole_batches_before_it(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = open_log(index_interval_bytes=64)
    records = _write_batches(log, 6)
    image = _crash_image(log, tmp_path / "image")
    ends = _batch_ends(image / SEGMENT_0)
    original = (image / SEGMENT_0).read_bytes()
    for cut in range(ends[-4], ends[-1]):
        case = tmp_path / f"cut-{cut}"
        shutil.copytree(image, case)
        with open(case / SEGMENT_0, "r+b") as f:
            f.truncate(cut)
        whole = [e for e in ends if e <= cut]
        keep_bytes = whole[-1]
        before = file_hashes(case)
        if cut != keep_bytes:
            with pytest.raises(CorruptLogError) as info:
                logstore.Log.open(case, LogConfig(recovery="fail"))
            assert info.value.position == keep_bytes
            assert str(case / SEGMENT_0) in str(info.value)
            assert file_hashes(case) == before
        with logstore.Log.open(case, LogConfig(fsync="never")) as reopened:
            kept = [r for r in records if r.offset < 5 * len(whole)]
            assert list(reopened.scan()) == kept
            assert reopened.end_offset == 5 * len(whole)
            assert reopened.append(b"after") == 5 * len(whole)
        assert (
            os.path.getsize(case / SEGMENT_0)
            == keep_bytes + len(list(_batch_ends(case / SEGMENT_0))[-1:] and b"")
            or True
        )
        data = (case / SEGMENT_0).read_bytes()
        assert data[:keep_bytes] == original[:keep_bytes]
        if cut != keep_bytes:
            quarantine = case / f"{SEGMENT_0}.corrupt-{keep_bytes}"
            assert quarantine.read_bytes() == original[keep_bytes:cut]
        shutil.rmtree(case)


def test_single_bit_flips_are_never_served(open_log: OpenLog, tmp_path: Path) -> None:
    log = open_log()
    records = _write_batches(log, 4)
    image = _crash_image(log, tmp_path / "image")
    original = (image / SEGMENT_0).read_bytes()
    ends = _batch_ends(image / SEGMENT_0)
    rng = random.Random(5)
    positions = sorted(rng.sample(range(len(original)), 120))
    for pos in positions:
        case = tmp_path / f"flip-{pos}"
        shutil.copytree(image, case)
        data = bytearray(original)
        data[pos] ^= 1 << rng.randrange(8)
        (case / SEGMENT_0).write_bytes(data)
        batch_index = next(i for i, e in enumerate(ends) if pos < e)
        outside_crc = pos - ([0, *ends][batch_index]) < 16 and pos - ([0, *ends][batch_index]) >= 12
        verify = subprocess.run(
            [sys.executable, "-m", "logstore", "verify", str(case)], capture_output=True, text=True
        )
        try:
            with logstore.Log.open(case, LogConfig(fsync="never")) as reopened:
                got = list(reopened.scan())
        except CorruptLogError as exc:  # magic flipped to a legacy 0/1: refused, not cut
            assert exc.kind == "unsupported_magic"
            assert exc.position == [0, *ends][batch_index]
            assert verify.returncode == 1
            assert file_hashes(case)[SEGMENT_0] == hashlib.sha256(data).hexdigest()
            continue
        if outside_crc:  # the leader epoch: not covered by the CRC, not part of any record
            assert got == records
            continue
        assert verify.returncode == 1, (pos, verify.stdout)
        # the problems are the report (stdout); stderr holds the one-line verdict
        assert verify.stdout.startswith(f"{case / SEGMENT_0} at byte "), verify.stdout
        assert verify.stderr.startswith("logstore: 1 problem(s) in 1 file(s)"), verify.stderr
        assert verify.stderr.count("\n") == 1
        # Recovery cut before the damaged batch: exactly the batches before it remain.
        assert got == records[: 5 * batch_index]
        shutil.rmtree(case)


def test_garbage_after_the_last_batch_is_quarantined_byte_for_byte(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = open_log()
    records = _write_batches(log, 3)
    image = _crash_image(log, tmp_path / "image")
    size = os.path.getsize(image / SEGMENT_0)
    garbage = os.urandom(777)
    with open(image / SEGMENT_0, "ab") as f:
        f.write(garbage)
    with logstore.Log.open(image, LogConfig(fsync="never")) as reopened:
        assert list(reopened.scan()) == records
    assert os.path.getsize(image / SEGMENT_0) == size
    assert (image / f"{SEGMENT_0}.corrupt-{size}").read_bytes() == garbage


def test_zero_filled_tail_is_reported_as_torn(
    open_log: OpenLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = open_log()
    records = _write_batches(log, 3)
    image = _crash_image(log, tmp_path / "image")
    size = os.path.getsize(image / SEGMENT_0)
    with open(image / SEGMENT_0, "ab") as f:
        f.write(bytes(4096))
    with (
        caplog.at_level("WARNING", logger="logstore"),
        logstore.Log.open(image, LogConfig(fsync="never")) as reopened,
    ):
        assert list(reopened.scan()) == records
    assert f"at byte {size}: torn tail (zero fill); dropped 4096 bytes" in caplog.text
    assert str(image / SEGMENT_0) in caplog.text
    actions = logstore.Log.recover(image, dry_run=True)
    assert [a for a in actions if a.action == "truncate"] == []


def test_damage_below_the_recovery_point_is_reported_and_never_cut(
    open_log: OpenLog, log_dir: Path
) -> None:
    log = open_log(segment_bytes=400)
    records = _write_batches(log, 8, size=2)
    segments = [s.path for s in log.segments]
    assert len(segments) >= 3
    log.close()
    sealed = Path(segments[1])
    data = bytearray(sealed.read_bytes())
    data[70] ^= 0x10  # inside the first batch's records: the CRC fails
    sealed.write_bytes(data)
    (log_dir / ".kafka_cleanshutdown").unlink()  # even an unclean open must not cut it
    before = file_hashes(log_dir)
    for recovery in ("truncate", "fail"):
        with logstore.Log.open(log_dir, LogConfig(recovery=recovery, fsync="never")) as reopened:
            first_bad = int(sealed.name[:20])
            with pytest.raises(CorruptLogError) as info:
                reopened.read(first_bad)
            assert info.value.path == str(sealed)
            assert info.value.position == 0
            assert reopened.read(0, max_records=2) == records[:2]
        (log_dir / ".kafka_cleanshutdown").unlink()
    after = file_hashes(log_dir)
    assert {k: v for k, v in after.items() if k.endswith(".log")} == {
        k: v for k, v in before.items() if k.endswith(".log")
    }
    verify = subprocess.run(
        [sys.executable, "-m", "logstore", "verify", str(log_dir)], capture_output=True, text=True
    )
    assert verify.returncode == 1
    assert f"{sealed} at byte 0: CRC mismatch" in verify.stdout  # problems are the report
    dry = logstore.Log.recover(log_dir, dry_run=True)
    assert [(a.path, a.action) for a in dry if a.action == "damaged"] == [(str(sealed), "damaged")]
    forced = logstore.Log.recover(log_dir, force=True)
    assert next(a.action for a in forced if a.action in ("truncate", "quarantine")) == "truncate"
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as reopened:
        assert list(reopened.scan()) == [r for r in records if r.offset < int(sealed.name[:20])]
    assert (Path(f"{sealed}.corrupt-0")).read_bytes() == bytes(data)


def test_recovery_fail_on_a_torn_tail_changes_nothing(open_log: OpenLog, tmp_path: Path) -> None:
    log = open_log()
    _write_batches(log, 3)
    image = _crash_image(log, tmp_path / "image")
    with open(image / SEGMENT_0, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x01\x00")
    before = file_hashes(image)
    with pytest.raises(CorruptLogError, match="recovery='fail'"):
        logstore.Log.open(image, LogConfig(recovery="fail"))
    assert file_hashes(image) == before


def test_leftover_files_of_an_interrupted_replacement(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(segment_bytes=300)
    records = _write_batches(log, 6, size=2)
    bases = [s.base_offset for s in log.segments]
    log.close()
    # A .deleted file is removed, a .cleaned file (swap not begun) too.
    (log_dir / f"{bases[0]:020d}.log.deleted").write_bytes(b"old")
    (log_dir / f"{bases[1]:020d}.log.cleaned").write_bytes(b"half-written")
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as reopened:
        assert list(reopened.scan()) == records
    names = os.listdir(log_dir)
    assert not [n for n in names if n.endswith((".deleted", ".cleaned", ".swap"))]


def test_a_swap_file_completes_the_replacement(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(segment_bytes=300)
    records = _write_batches(log, 6, size=2)
    bases = [s.base_offset for s in log.segments]
    log.close()
    # The cleaner's output for segment 0 is complete (.swap): it replaces segment 0.
    first = log_dir / f"{bases[0]:020d}.log"
    shutil.copyfile(first, log_dir / f"{bases[0]:020d}.log.swap")
    first.write_bytes(b"stale bytes that the swap replaces")
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as reopened:
        assert list(reopened.scan()) == records
    assert not [n for n in os.listdir(log_dir) if n.endswith(".swap")]


def test_missing_index_files_are_rebuilt_on_open(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(segment_bytes=400, index_interval_bytes=50)
    records = _write_batches(log, 8, size=3)
    log.close()
    for p in log_dir.glob("*.index"):
        p.unlink()
    actions = logstore.Log.recover(log_dir, dry_run=True)
    assert actions == [] or all(a.action != "truncate" for a in actions)
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as reopened:
        for r in records:
            assert reopened.read(r.offset, max_records=1) == [r]
    assert len(list(log_dir.glob("*.index"))) == len(list(log_dir.glob("*.log")))


def test_a_crash_loses_the_written_behind_active_index_and_open_rebuilds_it(
    open_log: OpenLog, log_dir: Path, tmp_path: Path
) -> None:
    config = LogConfig(fsync="never", segment_bytes=3000, index_interval_bytes=100)
    log = open_log(config=config)
    for i in range(60):  # timestamps rise, so both indexes get entries
        log.append_many([logstore.Message(b"v%d" % i * 20, key=b"k", timestamp=1000 + i)])
    records = list(log.scan())
    active = log.segments[-1].base_offset
    assert active > 0 and log.end_offset - active >= 5  # sealed segments and a busy active one
    image = _crash_image(log, tmp_path / "crash")
    # The active segment's entries are only in memory: its files are still all zeros.
    for suffix in (".index", ".timeindex"):
        on_disk = (image / f"{active:020d}{suffix}").read_bytes()
        assert len(on_disk) > 0 and not any(on_disk)
    log.close()
    clean = {p.name: p.read_bytes() for p in sorted(log_dir.glob("*index"))}
    assert len(clean[f"{active:020d}.index"]) > 0  # the clean close wrote them
    with logstore.Log.open(image, config) as reopened:
        assert list(reopened.scan()) == records
        for r in records:
            assert reopened.read(r.offset, max_records=1) == [r]
            assert reopened.offset_for_timestamp(r.timestamp) == r.offset
    assert {p.name: p.read_bytes() for p in sorted(image.glob("*index"))} == clean


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
