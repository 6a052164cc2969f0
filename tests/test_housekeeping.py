"""A partition's housekeeping: the retention and compaction a roll makes due, run off the
append path.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, Record, cleaner
from logstore.maintenance import Maintenance

from .conftest import FakeClock, OpenLog, settle
from .helpers import (
    DAY,
    NOW,
    BlockingArchive,
    ThreadRecordingArchive,
    _in_thread,
    _old,
    _threads,
    compact_config,
    compacted,
    keyed_workload,
)


def cleaner_checkpoint(directory: Path) -> int:
    lines = (directory / "cleaner-offset-checkpoint").read_text().split("\n")
    assert lines[:2] == ["0", "1"], lines
    return int(lines[2].split()[2])


# ---------------------------------------------------------------- 6. compaction on roll
def test_roll_compacts_when_the_dirty_ratio_is_over_the_limit(open_log: OpenLog) -> None:
    # One record per batch, all batches the same size: the ratio is exact.
    log = open_log(cleanup_policy="compact", min_cleanable_dirty_ratio=0.5, segment_messages=3)
    records = []

    def append(i: int) -> None:
        key = b"abc"[i % 3 : i % 3 + 1]
        records.append(
            Record(log.append(b"v%02d" % i, key=key, timestamp=NOW), NOW, key, b"v%02d" % i, ())
        )
        settle(log)  # a roll's compaction runs on the maintenance thread

    for i in range(6):
        append(i)
    # The roll at offset 3 compacted [0, 3) (ratio 1): no duplicate key there.
    assert list(log.scan()) == records
    append(6)  # roll: clean [0, 3) vs dirty [3, 6): ratio exactly 0.5, not > 0.5
    assert list(log.scan()) == records
    for i in range(7, 9):
        append(i)
    append(9)  # roll: ratio 6/9 > 0.5: [0, 9) compacted by itself
    assert list(log.scan()) == records[6:]
    for i in range(10, 12):
        append(i)
    append(12)  # ratio 3/6 again: nothing
    assert list(log.scan()) == records[6:]
    for i in range(13, 15):
        append(i)
    append(15)
    assert list(log.scan()) == records[12:]


def test_auto_compaction_with_small_segments(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(cleanup_policy="compact", min_cleanable_dirty_ratio=0.5, segment_bytes=400)
    records = keyed_workload(log, 0, 300, 5, NOW)
    settle(log)
    bound = cleaner_checkpoint(log_dir)  # where the last automatic pass ended
    assert 0 < bound <= log.segments[-1].base_offset
    assert list(log.scan()) == compacted(records, bound)
    assert len(list(log.scan())) < 100


def test_no_auto_compaction_at_ratio_one(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(config=compact_config(segment_bytes=400))
    records = keyed_workload(log, 0, 300, 5, NOW)
    settle(log)
    assert len(log.segments) > 10
    assert list(log.scan()) == records
    assert not (log_dir / "cleaner-offset-checkpoint").exists()


def test_an_append_that_rolls_returns_before_its_retention_runs(
    log_dir: Path, clock: FakeClock
) -> None:
    hook = ThreadRecordingArchive()
    config = LogConfig(fsync="never", retention_ms=DAY, segment_messages=5, archive=hook)
    with logstore.Log.open(log_dir, config, clock=clock, maintenance_interval_ms=None) as log:
        log.append_many(_old(clock, 5))
        try:
            # The hook blocks until released: an append running retention would block too.
            assert _in_thread(lambda: log.append(b"rolls"))
            assert hook.entered.wait(timeout=30)
            assert log.start_offset == 0  # the pass waits in the hook, on another thread
            assert _in_thread(lambda: log.append(b"during"))
        finally:
            hook.release.set()
        settle(log)
        assert hook.threads == [f"logstore-maintenance-{log_dir}"]
        assert log.start_offset == 5
        assert [r.value for r in log.scan()] == [b"rolls", b"during"]


def test_retention_follows_a_roll_without_a_periodic_pass(log_dir: Path, clock: FakeClock) -> None:
    config = LogConfig(fsync="never", retention_messages=10, segment_messages=5)
    with logstore.Log.open(log_dir, config, clock=clock, maintenance_interval_ms=None) as log:
        assert _threads(f"logstore-maintenance-{log_dir}") == []  # started when first needed
        log.append_many([b"r%d" % i for i in range(23)])
        settle(log)
        assert _threads(f"logstore-maintenance-{log_dir}") == [f"logstore-maintenance-{log_dir}"]
        assert log.start_offset == 10  # sealed segments of 5 go while 10 records remain
        assert [r.offset for r in log.scan()] == list(range(10, 23))
    assert _threads(f"logstore-maintenance-{log_dir}") == []


def test_compaction_follows_a_roll_past_the_dirty_ratio(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds: list[str] = []
    clean_round = cleaner.clean_round

    def recording(*args: object, **kwargs: object) -> cleaner.Round:
        rounds.append(threading.current_thread().name)
        return clean_round(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cleaner, "clean_round", recording)
    config = LogConfig(
        fsync="never", cleanup_policy="compact", min_cleanable_dirty_ratio=0.5, segment_messages=4
    )
    with logstore.Log.open(log_dir, config, clock=clock, maintenance_interval_ms=None) as log:
        log.append_many([logstore.Message(b"v%d" % i, key=b"k") for i in range(4)])
        settle(log)
        assert rounds == []  # nothing sealed yet
        log.append(b"v4", key=b"k")  # rolls: [0, 4) is all dirty, ratio 1 > 0.5
        settle(log)
        assert rounds == [f"logstore-maintenance-{log_dir}"]
        assert [(r.offset, r.value) for r in log.scan()] == [(3, b"v3"), (4, b"v4")]


def test_a_closed_logs_roll_task_does_nothing(log_dir: Path, clock: FakeClock) -> None:
    config = LogConfig(fsync="never", retention_ms=DAY, segment_messages=5)
    shared = Maintenance("logstore-maintenance-shared")
    try:
        log = logstore.Log.open(log_dir, config, clock=clock, maintenance=shared)
        log.append_many(_old(clock, 5))
        gate = threading.Event()
        shared.soon(lambda: gate.wait(30), owner=shared)  # holds the thread
        log.append(b"rolls")  # its retention waits behind the gate
        log.close()  # drops the waiting task
        gate.set()
        assert shared.wait_idle(30)
        names = sorted(os.listdir(log_dir))
        log._housekeeping._after_roll()  # as if it had been handed over after close
        assert sorted(os.listdir(log_dir)) == names
        assert f"{0:020d}.log" in names  # nothing was deleted
    finally:
        shared.close()


def test_an_append_that_rolls_does_not_hold_the_lock_while_the_archive_hook_runs(
    open_log: OpenLog, clock: FakeClock
) -> None:
    hook = BlockingArchive()
    log = open_log(retention_ms=DAY, segment_messages=5, archive=hook)
    old = clock.now_ms - 2 * DAY
    log.append_many([logstore.Message(b"o%d" % i, timestamp=old) for i in range(5)])
    appender = threading.Thread(target=lambda: log.append(b"rolls"))  # rolls: segment 0 is due
    appender.start()
    try:
        assert hook.entered.wait(timeout=30)
        # The roll's retention runs the hook after the append released the lock.
        assert _in_thread(lambda: log.read(0, max_records=1))
        assert _in_thread(lambda: log.append(b"during"))
    finally:
        hook.release.set()
        appender.join(timeout=30)
    settle(log)
    assert hook.calls == [f"{0:020d}.log"]
    assert log.start_offset == 5
    assert [(r.offset, r.value) for r in log.scan()] == [(5, b"rolls"), (6, b"during")]


def test_an_append_that_rolls_keeps_the_records_it_wrote(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(retention_ms=DAY, segment_messages=5)
    old = clock.now_ms - 2 * DAY
    log.append_many([logstore.Message(b"o%d" % i, timestamp=old) for i in range(7)])
    settle(log)
    assert (log.start_offset, log.end_offset) == (5, 7)  # segment 0 went; 5..6 stay for now
    assert [s.base_offset for s in log.segments] == [5]
    assert log.apply_retention().rolled  # the next pass judges the active one too
    assert (log.start_offset, log.end_offset) == (7, 7)


def test_retention_runs_on_roll(open_log: OpenLog) -> None:
    log = open_log(retention_messages=20, segment_messages=10)
    log.append_many([logstore.Message(b"%d" % i, key=b"k") for i in range(55)])
    settle(log)
    # segments of 10; on each roll the oldest go while at least 20 records remain
    assert log.start_offset == 30
    assert [s.base_offset for s in log.segments] == [30, 40, 50]
    assert [r.offset for r in log.scan()] == list(range(30, 55))
