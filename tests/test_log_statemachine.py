"""A stateful model test: ``logstore.Log`` against a plain list of records.

The model is a Python list indexed by offset (no compaction, so offsets stay
dense) plus the start offset. Every rule changes the log and the model the same
way and checks what the call returned; the invariants compare everything the
contract exposes after each step.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from typing import NamedTuple

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import logstore

from .conftest import FakeClock

# ------------------------------------------------------------------ strategies

keys = st.one_of(st.none(), st.binary(max_size=20))
values = st.one_of(st.none(), st.binary(max_size=300), st.binary(min_size=200, max_size=300))
header_lists = st.lists(
    st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=16))),
    max_size=2,
)
# A timestamp: None (the log's clock), an absolute value (0 and small values
# included), or an offset from the fake clock's "now" (non-monotonic on purpose).
given_timestamps = st.one_of(
    st.tuples(st.just("abs"), st.integers(0, 2_000_000_000_000)),
    st.tuples(st.just("abs"), st.integers(0, 5)),
    st.tuples(st.just("rel"), st.integers(-100_000, 100_000)),
)
timestamp_specs = st.one_of(st.none(), given_timestamps)
message_specs = st.tuples(values, keys, header_lists, timestamp_specs)


class ModelRecord(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="logstore-sm-")
        self.path = os.path.join(self.tmp, "topic-0")
        self.clock = FakeClock()
        self.records: list[ModelRecord] = []  # index == offset
        self.start = 0
        self.log: logstore.Log | None = None
        self.config: logstore.LogConfig | None = None

    # -------------------------------------------------------------- helpers

    def resolve_ts(self, spec: tuple[str, int] | None) -> int | None:
        if spec is None:
            return None
        kind, n = spec
        return n if kind == "abs" else self.clock.now_ms + n

    @property
    def end(self) -> int:
        return len(self.records)

    def expected(self, start: int, end: int | None = None) -> list[logstore.Record]:
        end = self.end if end is None else min(end, self.end)
        return [
            logstore.Record(r.offset, r.timestamp, r.key, r.value, r.headers)
            for r in self.records[start:end]
        ]

    def model_record(self, offset: int, value, key, headers, ts: int | None) -> ModelRecord:
        return ModelRecord(
            offset, self.clock.now_ms if ts is None else ts, key, value, tuple(headers)
        )

    def too_large_expected(self, records: list[ModelRecord]) -> None:
        """``RecordTooLarge`` is only right if some record's own batch may be too large.

        The bound is generous: 61 header bytes, 40 bytes of varints, every
        field, and 64 bytes of codec framing.
        """

        def bound(r: ModelRecord) -> int:
            size = 61 + 40 + 64 + len(r.key or b"") + len(r.value or b"")
            return size + sum(len(k.encode()) + len(v or b"") + 10 for k, v in r.headers)

        assert max(bound(r) for r in records) > self.config.max_message_bytes
        event("RecordTooLarge")

    # -------------------------------------------------------------- setup

    @initialize(
        segment_bytes=st.integers(2000, 8000),
        index_interval_bytes=st.integers(0, 600),
        segment_messages=st.one_of(st.none(), st.integers(1, 12)),
        max_index_bytes=st.sampled_from([12, 24, 40, 120, 10 * 1024 * 1024]),
        segment_ms=st.sampled_from([None, 50_000, 7 * 24 * 3600 * 1000]),
        compression=st.sampled_from(["none", "none", "gzip", "zstd", "lz4", "snappy"]),
        fsync=st.sampled_from(["never", "never", "never", "always"]),
        max_message_bytes=st.sampled_from([1024 * 1024, 1024 * 1024, 250, 700]),
    )
    def open_log(
        self,
        segment_bytes: int,
        index_interval_bytes: int,
        segment_messages: int | None,
        max_index_bytes: int,
        segment_ms: int | None,
        compression: str,
        fsync: str,
        max_message_bytes: int,
    ) -> None:
        self.config = logstore.LogConfig(
            segment_bytes=segment_bytes,
            index_interval_bytes=index_interval_bytes,
            segment_messages=segment_messages,
            max_index_bytes=max_index_bytes,
            segment_ms=segment_ms,
            compression=compression,
            fsync=fsync,
            max_message_bytes=max_message_bytes,
        )
        self.log = logstore.Log.open(self.path, self.config, clock=self.clock)
        assert self.log.start_offset == 0
        assert self.log.end_offset == 0

    def teardown(self) -> None:
        try:
            if self.log is not None:
                self.log.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -------------------------------------------------------------- writes

    @rule(spec=message_specs)
    def append(self, spec) -> None:
        value, key, headers, ts_spec = spec
        ts = self.resolve_ts(ts_spec)
        record = self.model_record(self.end, value, key, headers, ts)
        try:
            offset = self.log.append(value, key=key, headers=headers, timestamp=ts)
        except logstore.RecordTooLarge:
            self.too_large_expected([record])
            return  # the invariants check that nothing was written
        assert offset == self.end
        self.records.append(record)

    @rule(
        items=st.lists(
            st.one_of(
                st.binary(max_size=300), st.binary(min_size=200, max_size=300), message_specs
            ),
            max_size=50,
        )
    )
    def append_many(self, items) -> None:
        messages: list[bytes | logstore.Message] = []
        added: list[ModelRecord] = []
        for offset, item in enumerate(items, self.end):
            if isinstance(item, bytes):
                messages.append(item)
                added.append(self.model_record(offset, item, None, (), None))
            else:
                value, key, headers, ts_spec = item
                ts = self.resolve_ts(ts_spec)
                messages.append(logstore.Message(value, key=key, headers=headers, timestamp=ts))
                added.append(self.model_record(offset, value, key, headers, ts))
        try:
            result = self.log.append_many(messages)
        except logstore.RecordTooLarge:
            self.too_large_expected(added)
            return  # a call that raises writes nothing: the invariants check it
        assert result == range(self.end, self.end + len(added))
        self.records.extend(added)

    @rule()
    def roll(self) -> None:
        active_was_empty = self.log.segments[-1].size_bytes == 0
        count = len(self.log.segments)
        self.log.roll()
        segments = self.log.segments
        if active_was_empty:
            assert len(segments) == count
        else:
            assert len(segments) == count + 1
            assert segments[-1].base_offset == self.end
            assert segments[-1].size_bytes == 0

    @rule(data=st.data())
    def truncate(self, data) -> None:
        offset = data.draw(st.integers(self.start, self.end), label="truncate_to")
        self.log.truncate(offset)
        del self.records[offset:]

    @rule(data=st.data())
    def delete_before(self, data) -> None:
        offset = data.draw(st.integers(self.start, self.end), label="delete_before")
        self.log.delete_before(offset)
        self.start = max(self.start, offset)

    @rule()
    def flush(self) -> None:
        self.log.flush()
        assert self.log.flushed_offset == self.end

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log.close()  # idempotent
        self.log = logstore.Log.open(self.path, self.config, clock=self.clock)
        # A clean shutdown flushed everything.
        assert self.log.flushed_offset == self.end

    @rule(ms=st.integers(0, 200_000))
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    # -------------------------------------------------------------- reads

    @rule(
        data=st.data(),
        max_records=st.one_of(st.none(), st.integers(0, 60)),
        max_bytes=st.one_of(st.none(), st.integers(0, 5000)),
    )
    def read(self, data, max_records: int | None, max_bytes: int | None) -> None:
        offset = data.draw(st.integers(self.start, self.end), label="read_at")
        got = self.log.read(offset, max_records=max_records, max_bytes=max_bytes)
        want = self.expected(offset)
        if max_records is not None:
            want = want[:max_records]
        if max_bytes is None:
            assert got == want
        else:
            # max_bytes may stop early, but never before the first record.
            assert got == want[: len(got)]
            if want:
                assert got
        if max_records is not None:
            assert len(got) <= max_records

    @rule()
    def read_at_end(self) -> None:
        assert self.log.read(self.end) == []
        assert self.log.read(self.end, max_records=5, max_bytes=1) == []

    @rule(data=st.data())
    def read_out_of_range(self, data) -> None:
        below = data.draw(st.integers(-3, self.start - 1)) if self.start > 0 else -1
        above = data.draw(st.integers(self.end + 1, self.end + 5))
        for offset in (below, above):
            try:
                self.log.read(offset)
            except logstore.OffsetOutOfRange:
                pass
            else:
                raise AssertionError(f"read({offset}) did not raise OffsetOutOfRange")

    @rule(data=st.data())
    def scan(self, data) -> None:
        start = data.draw(st.integers(self.start, self.end), label="scan_start")
        end = data.draw(st.integers(start - 3, self.end + 3), label="scan_end")
        got = list(self.log.scan(start, end))
        assert got == (self.expected(start, end) if end > start else [])

    @rule(spec=given_timestamps)
    def offset_for_timestamp(self, spec) -> None:
        ts = self.resolve_ts(spec)
        want = next((r.offset for r in self.records[self.start :] if r.timestamp >= ts), None)
        assert self.log.offset_for_timestamp(ts) == want

    @precondition(lambda self: self.end > self.start)
    @rule(data=st.data())
    def offset_for_timestamp_of_a_record(self, data) -> None:
        """A timestamp taken from a held record: an exact hit must be found."""
        offset = data.draw(st.integers(self.start, self.end - 1), label="record")
        ts = self.records[offset].timestamp
        want = next(r.offset for r in self.records[self.start :] if r.timestamp >= ts)
        assert self.log.offset_for_timestamp(ts) == want

    # -------------------------------------------------------------- invariants

    @invariant()
    def offsets_match(self) -> None:
        if self.log is None:
            return
        assert self.log.start_offset == self.start
        assert self.log.end_offset == self.end
        assert self.log.flushed_offset <= self.log.end_offset
        if self.config.fsync == "always":
            assert self.log.flushed_offset == self.log.end_offset

    @invariant()
    def scan_matches_model(self) -> None:
        if self.log is None:
            return
        assert list(self.log.scan()) == self.expected(self.start)

    @invariant()
    def segments_are_sane(self) -> None:
        if self.log is None:
            return
        segments = self.log.segments
        assert segments
        assert segments[0].base_offset <= self.start
        assert segments[-1].next_offset == self.end
        for before, after in itertools.pairwise(segments):
            assert before.next_offset == after.base_offset
        for seg in segments:
            # No compaction: offsets are dense inside every segment.
            assert seg.records == seg.next_offset - seg.base_offset
            assert seg.size_bytes <= self.config.segment_bytes
            if self.config.segment_messages is not None:
                assert seg.records <= self.config.segment_messages
            assert os.path.basename(seg.path) == f"{seg.base_offset:020d}.log"
            assert os.path.getsize(seg.path) == seg.size_bytes
        assert self.log.size_bytes == sum(s.size_bytes for s in segments)


# Examples come from the active profile (conftest: 60 by default, 100 in CI);
# LOGSTORE_SM_EXAMPLES / LOGSTORE_SM_STEPS override them for a long bug hunt.
_overrides = {}
if os.environ.get("LOGSTORE_SM_EXAMPLES"):
    _overrides["max_examples"] = int(os.environ["LOGSTORE_SM_EXAMPLES"])
LogMachine.TestCase.settings = settings(
    stateful_step_count=int(os.environ.get("LOGSTORE_SM_STEPS", "50")),
    deadline=None,
    **_overrides,
)
TestLogStateMachine = LogMachine.TestCase
