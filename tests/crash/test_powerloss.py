"""Power loss, not only a killed process: the crash-state harness and its regressions.

A SIGKILL keeps the page cache, so it cannot find a missing fsync; these tests
build the directory states a power loss could leave (see ``model``) and recover
each one. ``make test`` checks a few thousand states per codec;
``LOGSTORE_CRASH_STATES=50000`` checks more. The figures are printed at the end
of the run (and by ``python -m tests.crash``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore import CorruptLogError, LogConfig, batch
from logstore import _fs as fs

from ..conftest import VECTORS, run_python
from .check import check_state, operations
from .model import CrashState, materialise, replay, tree, unsynced_at
from .runner import explore, states_per_workload, trace
from .workloads import BROKER_DIR, CORRECT, LOG_DIR, value_for_batch_size

SEGMENT_0 = f"{0:020d}.log"


@pytest.fixture(autouse=True)
def _quiet_recovery() -> Iterator[None]:
    """Thousands of recoveries each log a torn tail: keep the output readable."""
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _lose_everything_unsynced(workload: str, tmp_path: Path) -> tuple[list[str], Path]:
    """Trace ``workload``; recover the state where a power loss at its very end
    dropped every operation no fsync covered. Returns the violations and the state."""
    ops = trace(workload, str(tmp_path))
    point = len(ops)
    state = CrashState(point, unsynced_at(ops, point))
    target = tmp_path / "state"
    target.mkdir()
    materialise(tree(replay(ops, state)), str(target))
    return check_state(workload, str(target), operations(ops), point), target


# ---------------------------------------------------------------- the harness


@pytest.mark.parametrize("workload", CORRECT)
def test_no_crash_state_loses_or_invents_a_record(workload: str, tmp_path: Path) -> None:
    max_states, per_point, scale = states_per_workload()
    ops = trace(workload, str(tmp_path), scale=scale)
    report = explore(workload, ops, max_states=max_states, per_point=per_point)
    assert report.violations == []
    # Not vacuous: every crash point was tried, with several states each on average.
    assert report.crash_points == report.operations + 1
    assert report.states >= min(max_states, 2 * report.crash_points) * 0.5


def test_harness_catches_a_file_whose_directory_was_never_fsynced(tmp_path: Path) -> None:
    report = explore("unsynced_file", trace("unsynced_file", str(tmp_path)), max_states=100)
    assert report.violations, report.line()
    assert all(v.endswith("acked.txt: acknowledged, missing") for v in report.violations)
    # Exactly the states that dropped the directory entry (the file's data was fsynced).
    assert len(report.violations) == 1


def test_harness_catches_the_old_log_directory_creation(tmp_path: Path) -> None:
    """``appends`` with Log.open creating its directories as it used to (os.makedirs)."""
    report = explore("unsynced_log_dirs", trace("unsynced_log_dirs", str(tmp_path)), max_states=300)
    assert report.violations, report.line()
    assert all("acknowledged offset 0 (key b'first') missing" in v for v in report.violations)


# ---------------------------------------------------------------- regressions


def test_a_new_log_directory_survives_a_power_loss(tmp_path: Path) -> None:
    """Log.open used os.makedirs without fsyncing the parents: the directory entry of
    ``data`` (and ``data/log``) could vanish, and with it the acknowledged record."""
    problems, state = _lose_everything_unsynced("new_log", tmp_path)
    assert problems == []
    with logstore.Log.open(state / LOG_DIR, LogConfig(fsync="never")) as log:
        assert [(r.offset, r.key, r.value) for r in log.scan()] == [(0, b"k", b"acknowledged")]


def test_a_new_topic_survives_a_power_loss_with_its_offsets(tmp_path: Path) -> None:
    """Broker created a topic's partition directories after the metadata write that
    fsynced the root: the records produced could vanish while the committed offsets
    survived, pointing past the end."""
    problems, state = _lose_everything_unsynced("new_topic", tmp_path)
    assert problems == []
    with logstore.Broker.open(state / BROKER_DIR, maintenance_interval_ms=None) as broker:
        t = broker.topic("t")
        assert [(r.offset, r.key) for r in t.partition(0).scan()] == [(0, b"k0")]
        assert [(r.offset, r.key) for r in t.partition(1).scan()] == [(0, b"k1")]
        assert broker.committed_offsets() == {("g", "t", 0): 1, ("g", "t", 1): 1}


def test_make_dirs_fsyncs_the_parent_of_every_level_it_creates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = fs.fsync_dir
    monkeypatch.setattr(fs, "fsync_dir", lambda path: (synced.append(path), real(path)))
    fs.make_dirs(str(tmp_path / "a" / "b" / "c"))
    assert synced == [str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    assert (tmp_path / "a" / "b" / "c").is_dir()
    synced.clear()
    fs.make_dirs(str(tmp_path / "a" / "b" / "c"))  # exists: its creator may not have synced
    assert synced == [str(tmp_path / "a" / "b")]
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileExistsError):
        fs.make_dirs(str(tmp_path / "file"))


_DELETE_THEN_CRASH = """
import os, sys, logstore
from logstore import consumer
root = sys.argv[1]
with logstore.Broker.open(root, maintenance_interval_ms=None) as b:
    b.create_topic("a", 1)
    b.produce("a", b"x", key=b"k")
    c = b.consumer("g", "a")
    c.poll()
    c.commit()
    assert b.committed_offsets() == {("g", "a", 0): 1}
    # The process dies as delete_topic reaches the groups' offsets.
    consumer.OffsetStore.forget_topic = lambda self, topic: os._exit(0)
    b.delete_topic("a")
