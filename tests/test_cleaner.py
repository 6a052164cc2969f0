"""The cleaner: ``Log.compact`` (API.md) against FORMAT.md section 11 (the log cleaner)."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import logstore
from logstore import CorruptLogError, InvalidRecordError, LogConfig, Message, Record, cleaner

from .conftest import FakeClock, OpenLog, child_env, file_hashes, run_python
from .helpers import (
    COMPACT,
    NOW,
    SEGMENT_0,
    _flip_in_value,
    compact_config,
    compacted,
    keyed_workload,
)
from .helpers_damage import SEALED, T0, _batch_positions, _flip

LEFTOVER_SUFFIXES = (".cleaned", ".swap", ".deleted")


def superseded_tombstones(records: Iterable[Record], bound: int) -> int:
    records = [r for r in records if r.offset < bound]
    latest = {r.key: r.offset for r in records}
    return sum(1 for r in records if r.value is None and latest[r.key] != r.offset)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(LEFTOVER_SUFFIXES))


def read_batches(log_file: str | Path) -> list[dict[str, int]]:
    """Batch headers of a ``.log`` file, read straight from its bytes (FORMAT.md 2)."""
    data = Path(log_file).read_bytes()
    out = []
    pos = 0
    while pos < len(data):
        (base_offset,) = struct.unpack_from(">q", data, pos)
        (length,) = struct.unpack_from(">i", data, pos + 8)
        (attributes,) = struct.unpack_from(">h", data, pos + 21)
        (last_delta,) = struct.unpack_from(">i", data, pos + 23)
        base_ts, max_ts = struct.unpack_from(">qq", data, pos + 27)
        (count,) = struct.unpack_from(">i", data, pos + 57)
        out.append(
            {
                "base_offset": base_offset,
                "attributes": attributes,
                "last_offset_delta": last_delta,
                "base_timestamp": base_ts,
                "max_timestamp": max_ts,
                "record_count": count,
            }
        )
        pos += 12 + length
    assert pos == len(data)
    return out


# ---------------------------------------------------------------- 1. the model
values = st.none() | st.binary(max_size=60)


headers = st.lists(
    st.tuples(st.sampled_from(["h", "trace"]), st.none() | st.binary(max_size=6)), max_size=2
)


@st.composite
def workloads(draw: st.DrawFn) -> list[tuple[object, ...]]:
    n_keys = draw(st.sampled_from([1, 2, 5, 9, 12, 16, 16]))
    key = st.integers(0, n_keys - 1).map(lambda i: b"key-%d" % i if i else b"")  # b"" is a key
    append = st.tuples(st.just("append"), key, values, headers, st.integers(0, 500))
    many = st.tuples(
        st.just("many"),
        st.lists(st.tuples(key, values, headers, st.integers(0, 50)), min_size=3, max_size=30),
    )
    roll = st.tuples(st.just("roll"))
    return draw(st.lists(st.one_of(append, append, many, many, roll), min_size=15, max_size=60))


def run_workload(
    log: logstore.Log, clock: FakeClock, ops: list[tuple[object, ...]]
) -> list[Record]:
    records: list[Record] = []
    for op in ops:
        if op[0] == "append":
            _, key, value, hdrs, advance = op
            clock.advance(advance)  # type: ignore[arg-type]
            ts = clock.now_ms
            offset = log.append(value, key=key, headers=hdrs, timestamp=ts)  # type: ignore[arg-type]
            records.append(Record(offset, ts, key, value, tuple(hdrs)))  # type: ignore[arg-type]
        elif op[0] == "many":
            clock.advance(1)
            items = [
                Message(value, key, tuple(hdrs), clock.now_ms - back)
                for key, value, hdrs, back in op[1]  # type: ignore[attr-defined]
            ]
            done = log.append_many(items)
            assert len(done) == len(items)
            records += [
                Record(o, m.timestamp, m.key, m.value, tuple(m.headers))  # type: ignore[arg-type]
                for o, m in zip(done, items)
            ]
        else:
            log.roll()
    return records


def check_reads(log: logstore.Log, expected: list[Record]) -> None:
    """Point reads, timestamp lookups and segment facts agree with ``expected``.

    ``read(o)`` starts at ``o`` or, if compaction removed it, at the next record.
    """
    for o in range(log.start_offset, log.end_offset + 1):
        nxt = [r for r in expected if r.offset >= o][:1]
        assert log.read(o, max_records=1) == nxt, o
    stamps = sorted({r.timestamp for r in expected})
    for ts in [*stamps, stamps[-1] + 1] if stamps else [NOW]:
        first = next((r.offset for r in expected if r.timestamp >= ts), None)
        assert log.offset_for_timestamp(ts) == first, ts
    segments = log.segments
    assert sum(s.records for s in segments) == len(expected)
    assert log.size_bytes == sum(os.path.getsize(s.path) for s in segments)


class Model:
    """What a compacted log holds, pass by pass (FORMAT.md 11), with each tombstone's horizon."""

    def __init__(self, retention_ms: int) -> None:
        self.live: list[Record] = []
        self.horizon: dict[int, int] = {}  # tombstone offset -> delete horizon
        self.retention_ms = retention_ms

    def compact(self, bound: int, now: int) -> tuple[int, int, int]:
        """One pass over [start, bound); returns (records before, after, tombstones removed)."""
        below = [r for r in self.live if r.offset < bound]
        latest = {r.key: r.offset for r in below}
        kept = []
        for r in self.live:
            if r.offset < bound:
                if latest[r.key] != r.offset:
                    continue
                if r.value is None:
                    horizon = self.horizon.setdefault(r.offset, now + self.retention_ms)
                    if now >= horizon:
                        continue
            kept.append(r)
        after = [r for r in kept if r.offset < bound]
        tombstones = sum(r.value is None for r in below) - sum(r.value is None for r in after)
        self.live = kept
        return len(below), len(after), tombstones


