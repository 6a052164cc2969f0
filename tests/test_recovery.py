"""Crash safety: torn tails, bit flips, garbage, killed writers, failed writes.

Every case asserts exact content: which records survive, where the file is cut,
what the quarantine file holds, and that ``recovery="fail"`` changes no byte.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import logstore
from logstore import CorruptLogError, LogConfig
from logstore import batchfile as batchfile_module
from logstore import index as index_module
from logstore import segment as segment_module

from .conftest import FakeClock, OpenLog, file_hashes

SEGMENT_0 = f"{0:020d}.log"


def _batch_ends(path: Path) -> list[int]:
    data = path.read_bytes()
    ends, pos = [], 0
    while pos < len(data):
        pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "big")
        ends.append(pos)
    return ends


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


# ---------------------------------------------------------------- write failures


class _DiskFull:
    """Make the n-th write of segment data fail after writing part of it (ENOSPC)."""

    def __init__(self, fail_on: int) -> None:
        self.calls = 0
        self.fail_on = fail_on
        self.real = batchfile_module.write_all

    def __call__(self, fd: int, data: bytes | memoryview, position: int) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            self.real(fd, bytes(data)[: len(data) // 2], position)  # a torn write
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
