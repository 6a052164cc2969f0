"""``Maintenance``: the one scheduler thread of retention, compaction and interval fsyncs."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig
from logstore.maintenance import Maintenance

from .conftest import FakeClock, settle
from .helpers import DAY, HOUR, ThreadRecordingArchive, _old, _segment_names, _threads
from .helpers_broker import open_broker


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


# ---------------------------------------------------------------- 12. maintenance
def _fill_for_retention(root: Path, clock: FakeClock) -> None:
    """100 records in segments of 5, written while no retention limit applies."""
    with open_broker(root, clock) as broker:
        broker.create_topic("m", 1, {"segment_messages": 5})
        broker.produce_many("m", [b"v%d" % i for i in range(100)])
        assert len(broker.topic("m").partition(0).segments) == 20
    # Control: opening with a retention limit but no maintenance deletes nothing.
    with open_broker(root, clock, logstore.LogConfig(fsync="never", retention_messages=10)) as b:
        assert b.topic("m").partition(0).start_offset == 0


def test_maintenance_thread_applies_retention_and_stops_on_close(
    tmp_path: Path, clock: FakeClock
) -> None:
    root = tmp_path / "root"
    _fill_for_retention(root, clock)
    threads_before = set(threading.enumerate())
    broker = open_broker(
        root,
        clock,
        logstore.LogConfig(fsync="never", retention_messages=10),
        maintenance_interval_ms=50,
    )
    try:
        started = set(threading.enumerate()) - threads_before
        assert len(started) == 1
        [maintenance] = started
        assert maintenance.is_alive()
        log = broker.topic("m").partition(0)
        waiter = threading.Event()
        deadline = time.monotonic() + 5
        while log.start_offset == 0 and time.monotonic() < deadline:
            waiter.wait(0.02)
        assert log.start_offset == 90
        assert [r.offset for r in log.scan()] == list(range(90, 100))
    finally:
        broker.close()
    assert not maintenance.is_alive()
    assert set(threading.enumerate()) - threads_before == set()


def test_run_maintenance_synchronously(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    _fill_for_retention(root, clock)
    config = logstore.LogConfig(fsync="never", retention_messages=10)
    with open_broker(root, clock, config) as broker:
        log = broker.topic("m").partition(0)
        assert log.start_offset == 0
        broker.run_maintenance()
        assert log.start_offset == 90
        assert [s.base_offset for s in log.segments] == [90, 95]
    with open_broker(root, clock) as broker:
        assert broker.topic("m").partition(0).start_offset == 90


def _maintenance_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"logstore-maintenance-{path}"]


def test_maintenance_thread_applies_retention_without_any_call(
    log_dir: Path, clock: FakeClock
) -> None:
    config = LogConfig(retention_ms=1000, fsync="never")
    log = logstore.Log.open(log_dir, config, clock=clock, maintenance_interval_ms=5)
    try:
        (worker,) = _maintenance_threads(log_dir)
        assert worker.daemon
        log.append_many([b"r%d" % i for i in range(5)])
        clock.advance(2 * HOUR)
        with log._housekeeping.passed:  # notified after each pass of the thread
            assert log._housekeeping.passed.wait_for(lambda: log.start_offset == 5, timeout=30)
        assert (log.start_offset, log.end_offset) == (5, 5)
        assert log.append(b"later") == 5
    finally:
        log.close()
    assert not worker.is_alive()  # close stopped and joined it
    assert _maintenance_threads(log_dir) == []


@pytest.mark.parametrize("interval", [None, 0])
def test_maintenance_thread_can_be_turned_off(
    log_dir: Path, clock: FakeClock, interval: int | None
) -> None:
    with logstore.Log.open(
        log_dir,
        LogConfig(retention_ms=1000, fsync="never"),
        clock=clock,
        maintenance_interval_ms=interval,
    ) as log:
        assert _maintenance_threads(log_dir) == []
        log.append_many([b"r%d" % i for i in range(5)])
        clock.advance(2 * HOUR)
        assert (log.start_offset, log.end_offset) == (0, 5)  # only an explicit call expires it
        assert len(log.apply_retention().removed) == 1


def test_maintenance_thread_is_on_by_default_and_stops_on_close(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic pass is scheduled by default; its thread starts when it is first due."""
    log = logstore.Log.open(log_dir, LogConfig(fsync="never"))
    assert log._housekeeping.maintenance._tasks  # the pass, a minute away
    assert _maintenance_threads(log_dir) == []  # started when first due, not by the open
    log.close()
    assert not log._housekeeping.maintenance._tasks
    from logstore import maintenance as maintenance_module

    monkeypatch.setattr(maintenance_module, "DEFER_START_S", 3600.0)  # no deferral: at once
    log = logstore.Log.open(log_dir, LogConfig(fsync="never"))
    (worker,) = _maintenance_threads(log_dir)
    log.close()
    assert not worker.is_alive()
    log.close()  # idempotent


