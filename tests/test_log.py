"""``Log``: the public methods as API.md states them: appends, round trips in every codec,
close, concurrency, errors that name the log.
"""

from __future__ import annotations

import random
import shutil
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import logstore
from logstore import Message, Record, compression

from .conftest import FakeClock, OpenLog
from .helpers import NOW


# ---------------------------------------------------------------- appending
def test_append_returns_consecutive_offsets(open_log: OpenLog) -> None:
    log = open_log()
    assert [log.append(b"v%d" % i) for i in range(5)] == [0, 1, 2, 3, 4]
    assert log.end_offset == 5
    assert log.start_offset == 0
    assert [r.offset for r in log.read(0)] == [0, 1, 2, 3, 4]


def test_append_many_returns_a_range(open_log: OpenLog) -> None:
    log = open_log()
    assert log.append_many([b"a", b"b", b"c"]) == range(0, 3)
    assert log.append(b"d") == 3
    assert log.append_many([Message(b"e"), b"f"]) == range(4, 6)
    assert log.append_many([]) == range(6, 6)
    assert log.append_many(iter([b"g"])) == range(6, 7)  # any iterable
    assert log.end_offset == 7
    assert [r.value for r in log.read(0)] == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]


def test_timestamps_default_to_the_clock(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log()
    log.append(b"a")
    clock.advance(5)
    log.append_many([b"b", Message(b"c"), Message(b"d", timestamp=42)])
    assert [(r.offset, r.timestamp) for r in log.read(0)] == [
        (0, NOW),
        (1, NOW + 5),
        (2, NOW + 5),
        (3, 42),
    ]


# ---------------------------------------------------------------- closing and locking
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda log: log.append(b"v"), id="append"),
        pytest.param(lambda log: log.append_many([b"v"]), id="append_many"),
        pytest.param(lambda log: log.read(0), id="read"),
        pytest.param(lambda log: list(log.scan()), id="scan"),
        pytest.param(lambda log: log.flush(), id="flush"),
        pytest.param(lambda log: log.offset_for_timestamp(0), id="offset_for_timestamp"),
        pytest.param(lambda log: log.truncate(0), id="truncate"),
        pytest.param(lambda log: log.delete_before(1), id="delete_before"),
        pytest.param(lambda log: log.roll(), id="roll"),
    ],
)
def test_use_after_close_raises_log_closed(open_log: OpenLog, call) -> None:
    log = open_log()
    log.append_many([b"a", b"b"])
    log.close()
    with pytest.raises(logstore.LogClosedError):
        call(log)


def test_close_is_idempotent_and_context_manager_closes(log_dir: Path) -> None:
    config = logstore.LogConfig(fsync="never")
    with logstore.Log.open(log_dir, config) as log:
        log.append(b"a")
    log.close()
    log.close()
    with pytest.raises(logstore.LogClosedError):
        log.append(b"b")
    with logstore.Log.open(log_dir, config) as again:
        assert [r.value for r in again.read(0)] == [b"a"]


# ---------------------------------------------------------------- values round-trip
def test_headers_null_and_empty_values_round_trip(open_log: OpenLog) -> None:
    log = open_log()
    headers = [("a", b"1"), ("a", None), ("", b""), ("ünï", b"\x00\xff"), ("a", b"1")]
    log.append(b"", key=b"", headers=headers, timestamp=0)
    log.append(None, key=None)
    log.append(None, key=b"k", headers=[("h", None)])
    log.append_many(
        [
            Message(bytearray(b"ba"), key=memoryview(b"mv"), headers=(("x", bytearray(b"y")),)),
            Message(b"\x00" * 3, key=b"\x00"),
        ]
    )
    want = [
        Record(0, 0, b"", b"", tuple(headers)),
        Record(1, NOW, None, None, ()),
        Record(2, NOW, b"k", None, (("h", None),)),
        Record(3, NOW, b"mv", b"ba", (("x", b"y"),)),
        Record(4, NOW, b"\x00", b"\x00\x00\x00", ()),
    ]
    assert log.read(0) == want
    got = log.read(3)[0]
    assert type(got.key) is bytes
    assert type(got.value) is bytes
    assert type(got.headers) is tuple
    assert type(got.headers[0][1]) is bytes
    log.close()
    log = open_log()
    assert list(log.scan()) == want


CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd", "lz4", "snappy"])
def test_every_codec_round_trips(open_log: OpenLog, codec: str) -> None:
    rng = random.Random(codec)
    messages = [
        Message(b"a" * 1000, key=b"compressible"),
        Message(rng.randbytes(500), key=None, headers=[("h", rng.randbytes(20))]),
        Message(None, key=b"tombstone", timestamp=NOW - 10),
        Message(b""),
    ] + [Message(b"record %d " % i * 20, key=b"%d" % (i % 3)) for i in range(200)]
    log = open_log(compression=codec, segment_bytes=20_000)
    assert log.append_many(messages) == range(len(messages))
    log.append(b"single", key=b"k")
    want = [
        Record(i, NOW if m.timestamp is None else m.timestamp, m.key, m.value, tuple(m.headers))
        for i, m in enumerate([*messages, Message(b"single", key=b"k")])
    ]
    assert log.read(0) == want
    assert log.read(150, max_records=2) == want[150:152]
    first = Path(log.segments[0].path).read_bytes()
    (attributes,) = struct.unpack_from(">h", first, 21)
    assert attributes & 0x07 == CODEC_IDS[codec]
    if codec != "none":
        assert log.size_bytes < sum(len(r.value or b"") for r in want) // 2
    log.close()
    log = open_log(compression="none")  # the stored codec, not the config, decides
    assert list(log.scan()) == want


