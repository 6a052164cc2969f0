"""``batch``: the RecordBatch v2 codec: round trips for every codec, hostile bytes, rebuilds."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import logstore
from logstore import LogConfig, batch, compression
from logstore.errors import CorruptLogError

CODECS = [name for name in compression.CODEC_IDS if compression.is_available(name)]


keys_or_values = st.one_of(st.none(), st.binary(max_size=300))


headers = st.lists(
    st.tuples(st.text(max_size=10), st.one_of(st.none(), st.binary(max_size=20))), max_size=3
)


timestamps = st.integers(min_value=0, max_value=(1 << 62))


# (value, key, headers, timestamp), the order of Message
entries = st.lists(
    st.tuples(keys_or_values, keys_or_values, headers, timestamps), min_size=1, max_size=40
)


@pytest.mark.parametrize("codec", CODECS)
@given(items=entries, base_offset=st.integers(min_value=0, max_value=(1 << 62)))
def test_batch_round_trip(codec: str, items: list, base_offset: int) -> None:
    data = batch.encode_batch(items, base_offset=base_offset, codec=compression.CODEC_IDS[codec])
    header = batch.read_header(data)
    assert header.size == len(data)
    assert header.base_offset == base_offset
    assert header.record_count == len(items)
    assert header.last_offset_delta == len(items) - 1
    assert header.max_timestamp == max(i[3] for i in items)
    assert header.codec == compression.CODEC_IDS[codec]
    records = batch.decode_records(data)
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in records] == [
        (base_offset + n, k, v, list(h), ts) for n, (v, k, h, ts) in enumerate(items)
    ]


@given(items=entries, skip=st.integers(min_value=0, max_value=45))
def test_decode_from_min_offset_skips_exactly(items: list, skip: int) -> None:
    data = batch.encode_batch(items, base_offset=100)
    records = batch.decode_records(data, min_offset=100 + skip)
    assert [r.offset for r in records] == list(range(100 + skip, 100 + len(items)))


def _fix_crc(buf: bytearray) -> None:
    import crc32c

    buf[17:21] = crc32c.crc32c(bytes(buf[21:])).to_bytes(4, "big")


def test_decode_validates_every_length_against_the_buffer() -> None:
    data = bytearray(batch.encode_batch([(b"v" * 50, b"k", (), 5)], base_offset=0))
    # claim a 2 GiB batch: refused before anything is read or allocated
    bad = bytearray(data)
    bad[8:12] = (0x7FFFFFFF).to_bytes(4, "big")
    with pytest.raises(CorruptLogError) as info:
        batch.read_header(bytes(bad))
    assert info.value.kind == "truncated"
    # a record count the section cannot hold, CRC fixed up so only the count is wrong
    bad = bytearray(data)
    bad[57:61] = (10**9).to_bytes(4, "big")
    _fix_crc(bad)
    with pytest.raises(CorruptLogError, match="record count"):
        batch.decode_records(bytes(bad))


@given(data=st.binary(max_size=400))
def test_random_bytes_only_ever_raise_corrupt_log_error(data: bytes) -> None:
    try:
        for pos, header in batch.iter_batches(data, verify_crc=False):
            batch.decode_records(data, pos, header)
    except CorruptLogError:
        pass


@given(
    items=entries,
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)), min_size=1, max_size=4),
    codec=st.sampled_from(CODECS),
)
def test_mutated_batches_never_decode_silently_wrong(items: list, flips: list, codec: str) -> None:
    original = batch.encode_batch(items, base_offset=0, codec=compression.CODEC_IDS[codec])
    data = bytearray(original)
    for where, bit in flips:
        data[where % len(data)] ^= 1 << bit
    if bytes(data) == original:
        return
    try:
        header = batch.read_header(bytes(data))
        records = batch.decode_records(bytes(data), 0, header)
    except CorruptLogError:
        return
    # Only bytes outside the CRC may change undetected: base offset and leader epoch.
    assert data[16:] == original[16:]
    assert [(r.key, r.value) for r in records] == [(k, v) for v, k, _, _ in items]


@given(
    items=entries,
    flips=st.lists(st.tuples(st.integers(min_value=21), st.integers(0, 7)), min_size=1, max_size=3),
)
def test_unchecked_crc_decoding_still_bounds_everything(items: list, flips: list) -> None:
    """With the CRC off, damaged records still raise CorruptLogError, never anything else."""
    data = bytearray(batch.encode_batch(items, base_offset=0))
    for where, bit in flips:
        data[21 + where % (len(data) - 21)] ^= 1 << bit
    try:
        header = batch.read_header(bytes(data), verify_crc=False)
        batch.decode_records(bytes(data), 0, header)
    except CorruptLogError:
        pass


def test_unknown_codec_is_a_clear_error() -> None:
    data = bytearray(batch.encode_batch([(b"x", None, (), 1)], base_offset=0))
    data[22] |= 0x07  # codec 7 does not exist
    _fix_crc(data)
    with pytest.raises(CorruptLogError, match="unknown compression codec 7"):
        batch.decode_records(bytes(data))


def test_compressed_section_that_does_not_decompress_is_corrupt() -> None:
    data = bytearray(batch.encode_batch([(b"x" * 100, None, (), 1)] * 5, base_offset=0, codec=4))
    data[70] ^= 0xFF
    _fix_crc(data)
    with pytest.raises(CorruptLogError) as info:
        batch.decode_records(bytes(data))
    assert info.value.kind == "invalid_records"


@pytest.mark.parametrize("codec", CODECS)
@given(items=entries, base_offset=st.integers(min_value=0, max_value=1 << 40))
def test_decode_keys_agrees_with_decode_records(codec: str, items: list, base_offset: int) -> None:
    data = batch.encode_batch(items, base_offset=base_offset, codec=compression.CODEC_IDS[codec])
    header = batch.read_header(data)
    assert batch.decode_keys(data, 0, header) == [
        (r.offset, r.key) for r in batch.decode_records(data, 0, header)
    ]


@given(items=entries, cut=st.integers(min_value=1, max_value=30))
def test_decode_keys_refuses_a_short_section(items: list, cut: int) -> None:
    data = bytearray(batch.encode_batch(items, base_offset=0))
    header = batch.read_header(bytes(data))
    short = bytes(data[: max(batch.HEADER_SIZE, len(data) - cut)])
    fixed = header._replace(batch_length=len(short) - batch.LOG_OVERHEAD)
    with pytest.raises(CorruptLogError):
        batch.decode_keys(short, 0, fixed)


@pytest.mark.parametrize(("base_offset", "records"), [(-(1 << 63), 1), (-1, 1), ((1 << 63) - 2, 3)])
def test_a_base_offset_no_log_can_hold_is_corrupt(base_offset: int, records: int) -> None:
    # The base offset is outside the CRC: damage there (a flipped top bit, say)
    # must not decode as records that readers would skip or that overflow int64.
    data = bytearray(batch.encode_batch([(b"v", b"k", [], 0)] * records, base_offset=0))
    data[0:8] = base_offset.to_bytes(8, "big", signed=True)
    with pytest.raises(CorruptLogError, match="outside the offsets a log can hold") as caught:
        batch.read_header(bytes(data))
    assert caught.value.kind == "offset_regression"
    assert caught.value.position == 0


def _producer_batch(codec: int) -> bytes:
    """Three records at offsets 10, 11, 13 (delta 2 skipped) with producer fields."""
    entries = [(b"a", b"k1", [], 1000), (b"b", None, [("h", b"v")], 1005), (None, b"k3", [], 990)]
    return batch.build_batch(
        batch.encode_records(entries, 1000, [0, 1, 3]),
        base_offset=10,
        record_count=3,
        last_offset_delta=3,
        base_timestamp=1000,
        max_timestamp=1005,
        attributes=codec | batch.DELETE_HORIZON_BIT,
        leader_epoch=7,
        producer_id=4242,
        producer_epoch=3,
        base_sequence=17,
    )


@pytest.mark.parametrize("codec_name", CODECS)
def test_rebuild_keeps_the_batch_fields_and_the_kept_records(codec_name: str) -> None:
    codec = compression.CODEC_IDS[codec_name]
    data = _producer_batch(codec)
    header = batch.read_header(data)
    records = batch.decode_records(data)
    kept = [records[0], records[2]]
    out = batch.rebuild(header, kept, attributes=header.attributes, compression_level=None)
    h = batch.read_header(out)  # CRC holds
    assert (h.base_offset, h.leader_epoch, h.producer_id, h.producer_epoch, h.base_sequence) == (
        10,
        7,
        4242,
        3,
        17,
    )
    assert (h.attributes, h.last_offset_delta, h.record_count) == (header.attributes, 3, 2)
    assert (h.base_timestamp, h.max_timestamp) == (1000, 1000)
    assert batch.decode_records(out) == kept
    assert [(r.offset, r.timestamp) for r in batch.decode_records(out)] == [(10, 1000), (13, 990)]
    # Truncation's use: end the batch at the last kept offset, timestamps from the records.
    cut = batch.rebuild(header, records[:2], attributes=header.attributes, last_offset_delta=1)
    h = batch.read_header(cut)
    assert (h.last_offset, h.base_timestamp, h.max_timestamp) == (11, 1000, 1005)
    assert batch.decode_records(cut) == records[:2]


def test_rebuild_with_no_records_is_an_empty_uncompressed_batch_over_the_same_offsets() -> None:
    data = _producer_batch(compression.CODEC_IDS["gzip"])
    header = batch.read_header(data)
    out = batch.rebuild(header, [], attributes=header.attributes, base_timestamp=batch.NO_TIMESTAMP)
    h = batch.read_header(out)
    assert len(out) == batch.HEADER_SIZE
    assert h.codec == compression.NONE
    assert h.attributes == header.attributes & ~batch.CODEC_MASK
    assert (h.base_offset, h.last_offset, h.record_count) == (10, 13, 0)
    assert (h.base_timestamp, h.max_timestamp, h.producer_id) == (-1, 1005, 4242)
    assert batch.decode_records(out) == []


# ---------------------------------------------------------------- the codec layer
def test_internal_batch_builders_raise_logstore_errors() -> None:
    from logstore import batch

    with pytest.raises(logstore.InvalidRecordError, match="at least one record"):
        batch.encode_batch([], base_offset=0)
    with pytest.raises(logstore.InvalidRecordError, match="explicit timestamps"):
        batch.encode_batch([(b"v", None, (), None)], base_offset=0)


def test_a_level_for_another_codec_does_not_break_rewriting_a_batch(tmp_path: Path) -> None:
    """Truncating inside a gzip batch of a log now set to zstd level 19 rewrites it as gzip.

    The configured level belongs to zstd; zlib refuses 19 ("Bad compression level").
    """
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(compression="gzip")) as log:
        log.append_many([logstore.Message(b"v%d" % i, timestamp=i) for i in range(10)])
    config = LogConfig(compression="zstd", compression_level=19)
    with logstore.Log.open(path, config) as log:
        log.truncate(4)
        assert [r.value for r in log.scan()] == [b"v0", b"v1", b"v2", b"v3"]
    with logstore.Log.open(path, config) as log:
        assert [r.offset for r in log.scan()] == [0, 1, 2, 3]