def check_pass(
    log: logstore.Log, model: Model, clock: FakeClock, *, exact_counts: bool
) -> tuple[logstore.CompactionResult, int]:
    """``compact()`` once and compare everything with the model."""
    bound = log.segments[-1].base_offset  # before compacting: the active segment is never cleaned
    active = log.segments[-1]
    start, end = log.start_offset, log.end_offset
    result = log.compact()
    counts = model.compact(bound, clock.now_ms)
    assert list(log.scan()) == model.live
    assert (log.start_offset, log.end_offset) == (start, end)
    assert log.segments[-1] == active
    if exact_counts and bound > start:  # one round: the counts are exact
        assert (result.records_before, result.records_after, result.tombstones_removed) == counts
    return result, bound


@given(
    ops=workloads(),
    more=workloads(),
    segment_bytes=st.integers(300, 3000),
    codec=st.sampled_from(["none", "gzip", "zstd"]),
    memory=st.sampled_from([None, 1024, 1280, 1536]),  # 8 to 12 keys a round: several rounds
)
def test_compaction_matches_the_model(
    ops: list[tuple[object, ...]],
    more: list[tuple[object, ...]],
    segment_bytes: int,
    codec: str,
    memory: int | None,
) -> None:
    retention = 60_000  # longer than a workload's clock advances (60 ops x 500 ms)
    fields: dict[str, object] = {
        "segment_bytes": segment_bytes,
        "compression": codec,
        "delete_retention_ms": retention,
    }
    if memory is not None:
        fields["compaction_memory_bytes"] = memory
    config = compact_config(**fields)
    clock = FakeClock()
    model = Model(retention)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p-0"
        log = logstore.Log.open(path, config, clock=clock)
        try:
            model.live = run_workload(log, clock, ops)
            assert list(log.scan()) == model.live  # ratio 1.0: nothing compacted by itself
            result, _ = check_pass(log, model, clock, exact_counts=memory is None)
            event(f"rounds: {sum(1 for d in result.details if d['base_offset'] == 0)}")
            check_reads(log, model.live)
            log.compact()  # nothing new: nothing changes
            assert list(log.scan()) == model.live

            # More data on top of a clean part, then a pass over both.
            model.live += run_workload(log, clock, more)
            assert list(log.scan()) == model.live
            result, bound = check_pass(log, model, clock, exact_counts=memory is None)
            event(f"second pass rounds: {sum(1 for d in result.details if d['base_offset'] == 0)}")
            event(f"tombstones kept: {any(r.value is None for r in model.live)}")
            check_reads(log, model.live)
            end = log.end_offset

            log.close()
            log = logstore.Log.open(path, config, clock=clock)
            assert list(log.scan()) == model.live
            check_reads(log, model.live)
            assert (log.start_offset, log.end_offset) == (0, end)

            # Tombstones live until their pass's time + delete_retention_ms: a pass one
            # ms before the last horizon, then one at it (each pass needs new dirty
            # data to run: one fresh record, rolled).
            last_horizon = max(model.horizon.values(), default=clock.now_ms + 1)
            for n, at in enumerate((last_horizon - 1, last_horizon)):
                clock.advance(max(0, at - clock.now_ms))
                offset = log.append(b"x", key=b"fresh-%d" % n, timestamp=clock.now_ms)
                model.live.append(Record(offset, clock.now_ms, b"fresh-%d" % n, b"x", ()))
                log.roll()
                check_pass(log, model, clock, exact_counts=memory is None)
            final = model.live
            assert not any(r.value is None and r.offset < bound for r in final)
            log.close()
            log = logstore.Log.open(path, config, clock=clock)
            assert list(log.scan()) == final
            assert log.end_offset == end + 2
        finally:
            log.close()


