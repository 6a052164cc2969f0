"""One owner for housekeeping: the ``Maintenance`` thread, and rolling that only rolls."""

from __future__ import annotations

import threading
from pathlib import Path

import logstore
from logstore import LogConfig
from logstore.maintenance import Maintenance

from .conftest import FakeClock, OpenLog
from .test_retention import DAY, BlockingArchive, _in_thread


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


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
    assert hook.calls == [f"{0:020d}.log"]
    assert log.start_offset == 5
    assert [(r.offset, r.value) for r in log.scan()] == [(5, b"rolls"), (6, b"during")]


def test_an_append_that_rolls_keeps_the_records_it_wrote(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(retention_ms=DAY, segment_messages=5)
    old = clock.now_ms - 2 * DAY
    log.append_many([logstore.Message(b"o%d" % i, timestamp=old) for i in range(7)])
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
            with log._maintained:
                assert log._maintained.wait_for(lambda log=log: log.start_offset == 5, timeout=30)
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
