"""``validator``: appended input checked before anything is written: types, sizes, keys,
raw batches.
"""

from __future__ import annotations

import os
import random

import pytest

import logstore
from logstore import CorruptLogError, Message, Record, batch

from .conftest import OpenLog
from .helpers import NOW, _producer_batches


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda log: log.append(1), id="value-int"),
        pytest.param(lambda log: log.append("text"), id="value-str"),
        pytest.param(lambda log: log.append(b"v", key="k"), id="key-str"),
        pytest.param(lambda log: log.append(b"v", key=7), id="key-int"),
        pytest.param(lambda log: log.append(b"v", headers=[("k",)]), id="header-1-tuple"),
        pytest.param(lambda log: log.append(b"v", headers=[("k", b"v", b"w")]), id="header-3"),
        pytest.param(lambda log: log.append(b"v", headers=[(b"k", b"v")]), id="header-key-bytes"),
        pytest.param(lambda log: log.append(b"v", headers=[("k", "v")]), id="header-value-str"),
        pytest.param(lambda log: log.append(b"v", headers=["kv"]), id="header-not-pair"),
        pytest.param(lambda log: log.append(b"v", headers=5), id="headers-int"),
        pytest.param(lambda log: log.append(b"v", timestamp=1.5), id="timestamp-float"),
        pytest.param(lambda log: log.append(b"v", timestamp="1"), id="timestamp-str"),
        pytest.param(lambda log: log.append_many("abc"), id="many-str"),
        pytest.param(lambda log: log.append_many(b"abc"), id="many-bytes"),
        pytest.param(lambda log: log.append_many([b"ok", "abc"]), id="many-item-str"),
        pytest.param(lambda log: log.append_many([b"ok", 1]), id="many-item-int"),
        pytest.param(lambda log: log.append_many([(b"v", b"k", None)]), id="many-item-3-tuple"),
        pytest.param(lambda log: log.append_many([(b"v", "k")]), id="many-pair-key-str"),
        pytest.param(lambda log: log.append_many([(1, b"k")]), id="many-pair-value-int"),
        pytest.param(lambda log: log.append_many([Message(b"v", key="k")]), id="many-key-str"),
        pytest.param(lambda log: log.append_many([Message(3)]), id="many-value-int"),
        pytest.param(lambda log: log.read("0"), id="read-offset-str"),
    ],
)
def test_wrong_types_raise_type_error_and_write_nothing(open_log: OpenLog, call) -> None:
    log = open_log()
    log.append(b"first")
    with pytest.raises(TypeError):
        call(log)
    assert log.end_offset == 1
    assert log.read(0) == [Record(0, NOW, None, b"first", ())]
    assert log.append(b"next") == 1


def test_record_too_large(open_log: OpenLog) -> None:
    log = open_log(max_message_bytes=1000)
    log.append(b"small")
    size = log.size_bytes
    with pytest.raises(logstore.RecordTooLarge):
        log.append(b"x" * 2000)
    with pytest.raises(logstore.RecordTooLarge):
        log.append_many([Message(b"x" * 2000, key=b"k")])
    assert log.end_offset == 1
    assert log.size_bytes == size
    assert os.path.getsize(log.segments[-1].path) == size
    assert [r.value for r in log.read(0)] == [b"small"]
    assert log.append(b"after") == 1
    # Many records that together exceed max_message_bytes are split into batches.
    assert log.append_many([b"y" * 300] * 10) == range(2, 12)
    assert [r.offset for r in log.scan()] == list(range(12))


def test_record_too_large_is_measured_after_compression(open_log: OpenLog) -> None:
    log = open_log(max_message_bytes=1000, compression="gzip")
    assert log.append(b"a" * 5000) == 0  # 5000 bytes compress far below 1000
    assert log.read(0)[0].value == b"a" * 5000
    with pytest.raises(logstore.RecordTooLarge):
        log.append(random.Random(1).randbytes(2000))  # incompressible
    assert log.end_offset == 1


def test_record_larger_than_a_segment_is_too_large(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=500)
    with pytest.raises(logstore.RecordTooLarge):
        log.append(b"x" * 600)
    assert log.end_offset == 0
    assert log.size_bytes == 0


def test_too_large_record_in_append_many_writes_nothing(open_log: OpenLog) -> None:
    """A call that raises RecordTooLarge must not leave some of its records behind.

    The caller gets no range back, so it cannot know which offsets were used;
    ``TypeError`` and ``InvalidRecordError`` already reject the whole call.
    """
    log = open_log(max_message_bytes=1000)
    with pytest.raises(logstore.RecordTooLarge):
        log.append_many([b"ok", b"x" * 2000])
    assert log.end_offset == 0
    assert log.read(0) == []
    assert log.size_bytes == 0


def test_compacted_log_rejects_records_without_a_key(open_log: OpenLog) -> None:
    log = open_log(cleanup_policy="compact")
    with pytest.raises(logstore.InvalidRecordError):
        log.append(b"v")
    with pytest.raises(logstore.InvalidRecordError):
        log.append_many([b"v"])
    with pytest.raises(logstore.InvalidRecordError):
        log.append_many([Message(b"v", key=b"k"), Message(b"v")])
    assert log.end_offset == 0
    assert log.append(b"v", key=b"k") == 0
    assert log.append(None, key=b"k") == 1  # a tombstone has a key
    assert log.read(0) == [Record(0, NOW, b"k", b"v", ()), Record(1, NOW, b"k", None, ())]


def test_compact_delete_policy_also_needs_keys(open_log: OpenLog) -> None:
    log = open_log(cleanup_policy="compact,delete")
    with pytest.raises(logstore.InvalidRecordError):
        log.append(b"v")
    assert log.end_offset == 0


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