# ---------------------------------------------------------------- 2. tombstones
def test_tombstone_gets_a_delete_horizon_and_goes_at_it(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(config=compact_config(delete_retention_ms=1000))
    t = clock.now_ms
    log.append(b"v1", key=b"k", timestamp=t - 20)
    log.append(None, key=b"k", timestamp=t - 10)
    log.roll()
    log.append(b"o", key=b"other", timestamp=t - 5)
    tombstone = Record(1, t - 10, b"k", None, ())
    other = Record(2, t - 5, b"other", b"o", ())
    assert [r.value for r in log.scan()] == [b"v1", None, b"o"]

    t0 = clock.now_ms
    result = log.compact()
    assert list(log.scan()) == [tombstone, other]
    assert (result.records_before, result.records_after, result.tombstones_removed) == (2, 1, 0)
    batches = read_batches(log.segments[0].path)
    kept = [b for b in batches if b["record_count"]]
    assert kept == [
        {
            "base_offset": 1,
            "attributes": 0x40,  # hasDeleteHorizonMs, codec none
            "last_offset_delta": 0,
            "base_timestamp": t0 + 1000,  # the delete horizon
            "max_timestamp": t - 10,
            "record_count": 1,
        }
    ]
    assert log.read(1) == [tombstone, other]  # the record's own timestamp is unchanged

    # One ms before the horizon, a real pass (new dirty data) keeps the tombstone.
    clock.advance(999)
    log.append(b"p", key=b"third", timestamp=clock.now_ms)
    third = Record(3, clock.now_ms, b"third", b"p", ())
    log.roll()
    log.compact()
    assert list(log.scan()) == [tombstone, other, third]

    # At the horizon the next pass drops it.
    clock.advance(1)
    log.append(b"q", key=b"fourth", timestamp=clock.now_ms)
    fourth = Record(4, clock.now_ms, b"fourth", b"q", ())
    log.roll()
    result = log.compact()
    assert list(log.scan()) == [other, third, fourth]
    assert result.tombstones_removed == 1
    assert (log.start_offset, log.end_offset) == (0, 5)
    log.close()
    reopened = open_log(config=compact_config(delete_retention_ms=1000))
    assert list(reopened.scan()) == [other, third, fourth]


def test_compact_drops_expired_tombstones_without_new_data(
    open_log: OpenLog, clock: FakeClock
) -> None:
    """The brief's scenario: nothing is appended between the passes.

    ``compact()`` is "key compaction now, whatever the dirty ratio" and its
    docstring says tombstones stay ``delete_retention_ms`` after the pass that
    first kept them, "then go".
    """
    log = open_log(config=compact_config(delete_retention_ms=1000))
    t = clock.now_ms
    log.append(b"v1", key=b"k", timestamp=t)
    log.append(None, key=b"k", timestamp=t + 1)
    log.roll()
    log.append(b"o", key=b"other", timestamp=t + 2)
    tombstone = Record(1, t + 1, b"k", None, ())
    other = Record(2, t + 2, b"other", b"o", ())

    log.compact()
    assert list(log.scan()) == [tombstone, other]
    clock.advance(999)
    log.compact()
    assert list(log.scan()) == [tombstone, other]
    clock.advance(2)
    log.compact()
    assert list(log.scan()) == [other]


def test_an_emptied_last_batch_keeps_its_offsets_and_has_no_timestamp(open_log: OpenLog) -> None:
    """Kafka's ``writeEmptyHeader`` shape: offsets kept, no records, and nothing that puts
    a time index entry on it. A max timestamp there made Kafka's ``DumpLogSegments
    --verify-index-only`` report "Found timestamp mismatch ... log timestamp: -1"."""
    log = open_log(config=compact_config(segment_bytes=150))
    log.append_many(
        [Message(b"v1", key=b"a", timestamp=1000), Message(b"v1", key=b"b", timestamp=1001)]
    )
    log.append_many(
        [Message(b"v2", key=b"a", timestamp=1002), Message(b"v2", key=b"b", timestamp=1003)]
    )
    log.roll()
    assert [(s.base_offset, s.next_offset) for s in log.segments] == [(0, 2), (2, 4), (4, 4)]
    log.compact()
    first = log.segments[0]
    assert (first.base_offset, first.next_offset, first.records) == (0, 2, 0)
    assert read_batches(first.path) == [
        {
            "base_offset": 0,
            "attributes": 0,
            "last_offset_delta": 1,
            "base_timestamp": -1,
            "max_timestamp": -1,
            "record_count": 0,
        }
    ]
    assert Path(first.path).with_suffix(".timeindex").read_bytes() == b""
    assert log.offset_for_timestamp(0) == 2
    log.close()
    reopened = open_log(config=compact_config(segment_bytes=150))
    assert [r.offset for r in reopened.scan()] == [2, 3]
    assert reopened.end_offset == 4


def test_a_batch_an_earlier_round_emptied_goes_in_a_later_one(open_log: OpenLog) -> None:
    """Kafka's cleaner deletes an empty batch it does not need to keep (DELETE_EMPTY)."""
    log = open_log(config=compact_config(segment_bytes=150))
    log.append_many(
        [Message(b"v1", key=b"a", timestamp=1000), Message(b"v1", key=b"b", timestamp=1001)]
    )
    log.append_many(
        [Message(b"v2", key=b"a", timestamp=1002), Message(b"v2", key=b"b", timestamp=1003)]
    )
    log.roll()
    log.compact()
    assert read_batches(log.segments[0].path)[0]["record_count"] == 0
    log.append(b"v3", key=b"c", timestamp=1004)
    log.roll()
    log.compact()  # the empty batch's segment and the next one merge: it is not last any more
    assert [(s.base_offset, s.next_offset, s.records) for s in log.segments] == [
        (0, 4, 2),
        (4, 5, 1),
        (5, 5, 0),
    ]
    assert [b["base_offset"] for b in read_batches(log.segments[0].path)] == [2]
    assert [r.offset for r in log.scan()] == [2, 3, 4]


def test_superseded_tombstone_goes_at_once(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(config=compact_config())
    t = clock.now_ms
    log.append(b"a", key=b"k", timestamp=t)
    log.append(None, key=b"k", timestamp=t + 1)
    log.append(b"b", key=b"k", timestamp=t + 2)
    log.roll()
    log.append(b"z", key=b"z", timestamp=t + 3)
    result = log.compact()
    assert list(log.scan()) == [Record(2, t + 2, b"k", b"b", ()), Record(3, t + 3, b"z", b"z", ())]
    assert (result.records_before, result.records_after, result.tombstones_removed) == (3, 1, 1)


def test_keys_larger_than_the_map_budget_still_make_progress(
    open_log: OpenLog, clock: FakeClock
) -> None:
    """Each key costs more than ``compaction_memory_bytes``: one key per round."""
    log = open_log(config=compact_config(segment_bytes=20_000, compaction_memory_bytes=1024))
    keys = [bytes([65 + k]) * 1500 for k in range(6)]
    records = []
    for i in range(30):
        key = keys[i * 5 % 6]
        value = None if i % 9 == 4 else b"%d" % i
        records.append(
            Record(log.append(value, key=key, timestamp=NOW + i), NOW + i, key, value, ())
        )
        if i % 8 == 7:
            log.roll()
    bound = log.segments[-1].base_offset
    log.compact()
    assert list(log.scan()) == compacted(records, bound)
    log.compact()
    assert list(log.scan()) == compacted(records, bound)


# ---------------------------------------------------------------- 3. min_compaction_lag_ms
def test_min_compaction_lag_stops_at_the_first_young_segment(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(config=compact_config(min_compaction_lag_ms=10_000))
    t = clock.now_ms
    plan = [
        [(b"a", t - 50_000), (b"b", t - 50_000), (b"a", t - 49_000)],  # A: old
        [(b"a", t - 6_000), (b"c", t - 5_000)],  # B: younger than the lag
        [(b"a", t - 60_000), (b"b", t - 60_000), (b"c", t - 60_000)],  # C: old, after B
        [(b"d", t)],  # active
    ]
    records = []
    for i, segment in enumerate(plan):
        if i:
            log.roll()
        for key, ts in segment:
            value = b"%s%d" % (key, len(records))
            records.append(Record(log.append(value, key=key, timestamp=ts), ts, key, value, ()))
    assert [s.base_offset for s in log.segments] == [0, 3, 5, 8]

    log.compact()  # only A is cleanable: a@0 goes (a@2 is later in A); b@1 stays
    assert list(log.scan()) == records[1:]

    clock.advance(4_999)  # B's newest (t - 5000) is still newer than now - lag
    log.compact()
    assert list(log.scan()) == records[1:]

    clock.advance(1)  # now - lag == B's newest: no longer newer, B and C are cleanable
    log.compact()
    assert list(log.scan()) == [records[5], records[6], records[7], records[8]]


# ---------------------------------------------------------------- 4. keys are required
@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_compacted_log_rejects_records_without_a_key(open_log: OpenLog, policy: str) -> None:
    log = open_log(cleanup_policy=policy)
    log.append(b"v", key=b"k", timestamp=NOW)
    before = list(log.scan())
    with pytest.raises(InvalidRecordError):
        log.append(b"no key", timestamp=NOW)
    with pytest.raises(InvalidRecordError):
        log.append_many([Message(b"ok", b"k2", (), NOW), Message(b"no key", None, (), NOW)])
    with pytest.raises(InvalidRecordError):
        log.append_many([Message(b"ok", b"k2", (), NOW), b"raw bytes"])
    with pytest.raises(InvalidRecordError):
        log.append(None, timestamp=NOW)
    assert log.end_offset == 1
    assert list(log.scan()) == before == [Record(0, NOW, b"k", b"v", ())]
    assert log.segments[-1].size_bytes == log.size_bytes
    assert log.append(b"w", key=b"k2", timestamp=NOW) == 1


def test_compact_needs_the_compact_policy(open_log: OpenLog) -> None:
    log = open_log(cleanup_policy="delete")
    with pytest.raises(logstore.ConfigError):
        log.compact()


def test_dry_run_changes_nothing_and_predicts_the_first_round(
    open_log: OpenLog, log_dir: Path
) -> None:
    log = open_log(config=compact_config(segment_bytes=1000))
    records = keyed_workload(log, 0, 120, 9, NOW)
    log.roll()
    log.compact()
    first_bound = log.end_offset
    records = compacted(records, first_bound)
    records += keyed_workload(log, 120, 150, 13, NOW)
    assert list(log.scan()) == records
    sealed = log.segments[:-1]
    bound = log.segments[-1].base_offset
    clean_bytes = sum(s.size_bytes for s in sealed if s.next_offset <= first_bound)
    dirty_bytes = sum(s.size_bytes for s in sealed if s.next_offset > first_bound)
    assert clean_bytes > 0 and dirty_bytes > 0
    ratio = log.dirty_ratio()
    assert ratio == dirty_bytes / (clean_bytes + dirty_bytes)
    assert 0 < ratio < 1

    before = file_hashes(log_dir)
    dry = log.compact(dry_run=True)
    assert file_hashes(log_dir) == before
    assert list(log.scan()) == records
    assert log.dirty_ratio() == ratio

    real = log.compact()
    expected = compacted(records, bound)
    assert list(log.scan()) == expected
    below = [r for r in records if r.offset < bound]
    assert (dry.dry_run, real.dry_run) == (True, False)
    assert dry.dirty_ratio == real.dirty_ratio == ratio
    assert (dry.records_before, dry.records_after, dry.tombstones_removed) == (
        real.records_before,
        real.records_after,
        real.tombstones_removed,
    )
    assert real.records_before == len(below) == sum(s.records for s in sealed)
    assert real.records_after == len([r for r in expected if r.offset < bound])
    assert real.tombstones_removed == superseded_tombstones(records, bound) > 0
    assert dry.bytes_before == real.bytes_before == sum(s.size_bytes for s in sealed)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"segment_messages": 5}, (12, 1)),  # small segments merge into one
        ({"segment_messages": 5, "segment_bytes": 900}, (12, 6)),  # in pairs, by size
        # merged segments of 3 records split at 5, where the output's time index is full
        ({"segment_messages": 3, "max_index_bytes": 60, "index_interval_bytes": 50}, (20, 12)),
    ],
)
def test_dry_run_predicts_the_segments_the_real_run_writes(
    open_log: OpenLog, fields: dict[str, int], expected: tuple[int, int]
) -> None:
    log = open_log(config=compact_config(**fields))
    for i in range(60):
        log.append(b"value-%d" % i, key=b"key-%d" % i, timestamp=NOW + i)  # nothing compacts away
    log.roll()
    dry = log.compact(dry_run=True)
    real = log.compact()
    assert (dry.segments_before, dry.segments_after) == (real.segments_before, real.segments_after)
    assert (real.segments_before, real.segments_after) == expected
    assert len(log.segments) - 1 == real.segments_after