def test_one_thread_does_interval_fsyncs_and_maintenance(log_dir: Path) -> None:
    log = logstore.Log.open(
        log_dir, LogConfig(fsync="interval", fsync_interval_ms=1), maintenance_interval_ms=1
    )
    try:
        assert len(_maintenance_threads(log_dir)) == 1
        log.append(b"x")
        with log._housekeeping.passed:
            passes = log._housekeeping.passes
            assert log._housekeeping.passed.wait_for(
                lambda: log._housekeeping.passes > passes and log.flushed_offset == 1, timeout=30
            )
    finally:
        log.close()
    assert _maintenance_threads(log_dir) == []


def test_broker_partitions_have_no_thread_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logstore import maintenance as maintenance_module

    monkeypatch.setattr(maintenance_module, "DEFER_START_S", 3600.0)  # threads start at once
    with logstore.Broker.open(tmp_path / "root", LogConfig(fsync="never")) as broker:
        broker.create_topic("t", partitions=2)
        names = {t.name for t in threading.enumerate()}
        assert f"logstore-maintenance-{tmp_path / 'root'}" in names  # the broker's one
        assert not [n for n in names if n.startswith(f"logstore-maintenance-{tmp_path / 'root'}/")]


def test_maintenance_thread_retries_after_the_archive_hook_fails(
    log_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def archive(paths: list[str]) -> None:
        calls.append(os.path.basename(paths[0]))
        if len(calls) == 1:
            raise RuntimeError("bucket unavailable")

    config = LogConfig(retention_ms=1000, fsync="never", archive=archive)
    with logstore.Log.open(log_dir, config, clock=clock, maintenance_interval_ms=5) as log:
        log.append_many([b"r%d" % i for i in range(5)])
        clock.advance(2 * HOUR)
        with log._housekeeping.passed:
            assert log._housekeeping.passed.wait_for(lambda: log.start_offset == 5, timeout=30)
        assert calls == [f"{0:020d}.log"] * 2  # refused once (kept), archived on the next pass
        assert _segment_names(log_dir) == [f"{5:020d}{s}" for s in (".index", ".log", ".timeindex")]
    assert any(
        "retention kept a segment" in r.getMessage() and "bucket unavailable" in r.getMessage()
        for r in caplog.records
    )


def test_a_periodic_task_a_while_away_starts_its_thread_when_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No thread is started (or joined) for a task not yet due; it still runs when due."""
    from logstore import maintenance as maintenance_module

    monkeypatch.setattr(maintenance_module, "DEFER_START_S", 0.05)
    ran = threading.Event()
    maintenance = Maintenance("logstore-maintenance-deferred")
    try:
        maintenance.every(100, ran.set, owner=maintenance)
        assert maintenance.threads == 0  # the process-wide starter starts it when due
        assert ran.wait(30)
        assert maintenance.threads == 1
    finally:
        maintenance.close()
    assert maintenance.threads == 0


def test_a_deferred_start_is_brought_forward_by_an_earlier_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from logstore import maintenance as maintenance_module

    monkeypatch.setattr(maintenance_module, "DEFER_START_S", 0.05)
    ran: list[str] = []
    done = threading.Event()
    maintenance = Maintenance("logstore-maintenance-forward")
    try:
        maintenance.every(3_600_000, lambda: ran.append("hourly"), owner=maintenance)
        maintenance.every(100, lambda: (ran.append("soon"), done.set()), owner=maintenance)
        assert done.wait(30)  # not held back to the hourly task's start
        maintenance.soon(lambda: ran.append("once"), owner=maintenance)
        assert maintenance.wait_idle(30)
    finally:
        maintenance.close()
    assert "hourly" not in ran and "once" in ran


def test_a_log_opened_and_closed_before_its_first_pass_starts_no_thread(log_dir: Path) -> None:
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as log:  # a pass a minute away
        log.append(b"x")
        assert _threads(f"logstore-maintenance-{log_dir}") == []
        assert log._housekeeping.maintenance.threads == 0
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as log:
        assert [r.value for r in log.scan()] == [b"x"]
