"""The compiled codec against the pure-Python one: same bytes, same records, same errors.

The whole suite also runs with ``LOGSTORE_PURE=1`` (``make test`` does both);
these tests call the two implementations side by side on the same inputs.
"""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import logstore
from logstore import batch, compression, recordcodec
from logstore.errors import CorruptLogError

C = recordcodec._C
pytestmark = pytest.mark.skipif(
    C is None, reason="the compiled codec is not built (or LOGSTORE_PURE=1)"
)

keys_or_values = st.one_of(st.none(), st.binary(max_size=300))
headers = st.lists(
    st.tuples(st.text(max_size=10), st.one_of(st.none(), st.binary(max_size=20))), max_size=3
)
entries = st.lists(
    st.tuples(
        keys_or_values,
        keys_or_values,
        headers,
        st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 62)),
    ),
    min_size=1,
    max_size=40,
)


def _both_encode(items: list, base_ts: int, **kw: object) -> tuple[object, object]:
    compiled = batch.encode_section(items, base_ts, **kw)  # type: ignore[arg-type]
    pure = recordcodec._py_encode_section(items, base_ts, **kw)  # type: ignore[arg-type]
    return compiled, pure


def _both_decode(data: bytes, header: batch.BatchHeader, min_offset: int) -> tuple[object, object]:
    def run(fn: object) -> object:
        try:
            return fn(data, header, min_offset)  # type: ignore[operator]
        except CorruptLogError as exc:
            return ("error", exc.kind)

    return run(recordcodec._decode_section), run(recordcodec._py_decode_section)


def test_the_compiled_codec_is_active() -> None:
    assert logstore.__speedups__ == "compiled"
    done = subprocess.run(
        [sys.executable, "-c", "import logstore; print(logstore.__speedups__)"],
        env={**os.environ, "LOGSTORE_PURE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "pure"


@given(
    items=entries,
    base_ts=st.integers(min_value=0, max_value=1 << 61),
    now=st.integers(min_value=0, max_value=1 << 61),
    start=st.integers(min_value=0, max_value=5),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=3000)),
)
def test_encode_gives_identical_bytes(
    items: list, base_ts: int, now: int, start: int, limit: int | None
) -> None:
    compiled, pure = _both_encode(items, base_ts, start=start, limit_bytes=limit, now=now)
    assert compiled == pure


@given(
    items=entries, gaps=st.lists(st.integers(min_value=1, max_value=1000), min_size=40, max_size=40)
)
def test_encode_with_offset_deltas_gives_identical_bytes(items: list, gaps: list[int]) -> None:
    deltas = [sum(gaps[: i + 1]) for i in range(len(items))]
    compiled, pure = _both_encode(items, 5, offset_deltas=deltas, now=7)
    assert compiled == pure


@pytest.mark.parametrize("codec", [c for c in compression.CODEC_IDS if compression.is_available(c)])
@given(items=entries, base=st.integers(min_value=0, max_value=1 << 50), skip=st.integers(0, 45))
def test_decode_gives_identical_records(codec: str, items: list, base: int, skip: int) -> None:
    stamped = [(v, k, h, 1_700_000_000_000 if ts is None else ts) for v, k, h, ts in items]
    data = batch.encode_batch(stamped, base_offset=base, codec=compression.CODEC_IDS[codec])
    header = batch.read_header(data)
    section = (
        data[batch.HEADER_SIZE :]
        if header.codec == 0
        else compression.decompress(header.codec, data[batch.HEADER_SIZE :])
    )
    compiled, pure = _both_decode(section, header, base + skip)
    assert compiled == pure
    assert compiled == batch.decode_records(data, 0, header, min_offset=base + skip)


@given(items=entries, skip=st.integers(0, 45), limit=st.integers(1, 45))
def test_decode_stops_after_the_records_asked_for(items: list, skip: int, limit: int) -> None:
    stamped = [(v, k, h, 1000 if ts is None else ts) for v, k, h, ts in items]
    data = batch.encode_batch(stamped, base_offset=100)
    header = batch.read_header(data)
    section = data[batch.HEADER_SIZE :]
    whole = recordcodec._decode_section(section, header, 100 + skip)
    compiled = recordcodec._decode_section(section, header, 100 + skip, limit)
    pure = recordcodec._py_decode_section(section, header, 100 + skip, limit)
    assert compiled == pure == whole[:limit]
    assert [r.offset for r in compiled] == list(
        range(100 + skip, 100 + min(len(items), skip + limit))
    )
    assert (
        batch.decode_records(data, 0, header, min_offset=100 + skip, max_records=limit) == compiled
    )


@given(
    items=entries,
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)), min_size=1, max_size=5),
    log_append_time=st.booleans(),
)
def test_mutated_sections_give_the_same_records_or_the_same_error(
    items: list, flips: list, log_append_time: bool
) -> None:
    stamped = [(v, k, h, 1000 if ts is None else ts) for v, k, h, ts in items]
    data = batch.encode_batch(stamped, base_offset=10)
    header = batch.read_header(data)
    if log_append_time:
        header = header._replace(attributes=header.attributes | batch.TIMESTAMP_TYPE_BIT)
    section = bytearray(data[batch.HEADER_SIZE :])
    for where, bit in flips:
        section[where % len(section)] ^= 1 << bit
    compiled, pure = _both_decode(bytes(section), header, 0)
    assert compiled == pure