# ---------------------------------------------------------------- 7. concurrency
def test_scan_started_before_compaction_sees_the_old_records(open_log: OpenLog) -> None:
    log = open_log(config=compact_config(segment_bytes=600))
    records = keyed_workload(log, 0, 200, 6, NOW)
    assert len(log.segments) > 5
    it = log.scan()
    head = [next(it) for _ in range(5)]
    not_started = log.scan(37)
    log.compact()
    assert head + list(it) == records
    assert list(not_started) == records[37:]
    assert list(log.scan()) == compacted(records, log.segments[-1].base_offset)


def test_appends_while_compacting(open_log: OpenLog) -> None:
    log = open_log(config=compact_config(segment_bytes=800))
    total = 1500
    keys = 17

    def original(i: int) -> Record:
        return Record(i, NOW + i, b"key-%d" % (i % keys), b"value-%d" % i, ())

    errors: list[BaseException] = []
    done = threading.Event()

    def appender() -> None:
        try:
            for i in range(total):
                r = original(i)
                assert log.append(r.value, key=r.key, timestamp=r.timestamp) == i
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    passes = []

    def compactor() -> None:
        try:
            while not done.is_set() or len(passes) < 3:
                passes.append(log.compact())
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not done.is_set():
                end = log.end_offset
                seen = list(log.scan())
                offsets = [r.offset for r in seen]
                assert offsets == sorted(set(offsets))
                for r in seen:
                    assert r == original(r.offset)
                last = {r.key: r.offset for r in seen}
                for i in range(max(0, end - keys), end):  # the latest of each key is never lost
                    assert last[original(i).key] >= i
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (appender, compactor, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert log.end_offset == total
    bound = log.segments[-1].base_offset
    log.compact()
    assert list(log.scan()) == compacted([original(i) for i in range(total)], bound)


# ---------------------------------------------------------------- 8. crash safety
CHILD = """
import sys, logstore
path, segment_bytes = sys.argv[1], int(sys.argv[2])
config = logstore.LogConfig(
    segment_bytes=segment_bytes, cleanup_policy="compact",
    min_cleanable_dirty_ratio=1.0, fsync="never",
)
log = logstore.Log.open(path, config)
print("ready", flush=True)
log.compact()
log.close()
print("done", flush=True)
"""


def crash_config(segment_bytes: int) -> LogConfig:
    return compact_config(segment_bytes=segment_bytes)


def build_fixture(path: Path, n: int, keys: int, segment_bytes: int) -> list[Record]:
    rng = random.Random(n)
    with logstore.Log.open(path, crash_config(segment_bytes)) as log:
        records = []
        for start in range(0, n, 50):
            items = []
            for i in range(start, min(n, start + 50)):
                key = b"key-%05d" % rng.randrange(keys)
                value = None if rng.random() < 0.05 else b"value-%d-" % i + b"x" * (i % 30)
                items.append(Message(value, key, (), NOW + i))
            done = log.append_many(items)
            records += [Record(o, m.timestamp, m.key, m.value, ()) for o, m in zip(done, items)]
        log.roll()
        log.append(b"tail", key=b"tail", timestamp=NOW + n)
        records.append(Record(n, NOW + n, b"tail", b"tail", ()))
        assert list(log.scan()) == records
    return records


@pytest.fixture(scope="module")
def crash_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Record], list[Record]]:
    """A closed log with many keys (several output segments) and its content after compact()."""
    base = tmp_path_factory.mktemp("crash")
    pre_dir = base / "pre-0"
    pre = build_fixture(pre_dir, 3000, 400, 4000)
    post_dir = base / "post-0"
    shutil.copytree(pre_dir, post_dir)
    with logstore.Log.open(post_dir, crash_config(4000)) as log:
        log.compact()
        post = list(log.scan())
        assert len([s for s in log.segments if s.records]) > 3  # several output segments
    assert post == compacted(pre, 3000)
    return pre_dir, pre, post


