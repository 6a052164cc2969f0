"""One owner for housekeeping: the ``Maintenance`` thread, and rolling that only rolls."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, cleaner
from logstore.maintenance import Maintenance

from .conftest import FakeClock, OpenLog, settle
from .test_retention import DAY, BlockingArchive, _in_thread


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


class ThreadRecordingArchive(BlockingArchive):
    """A ``BlockingArchive`` that also notes the thread each call runs in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def __call__(self, paths: list[str]) -> None:
        self.threads.append(threading.current_thread().name)
        super().__call__(paths)


def _old(clock: FakeClock, n: int, prefix: bytes = b"o") -> list[logstore.Message]:
    return [
        logstore.Message(prefix + b"%d" % i, timestamp=clock.now_ms - 2 * DAY) for i in range(n)
    ]


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


def test_a_brokers_logs_share_its_one_maintenance_thread(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    hook = ThreadRecordingArchive()
    hook.release.set()  # never blocks
    config = LogConfig(fsync="never", retention_ms=DAY, segment_messages=5, archive=hook)
    with logstore.Broker.open(root, config, clock=clock, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", partitions=2)
        logs = broker.topic("t").logs
        for log in logs:
            log.append_many(_old(clock, 5))
            log.append(b"rolls")
        for log in logs:
            settle(log)
        assert {log._housekeeping.maintenance for log in logs} == {broker._maintenance}
        assert hook.threads == [f"logstore-maintenance-{root}"] * 2
        assert [log.start_offset for log in logs] == [5, 5]
        assert _threads(f"logstore-maintenance-{root}") == [f"logstore-maintenance-{root}"]
    assert _threads(f"logstore-maintenance-{root}") == []


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


def test_soon_runs_once_and_waiting_duplicates_coalesce() -> None:
    maintenance = Maintenance("logstore-maintenance-test")
    gate = threading.Event()
    calls: list[str] = []
    try:
        maintenance.soon(lambda: gate.wait(30), owner=maintenance)
        task = lambda: calls.append("pass")  # noqa: E731
        for _ in range(3):
            maintenance.soon(task, owner=maintenance)
        assert not maintenance.wait_idle(0.05)  # still held by the gate
        gate.set()
        assert maintenance.wait_idle(30)
    finally:
        maintenance.close()
    assert calls == ["pass"]
    assert maintenance.threads == 0


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


def test_a_broker_has_one_thread_for_maintenance_and_every_interval_fsync(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = LogConfig(fsync="interval", fsync_interval_ms=1)
    with logstore.Broker.open(root, config) as broker:
        broker.create_topic("t", partitions=3)
        broker.produce("t", b"x", partition=2)
        # Partitions with fsync="interval" had a thread each; now the broker's does it all.
        assert _threads(f"logstore-maintenance-{root}") == [f"logstore-maintenance-{root}"]
        broker.topic("t").partition(2).flush()
    assert _threads(f"logstore-maintenance-{root}") == []


def test_standalone_logs_can_share_one_maintenance(tmp_path: Path, clock: FakeClock) -> None:
    shared = Maintenance("logstore-maintenance-shared")
    config = LogConfig(retention_ms=1000, fsync="never")
    logs = [
        logstore.Log.open(
            tmp_path / name, config, clock=clock, maintenance_interval_ms=5, maintenance=shared
        )
        for name in ("a", "b")
    ]
    try:
        assert _threads("logstore-maintenance-") == ["logstore-maintenance-shared"]
        for log in logs:
            log.append_many([b"r%d" % i for i in range(5)])
        clock.advance(2 * DAY)
        for log in logs:
            with log._housekeeping.passed:
                assert log._housekeeping.passed.wait_for(
                    lambda log=log: log.start_offset == 5, timeout=30
                )
    finally:
        for log in logs:
            log.close()
    assert shared.threads == 1  # closing the logs leaves the caller's thread running
    shared.close()
    assert shared.threads == 0
    assert _threads("logstore-maintenance-") == []


def test_a_failing_task_stays_scheduled() -> None:
    ran = threading.Event()
    calls: list[int] = []

    def task() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first pass fails")
        ran.set()

    maintenance = Maintenance("logstore-maintenance-test")
    try:
        maintenance.every(1, task, owner=maintenance)
        assert ran.wait(timeout=30)
    finally:
        maintenance.close()
    assert len(calls) >= 2
    assert maintenance.threads == 0
