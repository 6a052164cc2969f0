"""``append_many`` and ``produce_many`` with ``(value, key)`` pairs.

A pair is a plain 2-tuple of ``bytes`` (or ``None``): a record without headers,
timestamped by the log's clock. The compiled encoder takes a list of them as it
is; the pure path turns each into an entry. Either way the records and the
bytes on disk are those of the same ``Message``s. Run with both codecs
(``LOGSTORE_PURE=1`` for the pure one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore import InvalidRecordError, LogConfig, Message, Record

from .conftest import FakeClock, OpenLog, file_hashes
from .helpers_broker import open_broker


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_pairs_append_as_records_with_consecutive_offsets(
    open_log: OpenLog, clock: FakeClock, compression: str
) -> None:
    log = open_log(compression=compression)
    log.append(b"first")
    now = clock.now_ms
    assert log.append_many([(b"v1", b"k1"), (None, b"k2"), (b"v3", None), (b"", b"")]) == range(
        1, 5
    )
    assert log.read(1) == [
        Record(1, now, b"k1", b"v1", ()),
        Record(2, now, b"k2", None, ()),
        Record(3, now, None, b"v3", ()),
        Record(4, now, b"", b"", ()),
    ]


def test_pairs_mix_with_values_and_messages(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log()
    now = clock.now_ms
    items: list[Any] = [b"a", (b"b", b"kb"), Message(b"c", key=b"kc", timestamp=5), (b"d", b"kd")]
    assert log.append_many(items) == range(0, 4)
    assert log.read(0) == [
        Record(0, now, None, b"a", ()),
        Record(1, now, b"kb", b"b", ()),
        Record(2, 5, b"kc", b"c", ()),
        Record(3, now, b"kd", b"d", ()),
    ]


def test_pairs_write_the_bytes_the_same_messages_write(tmp_path: Path, clock: FakeClock) -> None:
    values = [b"value-%d" % i for i in range(300)]
    keys = [b"key-%d" % (i % 7) for i in range(300)]
    config = LogConfig(fsync="never", segment_bytes=4_000)
    with logstore.Log.open(tmp_path / "pairs", config, clock=clock) as log:
        log.append_many(list(zip(values, keys)))
    with logstore.Log.open(tmp_path / "messages", config, clock=clock) as log:
        log.append_many([Message(v, key=k) for v, k in zip(values, keys)])
    pairs, messages = (
        {name: h for name, h in file_hashes(tmp_path / d).items() if name.endswith(".log")}
        for d in ("pairs", "messages")
    )
    assert pairs == messages
    assert len(pairs) == 2  # two segments: the plan was split at the roll


def test_pairs_split_into_batches_under_max_message_bytes_and_segment_messages(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(max_message_bytes=400, segment_messages=7)
    now = clock.now_ms
    pairs = [(b"v" * 30, b"k%d" % i) for i in range(20)]
    assert log.append_many(pairs) == range(0, 20)
    assert log.read(0) == [Record(i, now, b"k%d" % i, b"v" * 30, ()) for i in range(20)]
    assert [s.records for s in log.segments] == [7, 7, 6]


def test_pairs_from_an_iterator_and_of_bytes_like_items(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log()
    now = clock.now_ms
    assert log.append_many(iter([(bytearray(b"v"), memoryview(b"k")), (b"w", b"j")])) == range(0, 2)
    assert log.read(0) == [Record(0, now, b"k", b"v", ()), Record(1, now, b"j", b"w", ())]
    assert [type(r.key) for r in log.read(0)] == [bytes, bytes]


def test_a_compacted_log_takes_keyed_pairs_and_refuses_a_pair_without_a_key(
    open_log: OpenLog, clock: FakeClock, log_dir: Path
) -> None:
    log = open_log(cleanup_policy="compact")
    now = clock.now_ms
    assert log.append_many([(b"v", b"k"), (None, b"k")]) == range(0, 2)
    with pytest.raises(InvalidRecordError) as raised:
        log.append_many([(b"a", b"ka"), (b"b", None)])
    assert str(raised.value) == (
        f"{log_dir}: append_many item 1: a compacted log cannot accept a record without a key"
    )
    assert log.end_offset == 2
    assert log.read(0) == [Record(0, now, b"k", b"v", ()), Record(1, now, b"k", None, ())]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([(b"v", "k")], "append_many item 0: key must be bytes-like or None, not str"),
        ([b"ok", (1, b"k")], "append_many item 1: value must be bytes-like or None, not int"),
        (
            [(b"a", b"k"), (b"b", b"k"), (b"v", b"k", None)],
            "append_many item 2: a tuple must be a (value, key) pair, not 3 items",
        ),
        ([(b"v",)], "append_many item 0: a tuple must be a (value, key) pair, not 1 items"),
        (
            [Message(b"m"), (b"v", b"k"), ("v", b"k")],
            "append_many item 2: value must be bytes-like or None, not str",
        ),
        (
            [[b"v", b"k"]],
            "append_many items must be bytes, Message or (value, key) pairs, not list",
        ),
    ],
)
def test_a_bad_pair_is_refused_by_its_index_and_nothing_is_written(
    open_log: OpenLog, items: list[Any], message: str
) -> None:
    log = open_log()
    log.append(b"first")
    with pytest.raises(TypeError) as raised:
        log.append_many(items)
    assert str(raised.value) == message
    assert isinstance(raised.value, logstore.WrongTypeError)
    assert log.end_offset == 1


def test_produce_many_routes_pairs_as_it_routes_messages(tmp_path: Path, clock: FakeClock) -> None:
    values = [b"v%d" % i for i in range(40)]
    keys = [b"host-%d" % (i % 5) for i in range(40)]
    with open_broker(tmp_path / "a", clock) as broker:
        broker.create_topic("t", partitions=3)
        by_pairs = broker.produce_many("t", list(zip(values, keys)))
        with_none = broker.produce_many("t", [(b"x", None), (b"y", None)])
        stored = [
            [(r.offset, r.key, r.value) for r in broker.topic("t").partition(p).read(0)]
            for p in range(3)
        ]
    with open_broker(tmp_path / "b", clock) as broker:
        broker.create_topic("t", partitions=3)
        by_messages = broker.produce_many("t", [Message(v, key=k) for v, k in zip(values, keys)])
    assert by_pairs == by_messages
    assert len({p for p, _ in by_pairs}) == 3
    assert [p for p, _ in with_none] == [0, 1]  # round-robin, as values without a key
    for p in range(3):
        mine = [(o, keys[i], values[i]) for i, (q, o) in enumerate(by_pairs) if q == p]
        assert stored[p][: len(mine)] == mine


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [(b"a", b"k"), (b"v", 5)],
            "produce_many item 1: key must be bytes-like or None, not int",
        ),
        (
            [b"x", (b"v", b"k", b"extra")],
            "produce_many item 1: a tuple must be a (value, key) pair, not 3 items",
        ),
        ([(3, b"k")], "produce_many item 0: value must be bytes-like or None, not int"),
    ],
)
def test_produce_many_refuses_a_bad_pair_by_its_index(
    tmp_path: Path, clock: FakeClock, items: list[Any], message: str
) -> None:
    with open_broker(tmp_path, clock) as broker:
        broker.create_topic("t", partitions=2)
        with pytest.raises(TypeError) as raised:
            broker.produce_many("t", items)
        assert str(raised.value) == message
        assert [log.end_offset for log in broker.topic("t").logs] == [0, 0]