def run_child(
    path: Path, segment_bytes: int, crash_at: str | None
) -> subprocess.CompletedProcess[str]:
    env = child_env() if crash_at is None else child_env(LOGSTORE_CRASH_AT=crash_at)
    return run_python(CHILD, str(path), str(segment_bytes), env=env)


@pytest.mark.parametrize(
    ("crash_at", "outcome"),
    [
        ("cleaned-written", "pre"),  # swap not begun: the .cleaned files are dropped
        ("swap-renamed", "post"),  # every new segment is a complete .swap: recovery finishes
        ("old-deleted", "post"),
        ("swapped", "post"),
    ],
)
def test_crash_during_compaction(
    tmp_path: Path,
    crash_fixture: tuple[Path, list[Record], list[Record]],
    crash_at: str,
    outcome: str,
) -> None:
    pre_dir, pre, post = crash_fixture
    path = tmp_path / "p-0"
    shutil.copytree(pre_dir, path)
    child = run_child(path, 4000, crash_at)
    assert child.returncode == 77, child.stderr
    assert child.stdout == "ready\n"
    with logstore.Log.open(path, crash_config(4000)) as log:
        assert leftovers(path) == []
        seen = list(log.scan())
        assert seen in (pre, post)
        assert seen == (pre if outcome == "pre" else post)
        assert (log.start_offset, log.end_offset) == (0, 3001)
        log.compact()  # and the log goes on: compacting again gives the same result
        assert list(log.scan()) == post
    with logstore.Log.open(path, crash_config(4000)) as log:
        assert list(log.scan()) == post
    assert leftovers(path) == []


