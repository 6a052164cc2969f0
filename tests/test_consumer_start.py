"""Start positions ``"last"`` and ``AtOffset`` (NATS Streaming's ``StartWithLastReceived``
and ``StartAtSequence``): records received, positions, commits, empty and
multi-partition topics, the offset's range."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from logstore import AtOffset, OffsetOutOfRange, WrongTypeError

from .conftest import FakeClock
from .helpers_broker import drain, open_broker, triples


def test_last_receives_the_last_stored_record_of_each_partition_first(
    tmp_path: Path, clock: FakeClock
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 3)
        for i in range(7):
            broker.produce("t", b"old%d" % i, partition=i % 2)  # p0: 4, p1: 3, p2: none
        with broker.consumer("g", "t", start="last") as c:
            assert [c.position("t", p) for p in range(3)] == [3, 2, 0]
            assert sorted(triples(drain(c))) == [(0, 3, b"old6"), (1, 2, b"old5")]
            broker.produce("t", b"new", partition=2)
            assert triples(drain(c)) == [(2, 0, b"new")]
            c.commit()
            assert [c.committed("t", p) for p in range(3)] == [4, 3, 1]
        assert broker.committed_offsets() == {("g", "t", 0): 4, ("g", "t", 1): 3, ("g", "t", 2): 1}


def test_last_on_an_empty_topic_behaves_as_latest(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        with broker.consumer("g", "t", start="last") as c:
            assert [c.position("t", p) for p in range(2)] == [0, 0]
            assert c.poll() == []
            broker.produce("t", b"a", partition=1)
            assert triples(drain(c)) == [(1, 0, b"a")]
            c.commit()
            assert (c.committed("t", 0), c.committed("t", 1)) == (0, 1)


def test_last_after_retention_emptied_the_log_starts_at_the_end(
    tmp_path: Path, clock: FakeClock
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        log = broker.create_topic("t", 1).partition(0)
        for i in range(5):
            broker.produce("t", b"v%d" % i)
        log.delete_before(5)
        assert (log.start_offset, log.end_offset) == (5, 5)
        with broker.consumer("g", "t", start="last") as c:
            assert c.position("t", 0) == 5
            assert c.poll() == []


def test_last_applies_only_where_the_group_never_committed(
    tmp_path: Path, clock: FakeClock
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        for i in range(6):
            broker.produce("t", b"v%d" % i, partition=i % 2)
        broker.commit_offsets("g", {("t", 0): 1})
        with broker.consumer("g", "t", start="last") as c:
            assert [c.position("t", p) for p in range(2)] == [1, 2]
            assert sorted(triples(drain(c))) == [(0, 1, b"v2"), (0, 2, b"v4"), (1, 2, b"v5")]


def test_at_offset_starts_each_partition_there(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        for i in range(10):
            broker.produce("t", b"v%d" % i, partition=i % 2)  # 5 each
        with broker.consumer("g", "t", start=AtOffset(3)) as c:
            assert [c.position("t", p) for p in range(2)] == [3, 3]
            assert sorted(triples(drain(c))) == [
                (0, 3, b"v6"),
                (0, 4, b"v8"),
                (1, 3, b"v7"),
                (1, 4, b"v9"),
            ]
            c.commit()
        assert broker.committed_offsets() == {("g", "t", 0): 5, ("g", "t", 1): 5}
        # The end offset itself is allowed: latest.
        with broker.consumer("h", "t", start=AtOffset(5)) as c:
            assert [c.position("t", p) for p in range(2)] == [5, 5]
            assert c.poll() == []


def test_at_offset_zero_of_an_empty_topic(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 1)
        with broker.consumer("g", "t", start=AtOffset(0)) as c:
            assert c.position("t", 0) == 0
            broker.produce("t", b"a")
            assert triples(drain(c)) == [(0, 0, b"a")]


def test_at_offset_beyond_the_end_names_the_offset_and_the_range(
    tmp_path: Path, clock: FakeClock
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        for i in range(5):
            broker.produce("t", b"v%d" % i, partition=i % 2)  # p0: 3, p1: 2
        with pytest.raises(OffsetOutOfRange) as caught:
            broker.consumer("g", "t", start=AtOffset(3))
        assert str(caught.value) == (
            "start offset 3 is beyond the end of t-1: its records are at offsets [0, 2) "
            "and the next one will be at 2"
        )
        # The refused consumer never joined and committed nothing.
        assert broker.committed_offsets() == {}
        with broker.consumer("g", "t", start=AtOffset(2)) as c:
            assert c.assignment == [("t", 0), ("t", 1)]
            assert sorted(triples(drain(c))) == [(0, 2, b"v4")]


def test_at_offset_beyond_the_end_of_a_committed_partition_is_not_an_error(
    tmp_path: Path, clock: FakeClock
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        for i in range(6):
            broker.produce("t", b"v%d" % i, partition=0)
        broker.commit_offsets("g", {("t", 1): 0})
        with broker.consumer("g", "t", start=AtOffset(4)) as c:
            assert [c.position("t", p) for p in range(2)] == [4, 0]


def test_at_offset_below_the_log_start_starts_at_the_log_start(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        log = broker.create_topic("t", 1, {"segment_messages": 10}).partition(0)
        for i in range(25):
            broker.produce("t", b"v%d" % i)
        log.delete_before(20)
        assert log.start_offset == 20
        caplog.set_level(logging.WARNING, logger="logstore")
        with broker.consumer("g", "t", start=AtOffset(5)) as c:
            assert c.position("t", 0) == 20
            assert [r.record.offset for r in drain(c)] == list(range(20, 25))
            c.commit()
            assert c.committed("t", 0) == 25
        assert [r.getMessage() for r in caplog.records if r.name == "logstore.consumer"] == [
            "group g: start offset 5 of t-0 is below the log start 20 "
            "(deleted by retention); starting there"
        ]


@pytest.mark.parametrize("offset", [-1, True, 1.0, "3"])
def test_at_offset_needs_an_int_offset_at_least_zero(
    tmp_path: Path, clock: FakeClock, offset: object
) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 1)
        with pytest.raises(WrongTypeError) as caught:
            broker.consumer("g", "t", start=AtOffset(offset))  # type: ignore[arg-type]
        assert str(caught.value) == f"AtOffset needs an int offset >= 0, got {offset!r}"