"""


def test_a_deleted_topic_leaves_no_offsets_for_a_topic_of_the_same_name(tmp_path: Path) -> None:
    """delete_topic removed the topic from the metadata before tombstoning its offsets:
    a crash between the two left offsets a re-created topic inherited (the harness's
    broker workload found it: "committed offset ... but there is no such partition")."""
    root = tmp_path / "root"
    child = run_python(_DELETE_THEN_CRASH, str(root))
    assert child.returncode == 0, child.stderr
    with logstore.Broker.open(root, maintenance_interval_ms=None) as b:
        assert b.topics() == []
        assert b.committed_offsets() == {}
        b.create_topic("a", 1)
        assert b.consumer("g", "a").committed("a", 0) is None


def _torn_log(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A log whose second batch starts at byte 498 and was torn by a power loss: the
    file has its new size, but every byte from the 512-byte boundary on is zero (the
    second sector never reached the disk), so its magic byte (498 + 16) reads 0."""
    log_dir = tmp_path / "log"
    config = LogConfig(fsync="never")
    with logstore.Log.open(log_dir, config) as log:
        log.append(value_for_batch_size(498, b"first"), key=b"first")
        log.append(b"second" * 40, key=b"second")
    # The power went before close: no clean marker, and no recovery point past the
    # first open's (close wrote one at the end; nothing was flushed before it).
    os.remove(log_dir / ".kafka_cleanshutdown")
    os.remove(log_dir / "recovery-point-offset-checkpoint")
    path = log_dir / SEGMENT_0
    data = path.read_bytes()
    assert int.from_bytes(data[506:510], "big") + 12 == len(data) - 498  # length intact
    torn = data[:512] + bytes(len(data) - 512)
    path.write_bytes(torn)
    return log_dir, data, torn


def test_a_torn_append_whose_magic_reads_zero_is_cut_not_taken_for_a_legacy_segment(
    tmp_path: Path,
) -> None:
    """The header check tested the magic byte before the length and CRC: the torn
    tail was refused as "unsupported message format (magic 0)" and the whole log
    would not open with recovery="truncate", for one write never acknowledged."""
    log_dir, _, torn = _torn_log(tmp_path)
    with pytest.raises(CorruptLogError) as info:
        batch.read_header(torn, 498)
    assert info.value.kind == "invalid_magic"
    assert info.value.position == 498
    assert str(info.value) == (
        "<buffer> at byte 498: magic 0 at a batch start, and no legacy message's CRC holds "
        "there: damaged or torn"
    )
    fail = shutil.copytree(log_dir, tmp_path / "fail")
    with pytest.raises(CorruptLogError) as info:
        logstore.Log.open(fail, LogConfig(recovery="fail"))
    assert info.value.kind == "invalid_magic"
    assert info.value.position == 498
    assert (fail / SEGMENT_0).read_bytes() == torn
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as log:
        assert [(r.offset, r.key) for r in log.scan()] == [(0, b"first")]
        assert log.end_offset == 1
    assert (log_dir / SEGMENT_0).read_bytes() == torn[:498]
    assert (log_dir / f"{SEGMENT_0}.corrupt-498").read_bytes() == torn[498:]


@pytest.mark.parametrize("name", ["legacy_v0_message_set", "legacy_v1_message_set"])
def test_a_legacy_message_is_refused_only_while_its_own_crc_holds(name: str) -> None:
    data = bytearray((VECTORS / f"{name}.bin").read_bytes())
    with pytest.raises(CorruptLogError) as info:
        batch.read_header(data, 0)
    assert info.value.kind == "unsupported_magic"
    data[-1] ^= 0x01  # a flipped bit in its value: no longer a legacy message, damage
    last = 0
    pos = 0
    while pos < len(data):  # the damaged message is the last one of the set
        last, pos = pos, pos + 12 + int.from_bytes(data[pos + 8 : pos + 12], "big")
    with pytest.raises(CorruptLogError) as info:
        batch.read_header(data, last)
    assert info.value.kind == "invalid_magic"
    assert info.value.position == last