def test_crash_between_renames_of_one_swapped_segment(
    tmp_path: Path, crash_fixture: tuple[Path, list[Record], list[Record]]
) -> None:
    """Step 3 of the swap renames ``.swap`` -> final names, lowest base first, ``.log`` first.

    A crash after the last segment's ``.log`` was renamed but before its
    ``.index`` leaves only ``.index.swap``/``.timeindex.swap`` files: recovery
    must still finish them (FORMAT.md 9.1 b: rename every ``.swap`` file).
    """
    pre_dir, _, post = crash_fixture
    path = tmp_path / "p-0"
    shutil.copytree(pre_dir, path)
    assert run_child(path, 4000, "old-deleted").returncode == 77
    swaps = sorted(p.name for p in path.iterdir() if p.name.endswith(".swap"))
    bases = sorted({name[:20] for name in swaps})
    assert len(bases) > 1
    for name in swaps:  # what the rename loop had done when it died
        if name[:20] != bases[-1] or name.endswith(".log.swap"):
            os.rename(path / name, path / name[: -len(".swap")])
    with logstore.Log.open(path, crash_config(4000)) as log:
        assert list(log.scan()) == post
        assert leftovers(path) == []


KILL_CHILD = """
import sys, logstore
config = logstore.LogConfig(
    segment_bytes=16000, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0, fsync="never",
)
log = logstore.Log.open(sys.argv[1], config)
print("ready", flush=True)
log.compact()
print("done", flush=True)
log.close()
"""


