"""Any messages round-trip through append/append_many -> read/scan, in every codec,
across segment rolls, close and reopen."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import logstore
from logstore import compression

from .conftest import FakeClock

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
