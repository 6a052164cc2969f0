"""``Consumer``: group membership, positions, commits, rebalances, polling (API.md)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore import ConfigError, Message, PartitionNotAssignedError

from .conftest import REPO, FakeClock, child_env
from .helpers_broker import _broker, drain, open_broker, triples


def read_lines_until(proc: subprocess.Popen[bytes], wanted: str, timeout: float) -> list[str]:
    """Lines the child printed up to and including ``wanted``; fails after ``timeout`` s.

    Reads the raw pipe (no Python buffering that ``select`` cannot see).
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            lines = buf.decode().split("\n")
            if wanted in lines[:-1]:
                return lines[: lines.index(wanted) + 1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child did not print {wanted!r}; got {buf!r}")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"child exited before {wanted!r}; got {buf!r}")
            buf += chunk


# ---------------------------------------------------------------- 6. consumer groups
def test_group_consumes_once_commits_and_resumes_after_reopen(
    tmp_path: Path, clock: FakeClock
) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        topic = broker.create_topic("t", 3)
        produced = broker.produce_many(
            "t", [Message(b"v%d" % i, key=b"k%d" % i) for i in range(40)]
        )
        expected = sorted((p, o, b"v%d" % i) for i, (p, o) in enumerate(produced))
        ends = [topic.partition(p).end_offset for p in range(3)]
        assert sum(ends) == 40
        with broker.consumer("g", "t", start="earliest") as c:
            assert [c.committed("t", p) for p in range(3)] == [None] * 3
            got = drain(c, max_records=7)
            assert triples(got) == expected  # everything, each once
            assert len(got) == 40
            c.commit()
            assert [c.committed("t", p) for p in range(3)] == ends

    with open_broker(root, clock) as broker:
        with broker.consumer("g", "t") as c:
            assert [c.committed("t", p) for p in range(3)] == ends
            assert c.poll() == []
            new = broker.produce_many("t", [Message(b"n%d" % i, key=b"k%d" % i) for i in range(5)])
            assert triples(drain(c)) == sorted((p, o, b"n%d" % i) for i, (p, o) in enumerate(new))
        with broker.consumer("other", "t", start="earliest") as other:
            assert len(drain(other)) == 45
        with broker.consumer("late", "t", start="latest") as late:
            assert late.poll() == []


def test_uncommitted_records_are_delivered_again(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        for i in range(20):
            broker.produce("t", b"v%d" % i, partition=i % 2)
        with broker.consumer("g", "t") as c:
            first = c.poll(max_records=6)
            assert len(first) == 6
            c.commit()
            committed = [c.committed("t", p) for p in range(2)]
            assert sum(committed) == 6
            second = c.poll(max_records=5)
            assert len(second) == 5
        with broker.consumer("g", "t") as again:  # no commit after ``second``
            rest = drain(again)
            assert len(rest) == 14
            assert set(triples(second)) <= set(triples(rest))
            assert not set(triples(first)) & set(triples(rest))
            assert [again.committed("t", p) for p in range(2)] == committed


def test_commit_of_chosen_offsets(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        broker.create_topic("u", 1)
        for i in range(10):
            broker.produce("t", b"v%d" % i, partition=i % 2)
        with broker.consumer("g", "t") as c:
            assert len(drain(c)) == 10
            c.commit({("t", 1): 3})  # only that partition, and not its position (5)
            assert [c.committed("t", p) for p in range(2)] == [None, 3]
            with pytest.raises(logstore.PartitionNotAssignedError, match="u-0 is not assigned"):
                c.commit({("t", 0): 1, ("u", 0): 1})
            with pytest.raises(TypeError, match="offset must be an int >= 0"):
                c.commit({("t", 0): -1})
            assert [c.committed("t", p) for p in range(2)] == [None, 3]  # nothing of either
        with broker.consumer("g", "t") as again:
            assert [again.position("t", p) for p in range(2)] == [0, 3]


# ---------------------------------------------------------------- 7. SIGKILL
CHILD_SIGKILL = """
import json, sys, time
import logstore
root = sys.argv[1]
broker = logstore.Broker.open(root, logstore.LogConfig(fsync="never"), maintenance_interval_ms=None)
broker.create_topic("t", 3)
for i in range(60):
    broker.produce("t", b"v%d" % i, key=b"k%d" % i)
c = broker.consumer("g", "t")
got = 0
while got < 25:
    got += len(c.poll(max_records=4))
c.commit()
positions = {str(p): c.committed("t", p) for p in range(3)}
print(json.dumps({"positions": positions, "got": got}))
print("committed", flush=True)
deadline = time.monotonic() + 60
i = 0
while time.monotonic() < deadline:
    broker.produce("t", b"more%d" % i, key=b"m%d" % i)
    c.poll(max_records=3)
    i += 1
"""


def test_committed_offsets_survive_sigkill(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD_SIGKILL), str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=REPO,
    )
    try:
        lines = read_lines_until(proc, "committed", timeout=30)
        report = json.loads(lines[-2])
        threading.Event().wait(0.2)  # let it produce and poll past the commit
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, stderr
    positions = {int(p): o for p, o in report["positions"].items()}
    assert sum(positions.values()) == report["got"]

    with open_broker(root, clock) as broker:
        assert broker.committed_offsets() == {("g", "t", p): o for p, o in positions.items()}
        topic = broker.topic("t")
        assert sum(topic.partition(p).end_offset for p in range(3)) >= 60
        with broker.consumer("g", "t") as c:
            assert [c.committed("t", p) for p in range(3)] == [positions[p] for p in range(3)]
            assert [c.position("t", p) for p in range(3)] == [positions[p] for p in range(3)]
            first = [r for r in drain(c) if r.record.value.startswith(b"v")]  # type: ignore[union-attr]
            assert len(first) == 60 - report["got"]
            assert all(r.record.offset >= positions[r.partition] for r in first)


# ---------------------------------------------------------------- 8. start positions and seek
def test_start_latest(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        for i in range(5):
            broker.produce("t", b"old%d" % i, partition=i % 2)
        with broker.consumer("g", "t", start="latest") as c:
            assert [c.position("t", p) for p in range(2)] == [3, 2]
            assert c.poll() == []
            broker.produce("t", b"new0", partition=0)
            broker.produce("t", b"new1", partition=1)
            broker.produce("t", b"new2", partition=1)
            assert triples(drain(c)) == [(0, 3, b"new0"), (1, 2, b"new1"), (1, 3, b"new2")]


def test_start_timestamp(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 3)
        stamps = {0: [1000, 2000, 3000, 4000], 1: [1500, 2500, 3500], 2: [100, 200]}
        for p, ts_list in stamps.items():
            for ts in ts_list:
                broker.produce("t", b"%d" % ts, partition=p, timestamp=ts)
        with broker.consumer("g", "t", start=2500) as c:
            assert [c.position("t", p) for p in range(3)] == [2, 1, 2]
            got = drain(c)
            assert sorted((r.partition, r.record.timestamp) for r in got) == [
                (0, 3000),
                (0, 4000),
                (1, 2500),
                (1, 3500),
            ]


def test_start_timedelta_uses_the_clock(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 1)
        t0 = clock.now_ms
        for i in range(20):
            broker.produce("t", b"r%d" % i)  # timestamp = clock time
            clock.advance(1000)
        assert [r.timestamp for r in broker.topic("t").partition(0).scan()] == [
            t0 + 1000 * i for i in range(20)
        ]
        # now = t0 + 20 s; 10 s ago = t0 + 10 s = record 10
        with broker.consumer("g", "t", start=datetime.timedelta(seconds=10)) as c:
            assert c.position("t", 0) == 10
            assert [r.record.value for r in drain(c)] == [b"r%d" % i for i in range(10, 20)]
        with broker.consumer("h", "t", start=datetime.timedelta(seconds=9.5)) as c:
            assert c.position("t", 0) == 11
        with broker.consumer("i", "t", start=datetime.timedelta(0)) as c:
            assert c.position("t", 0) == 20
            assert c.poll() == []


def test_seek(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("t", 2)
        for i in range(10):
            broker.produce("t", b"v%d" % i, partition=0)
        with broker.consumer("g", "t") as a:
            a.seek("t", 0, 7)
            assert a.position("t", 0) == 7
            assert triples(drain(a)) == [(0, 7, b"v7"), (0, 8, b"v8"), (0, 9, b"v9")]
            a.seek("t", 0, 2)
            assert [r.record.offset for r in a.poll(max_records=2)] == [2, 3]
            a.seek("t", 0, 10)  # the end is a valid position
            assert a.poll() == []
            with pytest.raises(logstore.OffsetOutOfRange):
                a.seek("t", 0, 11)
            with pytest.raises(logstore.OffsetOutOfRange):
                a.seek("t", 0, -1)
            topic.partition(0).delete_before(4)
            with pytest.raises(logstore.OffsetOutOfRange):
                a.seek("t", 0, 3)
            a.seek("t", 0, 4)
            assert a.position("t", 0) == 4
            with pytest.raises(ValueError):
                a.seek("t", 2, 0)  # no such partition
            with pytest.raises(ValueError):
                a.seek("other", 0, 0)
            with broker.consumer("g", "t") as b:
                assert (a.assignment, b.assignment) == ([("t", 0)], [("t", 1)])
                with pytest.raises(ValueError):
                    a.seek("t", 1, 0)  # assigned to the other member
                with pytest.raises(ValueError):
                    b.seek("t", 0, 5)
                assert a.position("t", 0) == 4


# ---------------------------------------------------------------- 9. rebalance
def test_rebalance_range_assignment_and_handover(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 4)

        def fill(start: int, count: int) -> None:
            for p in range(4):
                for i in range(start, start + count):
                    broker.produce("t", b"p%d-%d" % (p, i), partition=p)

        fill(0, 10)
        a = broker.consumer("g", "t")
        assert a.assignment == [("t", 0), ("t", 1), ("t", 2), ("t", 3)]
        assert len(drain(a)) == 40
        a.commit()
        b = broker.consumer("g", "t")
        assert a.assignment == [("t", 0), ("t", 1)]
        assert b.assignment == [("t", 2), ("t", 3)]
        assert [b.position("t", p) for p in (2, 3)] == [10, 10]
        with broker.consumer("g", "t") as c:
            assert (a.assignment, b.assignment, c.assignment) == (
                [("t", 0), ("t", 1)],
                [("t", 2)],
                [("t", 3)],
            )
        assert b.assignment == [("t", 2), ("t", 3)]

        fill(10, 5)
        assert triples(drain(a)) == sorted(
            (p, i, b"p%d-%d" % (p, i)) for p in (0, 1) for i in range(10, 15)
        )
        assert triples(drain(b)) == sorted(
            (p, i, b"p%d-%d" % (p, i)) for p in (2, 3) for i in range(10, 15)
        )
        a.commit()
        b.commit()
        fill(15, 3)
        assert len(a.poll(max_records=2)) == 2  # read, never committed
        a.close()
        assert b.assignment == [("t", 0), ("t", 1), ("t", 2), ("t", 3)]
        assert [b.position("t", p) for p in range(4)] == [15, 15, 15, 15]
        assert triples(drain(b)) == sorted(
            (p, i, b"p%d-%d" % (p, i)) for p in range(4) for i in range(15, 18)
        )
        b.close()


# ---------------------------------------------------------------- 10. committed offset deleted
@pytest.mark.parametrize("how", ["delete_before", "retention"])
def test_committed_offset_deleted_by_retention(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    config = {"segment_messages": 10}
    if how == "retention":
        config["retention_messages"] = 20
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("r", 1, config)
        log = topic.partition(0)
        for i in range(5):
            broker.produce("r", b"v%d" % i)
        with broker.consumer("g", "r") as c:
            assert len(drain(c)) == 5
            c.commit()
            assert c.committed("r", 0) == 5
        for i in range(5, 50):
            broker.produce("r", b"v%d" % i)
        if how == "delete_before":
            log.delete_before(30)
        else:
            log.apply_retention()
        assert log.start_offset == 30
        assert [s.base_offset for s in log.segments] == [30, 40]
        caplog.clear()
        caplog.set_level(logging.WARNING, logger="logstore")
        with broker.consumer("g", "r") as c:
            assert c.position("r", 0) == 30
            assert [r.record.offset for r in drain(c)] == list(range(30, 50))
        warnings = [
            r
            for r in caplog.records
            if r.name == "logstore.consumer" and r.levelno == logging.WARNING
        ]
        assert len(warnings) == 1
        assert "r-0" in warnings[0].getMessage() and "30" in warnings[0].getMessage()


def test_position_deleted_under_a_running_consumer(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        topic = broker.create_topic("r", 1, {"segment_messages": 10})
        for i in range(50):
            broker.produce("r", b"v%d" % i)
        with broker.consumer("g", "r") as c:
            assert [r.record.offset for r in c.poll(max_records=5)] == [0, 1, 2, 3, 4]
            caplog.set_level(logging.WARNING, logger="logstore")
            topic.partition(0).delete_before(30)
            assert [r.record.offset for r in drain(c)] == list(range(30, 50))
        assert any(
            r.name == "logstore.consumer" and r.levelno == logging.WARNING for r in caplog.records
        )


# ---------------------------------------------------------------- 13. poll timeout
def test_poll_wakes_up_when_data_arrives(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        with broker.consumer("g", "t") as c:
            polling = threading.Event()
            result: list[object] = []

            def poll() -> None:
                polling.set()
                t0 = time.monotonic()
                got = c.poll(timeout_ms=2000)
                result.append((got, time.monotonic() - t0))

            thread = threading.Thread(target=poll)
            thread.start()
            assert polling.wait(5)
            threading.Event().wait(0.2)  # the poll is now waiting
            broker.produce("t", b"hello", partition=1)
            thread.join(5)
            assert not thread.is_alive()
            [(got, elapsed)] = result
            assert triples(got) == [(1, 0, b"hello")]  # type: ignore[arg-type]
            assert 0.15 <= elapsed < 1.0  # type: ignore[operator]


def test_poll_times_out_empty(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        with broker.consumer("g", "t") as c:
            t0 = time.monotonic()
            assert c.poll(timeout_ms=200) == []
            elapsed = time.monotonic() - t0
            assert 0.2 <= elapsed < 1.5
            t0 = time.monotonic()
            assert c.poll() == []
            assert time.monotonic() - t0 < 0.15


# ---------------------------------------------------------------- consumers
def test_seek_and_position_on_an_unassigned_partition(tmp_path: Path) -> None:
    with _broker(tmp_path / "root") as broker:
        broker.create_topic("t", 2)
        with broker.consumer("g", "t") as a, broker.consumer("g", "t") as b:
            assert (a.assignment, b.assignment) == ([("t", 0)], [("t", 1)])
            with pytest.raises(PartitionNotAssignedError) as caught:
                a.seek("t", 1, 0)
            assert str(caught.value) == (
                f"t-1 is not assigned to consumer {a.member_id} of group g (assigned: t-0)"
            )
            assert (caught.value.topic, caught.value.partition) == ("t", 1)
            with pytest.raises(PartitionNotAssignedError, match=r"^t-0 is not assigned"):
                b.position("t", 0)  # was a bare KeyError
            with pytest.raises(PartitionNotAssignedError, match=r"^other-0 is not assigned"):
                a.seek("other", 0, 0)
            with pytest.raises(PartitionNotAssignedError, match=r"^t-5 .*\(assigned: t-1\)$"):
                b.seek("t", 5, 0)
            assert (a.position("t", 0), b.position("t", 1)) == (0, 0)


def test_a_bad_start_names_the_value_and_the_accepted_forms(tmp_path: Path) -> None:
    forms = (
        "'earliest', 'latest', 'last', an AtOffset, a timestamp in ms (int) or a datetime.timedelta"
    )
    with _broker(tmp_path / "root") as broker:
        broker.create_topic("t", 2)
        with pytest.raises(ConfigError) as caught:
            broker.consumer("g", "t", start="yesterday")  # type: ignore[arg-type]
        assert str(caught.value) == f"start 'yesterday' is not one of {forms}"
        assert isinstance(caught.value, ValueError)
        with pytest.raises(TypeError, match=r"start must be .* not float"):
            broker.consumer("g", "t", start=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not bool"):
            broker.consumer("g", "t", start=True)
        # The refused consumers never joined: a good one gets every partition.
        with broker.consumer("g", "t", start=datetime.timedelta(hours=1)) as c:
            assert c.assignment == [("t", 0), ("t", 1)]