def test_sigkill_during_compaction(tmp_path: Path) -> None:
    rng = random.Random(2024)
    pre_dir = tmp_path / "pre-0"
    pre = build_fixture(pre_dir, 20000, 2000, 16000)
    post = compacted(pre, 20000)
    probe = tmp_path / "probe-0"
    shutil.copytree(pre_dir, probe)
    with logstore.Log.open(probe, crash_config(16000)) as log:
        started = time.perf_counter()
        log.compact()
        compaction_ms = (time.perf_counter() - started) * 1000
        assert list(log.scan()) == post
    shutil.rmtree(probe)
    window_ms = max(compaction_ms * 1.3, 100.0)  # kills land before, inside and after it

    env = child_env()
    for round_ in range(15):
        path = tmp_path / f"r{round_}-0"
        shutil.copytree(pre_dir, path)
        argv = [sys.executable, "-c", textwrap.dedent(KILL_CHILD), str(path)]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0, window_ms) / 1000)
            child.kill()
            child.wait()
        with logstore.Log.open(path, crash_config(16000)) as log:
            assert leftovers(path) == [], round_
            seen = list(log.scan())
            assert seen in (pre, post), round_
            assert log.end_offset == 20001
            log.compact()  # an interrupted compaction leaves a log that compacts normally
            assert list(log.scan()) == post
        shutil.rmtree(path)