@given(data=st.binary(max_size=200), count=st.integers(min_value=0, max_value=40))
def test_random_sections_give_the_same_records_or_the_same_error(data: bytes, count: int) -> None:
    header = batch.BatchHeader(0, 0, 0, 2, 0, 0, max(count - 1, 0), 0, 0, -1, -1, -1, count)
    compiled, pure = _both_decode(data, header, 0)
    assert compiled == pure


def test_encode_rejects_wrong_types() -> None:
    with pytest.raises(TypeError):
        batch.encode_section([("not bytes", None, (), 1)], 1)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        batch.encode_section([(b"v", 5, (), 1)], 1)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        batch.encode_section([(b"v", None, ((1, b"x"),), 1)], 1)  # type: ignore[list-item]


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def test_no_memory_leak_over_100k_encodes_and_decodes() -> None:
    items = [
        (b"v" * 100, b"key-%d" % i, (("h", b"x"), ("n", None)) if i % 3 == 0 else (), 1000 + i)
        for i in range(20)
    ]
    data = batch.encode_batch(items, base_offset=0)
    header = batch.read_header(data)
    bad = bytearray(data)
    bad[-1] ^= 0xFF  # a corrupt section: the error path must not leak either

    def cycle(n: int) -> None:
        for _ in range(n):
            section, _, _ = batch.encode_section(items, 1000)
            recordcodec._decode_section(section, header, 0)
            try:
                recordcodec._decode_section(bytes(bad[batch.HEADER_SIZE :]), header, 0)
            except CorruptLogError:
                pass

    cycle(10_000)  # warm up: allocator pools, caches
    gc.collect()
    before = _rss_kb()
    cycle(100_000)
    gc.collect()
    grown = _rss_kb() - before
    assert grown < 4096, f"RSS grew by {grown} KiB over 100k encode/decode cycles"


def _during_collections(call: object, victim: list, change: object) -> object:
    """Run ``call()`` with a cycle collection at almost every allocation, ``change``
    applied to ``victim`` at the first one; try again (up to 20 times) while that
    collection comes before the C loop starts (the call's own argument tuple).

    Returns what the call returned or raised (``RuntimeError``) with the change
    made inside it; fails the test if that never happened.
    """
    full = list(victim)
    thresholds = gc.get_threshold()
    for _ in range(20):
        victim[:] = full
        changed: list[int] = []

        def hook(phase: str, info: dict, changed: list[int] = changed) -> None:
            if phase == "start" and not changed:
                changed.append(len(victim))
                change(victim)  # type: ignore[operator]

        gc.collect(0)
        gc.callbacks.append(hook)
        gc.set_threshold(1)
        try:
            result: object = call()  # type: ignore[operator]
        except RuntimeError as exc:
            result = exc
        finally:
            gc.set_threshold(*thresholds)
            gc.callbacks.remove(hook)
            victim[:] = full
        if isinstance(result, RuntimeError) or (result and changed):
            return result
    pytest.fail("the list never changed inside the call")


def test_c_helpers_survive_a_list_changed_by_a_finalizer_mid_call() -> None:
    """A finalizer run by an allocation can change a list the C loop is reading.

    ``route`` works on its own copy, so the caller's list changing mid-call
    changes nothing routed; ``number`` and ``wrap`` raise instead of reading
    past the end of a list that shrank, and hold their own reference to each
    item they read, so a replaced item is never used after it is freed.
    """
    from logstore.consumer import _wrap as wrap
    from logstore.model import ConsumedRecord, Record
    from logstore.partitioner import number, partition_for, route_many

    messages = [logstore.Message(b"v", key=b"k%d" % i) for i in range(5000)]
    expected = [partition_for(m.key, 300) for m in messages]  # type: ignore[arg-type]
    routed = _during_collections(lambda: route_many(messages, 300, 0), messages, list.clear)
    assert isinstance(routed, tuple)
    routes, groups, _ = routed
    assert routes == expected
    assert groups == [[m for m, p in zip(messages, expected) if p == q] for q in range(300)]

    routes = [i % 300 for i in range(5000)]
    shrunk = _during_collections(lambda: number(routes, [1000] * 300), routes, list.clear)
    assert isinstance(shrunk, RuntimeError) and "changed while" in str(shrunk)
    # Items replaced (same length): each pair holds a route object it kept alive.
    zeroed = _during_collections(
        lambda: number(routes, [1000] * 300),
        routes,
        lambda v: v.__setitem__(slice(None), [0] * len(v)),
    )
    assert isinstance(zeroed, list) and len(zeroed) == 5000
    for q in range(300):
        offsets = [o for p, o in zeroed if p == q]
        assert offsets == list(range(1000, 1000 + len(offsets)))

    records = [Record(i, 0, None, b"v", ()) for i in range(5000)]
    wrapped = _during_collections(
        lambda: wrap(records, "t", 1, ConsumedRecord), records, list.clear
    )
    assert isinstance(wrapped, RuntimeError) and "changed while" in str(wrapped)
