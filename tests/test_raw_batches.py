"""The raw-batch API for brokers: append_batches and read_batches move batches as bytes."""

from __future__ import annotations

import crc32c
import pytest

import logstore
from logstore import CorruptLogError, batch

from .conftest import OpenLog


def _producer_batches(count: int, per_batch: int, codec: int = 0) -> bytes:
    """Batches as a producer sends them: base offset 0 each, CRC over the rest."""
    out = []
    for b in range(count):
        items = [
            (b"value-%d-%d" % (b, i), b"key-%d" % i, (), 1_700_000_000_000 + b)
            for i in range(per_batch)
        ]
        out.append(batch.encode_batch(items, base_offset=0, codec=codec))
    return b"".join(out)


def test_append_batches_assigns_offsets_by_rewriting_only_the_base_offset(
    open_log: OpenLog,
) -> None:
    log = open_log()
    log.append(b"before")
    sent = _producer_batches(3, 4, codec=4)
    assert log.append_batches(sent) == range(1, 13)
    stored = log.read_batches(1, max_bytes=1 << 20)
    assert len(stored) == len(sent)
    # Identical except the 8-byte base offsets, and every CRC still valid.
    position = 0
    for expected_base in (1, 5, 9):
        header = batch.read_header(stored, position)
        assert header.base_offset == expected_base
        assert (
            stored[position + 8 : position + header.size]
            == sent[position + 8 : position + header.size]
        )
        position += header.size
    assert [(r.offset, r.value) for r in log.read(1)] == [
        (1 + 4 * b + i, b"value-%d-%d" % (b, i)) for b in range(3) for i in range(4)
    ]


@pytest.mark.parametrize("sent_base", [-1, 5, -(1 << 63), (1 << 63) - 1])
def test_append_batches_ignores_the_base_offset_a_sender_wrote(
    open_log: OpenLog, sent_base: int
) -> None:
    # The base offset is the log's to assign (outside the CRC): whatever a sender
    # put there, every record is checked and stored, none skipped as "below 0".
    log = open_log()
    sent = bytearray(_producer_batches(2, 3))
    sent[0:8] = sent_base.to_bytes(8, "big", signed=True)
    assert log.append_batches(sent) == range(0, 6)
    assert [(r.offset, r.value) for r in log.read(0)] == [
        (3 * b + i, b"value-%d-%d" % (b, i)) for b in range(2) for i in range(3)
    ]
    # A malformed record under a valid CRC (the sender checksummed garbage) is
    # refused too: with a negative base offset it used to be skipped unchecked.
    bad = bytearray(batch.encode_batch([(b"v", b"k", (), 0)] * 3, base_offset=0))
    bad[batch.HEADER_SIZE] = 0x7E  # first record's length varint: 63 bytes, past the end
    bad[17:21] = crc32c.crc32c(bytes(bad[21:])).to_bytes(4, "big")
    bad[0:8] = sent_base.to_bytes(8, "big", signed=True)
    with pytest.raises(CorruptLogError, match="record"):
        log.append_batches(bad)
    assert log.end_offset == 6


def test_append_batches_refuses_a_bad_batch_and_writes_nothing(open_log: OpenLog) -> None:
    log = open_log()
    sent = bytearray(_producer_batches(2, 3))
    sent[-1] ^= 0x01  # second batch: CRC mismatch
    with pytest.raises(CorruptLogError, match="CRC mismatch"):
        log.append_batches(sent)
    assert log.end_offset == 0


def test_append_batches_into_a_compacted_log_needs_keys(open_log: OpenLog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = open_log(path=tmp_path / "c", cleanup_policy="compact")
    keyless = batch.encode_batch([(b"v", None, (), 1)], base_offset=0)
    with pytest.raises(logstore.InvalidRecordError):
        log.append_batches(keyless)
    assert log.end_offset == 0


def test_read_batches_from_inside_a_batch_and_across_segments(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=400)
    for b in range(10):
        log.append_many([b"%d-%d" % (b, i) for i in range(5)])
    assert len(log.segments) > 2
    whole = log.read_batches(0, max_bytes=1 << 30)
    starts = []
    position = 0
    while position < len(whole):
        header = batch.read_header(whole, position)
        starts.append(header.base_offset)
        position += header.size
    assert starts == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    # From offset 12: the batch holding it (base 10) comes first, whole.
    part = log.read_batches(12, max_bytes=1)
    assert batch.read_header(part).base_offset == 10
    assert len(part) == batch.read_header(part).size  # one batch even over max_bytes
    two = log.read_batches(12, max_bytes=2 * len(part))
    assert [batch.read_header(two, p).base_offset for p in (0, len(part))] == [10, 15]
    assert log.read_batches(log.end_offset) == b""
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read_batches(log.end_offset + 1)


def test_read_batches_feeds_append_batches_of_another_log(open_log: OpenLog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = open_log(path=tmp_path / "a", compression="zstd")
    source.append_many(
        [logstore.Message(b"v%d" % i, key=b"k%d" % i, headers=(("h", b"1"),)) for i in range(50)]
    )
    target = open_log(path=tmp_path / "b")
    target.append_batches(source.read_batches(0, max_bytes=1 << 20))
    assert [r[2:] for r in target.scan()] == [r[2:] for r in source.scan()]