def test_compaction_never_rewrites_damage_under_a_fresh_crc(tmp_path: Path) -> None:
    """Compaction checks CRCs even with ``verify_crc_on_read=False``.

    A batch of the clean part whose record is superseded is rebuilt with a new
    CRC; unchecked, a flipped bit in its other record would become valid data.
    """
    path = tmp_path / "log"
    config = LogConfig(
        fsync="never", cleanup_policy="compact", segment_messages=2, verify_crc_on_read=False
    )
    with logstore.Log.open(path, config) as log:
        log.append_many([logstore.Message(b"a-0", key=b"a"), logstore.Message(b"b-0", key=b"b")])
        log.append_many([logstore.Message(b"c-0", key=b"c"), logstore.Message(b"d-0", key=b"d")])
        log.append(b"e-0", key=b"e")
        log.compact()
    _flip_in_value(path / SEGMENT_0, b"b-0")
    before = (path / SEGMENT_0).read_bytes()
    with logstore.Log.open(path, config) as log:
        log.append_many([logstore.Message(b"a-1", key=b"a"), logstore.Message(b"x", key=b"x")])
        log.append(b"y", key=b"y")
        with pytest.raises(CorruptLogError, match=f"{path / SEGMENT_0} at byte 0: CRC mismatch"):
            log.compact()
    assert (path / SEGMENT_0).read_bytes() == before


def test_compaction_refuses_to_rewrite_a_damaged_base_offset(tmp_path: Path) -> None:
    """The cleaner rewrites what it reads: a wrong base offset must not become the truth."""
    config = LogConfig(
        fsync="never", segment_messages=20, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0
    )
    path = tmp_path / "log"
    with logstore.Log.open(path, config) as log:
        for _ in range(20):
            log.append_many(Message(b"v", b"k%d" % (j % 3), (), T0) for j in range(5))
    sealed = path / SEALED
    position, base = _batch_positions(sealed)[1]
    assert base == 25
    _flip(sealed, position + 7, 0x01)  # 25 -> 24: overlaps the batch before
    before = file_hashes(path)
    with logstore.Log.open(path, config) as log:
        with pytest.raises(CorruptLogError) as info:
            log.compact()
        assert (info.value.path, info.value.position) == (str(sealed), position)
        assert "overlaps or goes back" in str(info.value)
    after = file_hashes(path)
    assert {k: v for k, v in after.items() if k.endswith(".log")} == {
        k: v for k, v in before.items() if k.endswith(".log")
    }


def test_compaction_racing_a_truncate_is_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logstore.Log.open(tmp_path, COMPACT)
    for i in range(25):
        log.append(b"v%d" % i, key=b"k%d" % (i % 3))
    real = cleaner.clean_round

    def racing(*args: object, **kwargs: object) -> cleaner.Round:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        log.truncate(15)  # lands inside the last sealed input while the round runs
        log.append_many([Message(b"NEW15", key=b"k0"), Message(b"NEW16", key=b"k1")])
        return result

    monkeypatch.setattr(cleaner, "clean_round", racing)
    log.compact()
    monkeypatch.setattr(cleaner, "clean_round", real)
    assert [(r.offset, r.value) for r in log.read(15)] == [(15, b"NEW15"), (16, b"NEW16")]
    log.append(b"NEW17", key=b"k2")
    log.close()
    with logstore.Log.open(tmp_path, COMPACT) as reopened:
        assert [(r.offset, r.value) for r in reopened.read(15)] == [
            (15, b"NEW15"),
            (16, b"NEW16"),
            (17, b"NEW17"),
        ]


def test_compaction_never_rewrites_a_damaged_batch_under_a_fresh_crc(tmp_path: Path) -> None:
    config = dataclasses.replace(COMPACT, segment_messages=4, verify_crc_on_read=False)
    with logstore.Log.open(tmp_path, config) as log:
        log.append_many([Message(b"AAAA", key=b"a"), Message(b"BBBB", key=b"b")])
        log.append_many([Message(b"a2", key=b"a"), Message(b"c", key=b"c")])
        for i in range(6):
            log.append(b"z", key=b"z%d" % i)
        path = log.segments[0].path
    data = bytearray(Path(path).read_bytes())
    data[data.index(b"BBBB")] = ord("X")
    Path(path).write_bytes(data)
    with logstore.Log.open(tmp_path, config) as log, pytest.raises(CorruptLogError):
        log.compact()
    strict = dataclasses.replace(config, verify_crc_on_read=True)
    with (
        logstore.Log.open(tmp_path, strict) as log,
        pytest.raises(CorruptLogError, match="CRC mismatch"),
    ):
        log.read(0)
