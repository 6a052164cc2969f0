"""Retention by bytes, messages, age and start offset; the archive hook."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig

from .conftest import FakeClock, OpenLog, file_hashes
from .helpers import DAY, HOUR, BlockingArchive, _in_thread, _segment_names


def _fill(log: logstore.Log, segments: int, per_segment: int, *, ts: int | None = None) -> None:
    """Append so that ``segments`` more sealed segments of ``per_segment`` records exist."""
    for s in range(segments):
        log.append_many(
            logstore.Message(b"v%03d" % (s * per_segment + i), key=b"k", timestamp=ts)
            for i in range(per_segment)
        )
        log.roll()


def _prepared(
    open_log: OpenLog, segments: int, per_segment: int, *, ts: int | None = None, **limits: object
) -> logstore.Log:
    """A log filled without limits (retention also runs on roll), reopened with them."""
    log = open_log()
    _fill(log, segments, per_segment, ts=ts)
    log.close()
    return open_log(**limits)


def test_retention_messages_keeps_at_least_the_limit(open_log: OpenLog) -> None:
    log = _prepared(open_log, 5, 10, retention_messages=25)  # 5 x 10 records, empty active
    result = log.apply_retention()
    # Dropping a 10-record segment is allowed while at least 25 records remain.
    assert [(r.base_offset, r.records, r.rule) for r in result.removed] == [
        (0, 10, "messages"),
        (10, 10, "messages"),
    ]
    assert log.start_offset == 20 == result.start_offset
    assert [r.offset for r in log.scan()] == list(range(20, 50))
    assert [s.base_offset for s in log.segments] == [20, 30, 40, 50]
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(19)


def test_retention_bytes_follows_kafkas_rule(open_log: OpenLog) -> None:
    log = _prepared(open_log, 3, 10)
    sizes = [s.size_bytes for s in log.segments]
    log.close()
    log = open_log(retention_bytes=sum(sizes) - sizes[0])  # exactly enough without segment 0
    result = log.apply_retention()
    assert [(r.base_offset, r.rule, r.size_bytes) for r in result.removed] == [
        (0, "bytes", sizes[0])
    ]
    assert log.size_bytes == sum(sizes) - sizes[0]


def test_retention_ms_judges_the_largest_timestamp(open_log: OpenLog, clock: FakeClock) -> None:
    old = clock.now_ms - 3 * DAY
    log = open_log()
    _fill(log, 2, 5, ts=old)
    log.append(b"mixed-old", key=b"k", timestamp=old)
    log.append(b"mixed-new", key=b"k", timestamp=clock.now_ms)  # keeps segment 2 alive
    log.roll()
    log.append(b"active", key=b"k", timestamp=old)  # the active segment is never deleted
    log.close()
    log = open_log(retention_ms=DAY)
    result = log.apply_retention()
    assert [(r.base_offset, r.rule, r.max_timestamp) for r in result.removed] == [
        (0, "age", old),
        (5, "age", old),
    ]
    assert [r.value for r in log.scan()] == [b"mixed-old", b"mixed-new", b"active"]


def test_active_segment_survives_limits_it_alone_exceeds(
    open_log: OpenLog, clock: FakeClock
) -> None:
    # Kafka's size rule: a segment goes only if the log still holds the limit without it.
    # The active segment alone cannot leave 10 bytes or 1 record behind, so it stays.
    log = open_log(retention_bytes=10, retention_messages=1, retention_ms=2 * DAY)
    log.append_many([logstore.Message(b"x" * 100, key=b"k", timestamp=clock.now_ms)] * 20)
    clock.advance(DAY)
    result = log.apply_retention()
    assert result.removed == ()
    assert not result.rolled
    assert log.end_offset == 20 and len(list(log.scan())) == 20


def test_limits_combined_remove_a_prefix_only(open_log: OpenLog, clock: FakeClock) -> None:
    old, new = clock.now_ms - 2 * DAY, clock.now_ms
    log = open_log()
    _fill(log, 1, 10, ts=new)  # young: stops everything after it
    _fill(log, 2, 10, ts=old)
    log.close()
    log = open_log(retention_messages=100, retention_ms=DAY)
    result = log.apply_retention()
    assert result.removed == ()  # age would take segments 1-2, but only a prefix may go
    log.close()
    log = open_log(retention_messages=15, retention_ms=DAY)
    result = log.apply_retention()
    assert [(r.base_offset, r.rule) for r in result.removed] == [
        (0, "messages"),
        (10, "age"),
        (20, "age"),
    ]
    assert log.start_offset == 30


def test_delete_policy_only_and_start_offset_rule(open_log: OpenLog) -> None:
    log = _prepared(open_log, 3, 10, retention_messages=5, cleanup_policy="compact,delete")
    log.close()
    log = open_log(retention_messages=5, cleanup_policy="compact")
    assert log.apply_retention().removed == ()  # limits apply only with "delete"
    log.delete_before(25)
    # delete_before already removed whole segments below; the rule reports none left
    assert [s.base_offset for s in log.segments] == [20, 30]
    assert log.apply_retention().removed == ()


def test_dry_run_changes_nothing(open_log: OpenLog, log_dir: Path) -> None:
    log = _prepared(open_log, 4, 10, retention_messages=10)
    before = sorted(os.listdir(log_dir))
    result = log.apply_retention(dry_run=True)
    assert result.dry_run
    assert [(r.base_offset, r.rule, r.records) for r in result.removed] == [
        (0, "messages", 10),
        (10, "messages", 10),
        (20, "messages", 10),
    ]
    assert result.start_offset == 30
    assert sorted(os.listdir(log_dir)) == before
    assert log.start_offset == 0
    assert len(list(log.scan())) == 40


def test_archive_callable_gets_the_paths_before_deletion(open_log: OpenLog, log_dir: Path) -> None:
    seen: list[tuple[list[str], bool]] = []

    def archive(paths: list[str]) -> None:
        seen.append((list(paths), all(os.path.exists(p) for p in paths)))

    log = _prepared(open_log, 3, 10, retention_messages=10, archive=archive)
    log.apply_retention()
    names = [[os.path.basename(p) for p in paths] for paths, _ in seen]
    assert names == [[f"{b:020d}{s}" for s in (".log", ".index", ".timeindex")] for b in (0, 10)]
    assert all(existed for _, existed in seen)  # called before the files went
    assert not (log_dir / f"{0:020d}.log").exists()


def test_failing_archiver_keeps_the_segment(
    open_log: OpenLog, log_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def archive(paths: list[str]) -> None:
        calls.append(os.path.basename(paths[0]))
        if len(calls) == 2:
            raise RuntimeError("bucket unavailable")

    log = _prepared(open_log, 3, 10, retention_messages=5, archive=archive)
    result = log.apply_retention()
    assert [r.base_offset for r in result.removed] == [0]
    assert result.kept_by_archive_failure == (10,)
    assert "bucket unavailable" in result.errors[0]
    assert (log_dir / f"{10:020d}.log").exists()
    assert log.start_offset == 10
    assert [r.offset for r in log.scan()][:1] == [10]


def test_archive_script_receives_the_paths(open_log: OpenLog, tmp_path: Path) -> None:
    record = tmp_path / "archived.txt"
    script = tmp_path / "archive.sh"
    script.write_text(f'#!/bin/sh\nfor f in "$@"; do basename "$f" >> {record}; done\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = _prepared(open_log, 3, 10, retention_messages=15, archive=str(script))
    result = log.apply_retention()
    assert [r.base_offset for r in result.removed] == [0]
    assert record.read_text().split() == [
        f"{0:020d}.log",
        f"{0:020d}.index",
        f"{0:020d}.timeindex",
    ]


def test_failing_archive_script_keeps_the_segment(open_log: OpenLog, tmp_path: Path) -> None:
    script = tmp_path / "archive.sh"
    script.write_text("#!/bin/sh\necho 'disk quota exceeded' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = _prepared(open_log, 2, 10, retention_messages=5, archive=str(script))
    result = log.apply_retention()
    assert result.removed == ()
    assert result.kept_by_archive_failure == (0,)
    assert "exited 3: disk quota exceeded" in result.errors[0]
    assert len(list(log.scan())) == 20


def test_deletion_leaves_no_files_and_survives_reopen(open_log: OpenLog, log_dir: Path) -> None:
    log = _prepared(open_log, 3, 10, retention_messages=10)
    log.apply_retention()
    log.close()
    assert not [n for n in os.listdir(log_dir) if n.endswith(".deleted")]
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as reopened:
        assert reopened.start_offset == 20
        assert [r.offset for r in reopened.scan()] == list(range(20, 30))


def _assert_empty_at(log: logstore.Log, log_dir: Path, offset: int) -> None:
    """The log is one empty segment at ``offset``, and nothing below it can be read."""
    assert log.start_offset == log.end_offset == offset
    assert [(s.base_offset, s.next_offset, s.records, s.size_bytes) for s in log.segments] == [
        (offset, offset, 0, 0)
    ]
    assert _segment_names(log_dir) == [
        f"{offset:020d}{suffix}" for suffix in (".index", ".log", ".timeindex")
    ]
    assert list(log.scan()) == []
    assert log.read(offset) == []
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(offset - 1)


def test_idle_log_expires_records_in_its_active_segment(
    open_log: OpenLog, clock: FakeClock, log_dir: Path
) -> None:
    log = open_log(retention_ms=1000)
    written = clock.now_ms
    assert log.append_many([b"r%d" % i for i in range(5)]) == range(5)
    clock.advance(2 * HOUR)
    result = log.apply_retention()
    assert [
        (r.base_offset, r.next_offset, r.records, r.max_timestamp, r.rule) for r in result.removed
    ] == [(0, 5, 5, written, "age")]
    assert result.rolled and not result.dry_run and result.start_offset == 5
    _assert_empty_at(log, log_dir, 5)
    assert log.apply_retention().removed == ()  # the empty active segment never goes
    log.close()
    log = open_log(retention_ms=1000)
    _assert_empty_at(log, log_dir, 5)  # the start offset was checkpointed
    assert log.append(b"later") == 5  # the end offset never goes back
    log.close()
    log = open_log(retention_ms=1000)
    assert (log.start_offset, log.end_offset) == (5, 6)
    assert [(r.offset, r.value) for r in log.scan()] == [(5, b"later")]


def test_every_segment_due_rolls_and_deletes_the_active_one_too(
    open_log: OpenLog, clock: FakeClock, log_dir: Path
) -> None:
    old = clock.now_ms - 2 * DAY
    log = open_log()
    _fill(log, 2, 5, ts=old)
    log.append_many([logstore.Message(b"tail%d" % i, key=b"k", timestamp=old) for i in range(3)])
    log.close()
    log = open_log(retention_ms=DAY)
    result = log.apply_retention()
    assert [(r.base_offset, r.next_offset, r.rule) for r in result.removed] == [
        (0, 5, "age"),
        (5, 10, "age"),
        (10, 13, "age"),
    ]
    assert result.rolled
    _assert_empty_at(log, log_dir, 13)


@pytest.mark.parametrize(
    ("limit", "rule"), [("retention_bytes", "bytes"), ("retention_messages", "messages")]
)
def test_bytes_and_messages_take_the_active_segment_by_the_same_rule(
    open_log: OpenLog, log_dir: Path, limit: str, rule: str
) -> None:
    log = open_log()
    _fill(log, 1, 4)
    log.append_many([logstore.Message(b"a%d" % i, key=b"k") for i in range(3)])
    log.close()
    # A limit of 1: the active segment cannot go (nothing would remain), the sealed one can.
    log = open_log(**{limit: 1})
    result = log.apply_retention()
    assert [(r.base_offset, r.rule) for r in result.removed] == [(0, rule)]
    assert not result.rolled
    assert (log.start_offset, log.end_offset) == (4, 7)
    log.close()
    # A limit of 0: the log still holds at least 0 without any segment, so all go.
    log = open_log(**{limit: 0})
    result = log.apply_retention()
    assert [(r.base_offset, r.next_offset, r.records, r.rule) for r in result.removed] == [
        (4, 7, 3, rule)
    ]
    assert result.rolled
    _assert_empty_at(log, log_dir, 7)


def test_dry_run_explains_the_roll_and_changes_nothing(
    open_log: OpenLog, clock: FakeClock, log_dir: Path
) -> None:
    log = open_log(retention_ms=1000)
    log.append_many([b"r%d" % i for i in range(5)])
    clock.advance(2 * HOUR)
    log.flush()
    before = file_hashes(log_dir)
    result = log.apply_retention(dry_run=True)
    assert [(r.base_offset, r.next_offset, r.records, r.rule) for r in result.removed] == [
        (0, 5, 5, "age")
    ]
    assert result.dry_run and result.rolled and result.start_offset == 5
    assert file_hashes(log_dir) == before
    assert (log.start_offset, log.end_offset, len(log.segments)) == (0, 5, 1)
    assert [r.value for r in log.scan()] == [b"r%d" % i for i in range(5)]
    # and the real run then does what the dry run said
    done = log.apply_retention()
    assert (done.removed, done.rolled, done.start_offset) == (result.removed, True, 5)


def test_archive_gets_the_rolled_active_segment_sealed(
    open_log: OpenLog, clock: FakeClock, log_dir: Path
) -> None:
    seen: list[tuple[str, int]] = []

    def archive(paths: list[str]) -> None:
        seen.extend((os.path.basename(p), os.path.getsize(p)) for p in paths)

    log = open_log(retention_ms=1000, archive=archive)
    log.append_many([b"r%d" % i for i in range(5)])
    size = log.size_bytes
    clock.advance(2 * HOUR)
    log.apply_retention()
    # sealed: the preallocated indexes were trimmed (one time-index entry, no offset entry)
    assert seen == [(f"{0:020d}.log", size), (f"{0:020d}.index", 0), (f"{0:020d}.timeindex", 12)]
    _assert_empty_at(log, log_dir, 5)


def _retention_in_thread(log: logstore.Log) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    worker = threading.Thread(target=lambda: out.append(log.apply_retention()))
    worker.start()
    return worker, out


def test_archive_hook_runs_outside_the_log_lock(open_log: OpenLog, clock: FakeClock) -> None:
    hook = BlockingArchive()
    log = _prepared(open_log, 2, 5, ts=clock.now_ms - 2 * DAY, retention_ms=DAY, archive=hook)
    worker, out = _retention_in_thread(log)
    try:
        assert hook.entered.wait(timeout=30)
        assert _in_thread(lambda: log.append(b"during"))  # appends go on while the hook runs
        assert _in_thread(lambda: log.read(0))
    finally:
        hook.release.set()
        worker.join(timeout=30)
    (result,) = out
    assert isinstance(result, logstore.RetentionResult)
    assert [r.base_offset for r in result.removed] == [0, 5]
    assert hook.calls == [f"{0:020d}.log", f"{5:020d}.log"]
    assert log.start_offset == 10
    assert [(r.offset, r.value) for r in log.scan()] == [(10, b"during")]


def test_truncation_while_archiving_keeps_the_segments(open_log: OpenLog, clock: FakeClock) -> None:
    hook = BlockingArchive()
    log = _prepared(open_log, 2, 5, ts=clock.now_ms - 2 * DAY, retention_ms=DAY, archive=hook)
    worker, out = _retention_in_thread(log)
    try:
        assert hook.entered.wait(timeout=30)
        assert _in_thread(lambda: log.truncate(7))
    finally:
        hook.release.set()
        worker.join(timeout=30)
    (result,) = out
    assert isinstance(result, logstore.RetentionResult)
    assert result.removed == ()  # the plan was made before the truncation: void
    assert [r.offset for r in log.scan()] == list(range(7))
    # the next pass plans again: segment 0 is sealed and old; 5..6 is now the active one
    assert [(r.base_offset, r.next_offset) for r in log.apply_retention().removed] == [
        (0, 5),
        (5, 7),
    ]
    assert (log.start_offset, log.end_offset) == (7, 7)


def test_a_roll_during_archiving_archives_nothing_twice(
    open_log: OpenLog, clock: FakeClock
) -> None:
    hook = BlockingArchive()
    old = clock.now_ms - 2 * DAY
    log = _prepared(open_log, 2, 5, ts=old, retention_ms=DAY, archive=hook, segment_messages=5)
    worker, out = _retention_in_thread(log)
    try:
        assert hook.entered.wait(timeout=30)
        # 6 records roll once: the roll's retention waits for the pass in progress
        assert _in_thread(lambda: log.append_many([b"n%d" % i for i in range(6)]))
    finally:
        hook.release.set()
        worker.join(timeout=30)
    (result,) = out
    assert isinstance(result, logstore.RetentionResult)
    assert [r.base_offset for r in result.removed] == [0, 5]
    assert hook.calls == [f"{0:020d}.log", f"{5:020d}.log"]
    assert [s.base_offset for s in log.segments] == [10, 15]
    assert [r.offset for r in log.scan()] == list(range(10, 16))


def test_retention_reports_its_rule_as_a_retention_rule(open_log: OpenLog) -> None:
    log = _prepared(open_log, 5, 10, retention_messages=25)
    result = log.apply_retention()
    assert [r.rule for r in result.removed] == [
        logstore.RetentionRule.MESSAGES,
        logstore.RetentionRule.MESSAGES,
    ]
    assert all(type(r.rule) is logstore.RetentionRule for r in result.removed)
    assert [str(r.rule) for r in result.removed] == ["messages", "messages"]