# ---------------------------------------------------------------- threads
def test_concurrent_appends_from_eight_threads(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=8192)
    per_thread = 200
    returned: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(tid: int) -> None:
        try:
            barrier.wait()
            mine = []
            for i in range(per_thread):
                mine.append(log.append(b"%d" % i, key=b"thread-%d" % tid))
            returned[tid] = mine
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(tid,)) for tid in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert log.end_offset == 8 * per_thread
    records = list(log.scan())
    assert [r.offset for r in records] == list(range(8 * per_thread))
    all_returned = sorted(o for offsets in returned.values() for o in offsets)
    assert all_returned == list(range(8 * per_thread))
    for tid in range(8):
        key = b"thread-%d" % tid
        mine = [r for r in records if r.key == key]
        assert [r.value for r in mine] == [b"%d" % i for i in range(per_thread)]
        assert [r.offset for r in mine] == returned[tid]


def test_concurrent_readers_never_see_partial_records(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=6000, index_interval_bytes=100)
    total = 3000
    done = threading.Event()
    errors: list[BaseException] = []

    def value_for(offset: int) -> bytes:
        return b"%08d" % offset * (1 + offset % 7)

    def check(records: list[Record], start: int) -> None:
        for expected_offset, r in enumerate(records, start):
            assert r.offset == expected_offset, (r.offset, expected_offset)
            assert r.key == b"k%d" % r.offset
            assert r.value == value_for(r.offset)
            assert r.headers == (("o", b"%d" % r.offset),)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not done.is_set():
                end = log.end_offset
                records = list(log.scan())
                assert len(records) >= end
                check(records, 0)
                start = rng.randrange(0, end + 1)
                got = log.read(start, max_records=rng.choice([None, 1, 50]))
                check(got, start)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
    for t in readers:
        t.start()
    try:
        offset = 0
        rng = random.Random(0)
        while offset < total:
            n = rng.choice([1, 1, 3, 17])
            batch = [
                Message(value_for(o), key=b"k%d" % o, headers=[("o", b"%d" % o)])
                for o in range(offset, offset + n)
            ]
            assert log.append_many(batch) == range(offset, offset + n)
            offset += n
    finally:
        done.set()
        for t in readers:
            t.join()
    assert errors == []
    check(list(log.scan()), 0)


def test_a_log_s_refusals_name_the_log(tmp_path: Path) -> None:
    path = tmp_path / "events"
    config = logstore.LogConfig(fsync="never", max_message_bytes=1024)
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        log.append(b"x")
        with pytest.raises(logstore.OffsetOutOfRange) as out_of_range:
            log.read(99)
        assert str(out_of_range.value) == f"{path}: offset 99 is outside the log's range [0, 1]"
        with pytest.raises(logstore.RecordTooLarge, match=f"^{path}: a record's batch is "):
            log.append(b"y" * 4096)
        with pytest.raises(logstore.OffsetOutOfRange, match=f"^{path}: cannot truncate to"):
            log.delete_before(1)
            log.truncate(0)
        with pytest.raises(logstore.OffsetOutOfRange, match=f"^{path}: cannot delete before 5"):
            log.delete_before(5)
    compacted = tmp_path / "keys"
    with (
        logstore.Log.open(
            compacted, logstore.LogConfig(cleanup_policy="compact"), maintenance_interval_ms=None
        ) as log,
        pytest.raises(
            logstore.InvalidRecordError,
            match=f"^{compacted}: a compacted log cannot accept a record without a key",
        ),
    ):
        log.append(b"no key")


CODECS = [c for c in compression.CODEC_IDS if compression.is_available(c)]


message = st.builds(
    logstore.Message,
    value=st.one_of(st.none(), st.binary(max_size=200)),
    key=st.one_of(st.none(), st.binary(max_size=20)),
    headers=st.lists(
        st.tuples(st.text(max_size=6), st.one_of(st.none(), st.binary(max_size=8))), max_size=2
    ).map(tuple),
    timestamp=st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 50)),
)


calls = st.lists(
    st.one_of(message, st.lists(st.one_of(message, st.binary(max_size=50)), max_size=20)),
    min_size=1,
    max_size=15,
)


@pytest.mark.parametrize("codec", CODECS)
@given(calls=calls, segment_bytes=st.integers(min_value=200, max_value=3000))
def test_round_trip(
    codec: str, calls: list, segment_bytes: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory: Path = tmp_path_factory.mktemp("rt")
    clock = FakeClock()
    config = logstore.LogConfig(
        compression=codec, segment_bytes=segment_bytes, fsync="never", index_interval_bytes=100
    )
    expected: list[tuple[object, ...]] = []
    with logstore.Log.open(directory, config, clock=clock) as log:
        for call in calls:
            clock.advance(5)
            if isinstance(call, logstore.Message):
                offset = log.append(
                    call.value, key=call.key, headers=call.headers, timestamp=call.timestamp
                )
                assert offset == len(expected)
                items = [call]
            else:
                got = log.append_many(call)
                assert got == range(len(expected), len(expected) + len(call))
                items = [
                    m if isinstance(m, logstore.Message) else logstore.Message(m) for m in call
                ]
            for m in items:
                ts = clock.now_ms if m.timestamp is None else m.timestamp
                expected.append((len(expected), ts, m.key, m.value, tuple(m.headers)))
        assert [tuple(r) for r in log.scan()] == expected
    with logstore.Log.open(directory, config, clock=clock) as log:
        assert log.end_offset == len(expected)
        assert [tuple(r) for r in log.scan()] == expected
        for start in range(0, len(expected), 7):
            assert [tuple(r) for r in log.read(start, max_records=3)] == expected[start : start + 3]
    shutil.rmtree(directory)
