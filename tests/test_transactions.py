"""Kafka's transactions read as its ``read_committed`` consumer would, without a Kafka.

The batches a transactional Kafka producer and its coordinator leave are
built here with the codec: data batches with the transactional bit and a
producer id, and end markers (control batches whose record key is
``version 0, type 0 ABORT / 1 COMMIT``). They go into a log with
``append_batches``, which keeps their attributes and producer fields.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import logstore
from logstore import batch, compression
from logstore.errors import CorruptLogError, WrongTypeError
from logstore.transactions import ABORT, COMMIT

TS = 1_700_000_000_000


def data(
    producer_id: int,
    values: list[bytes],
    *,
    transactional: bool = True,
    codec: str = "none",
    key: bytes | None = None,
) -> bytes:
    """A producer's batch of ``values`` (keys ``key``, else ``k-<value>``), base offset 0."""
    entries = [(v, key or b"k-" + v, (), TS + i) for i, v in enumerate(values)]
    attributes = compression.CODEC_IDS[codec] | (batch.TRANSACTIONAL_BIT if transactional else 0)
    return batch.build_batch(
        batch.encode_records(entries, TS),
        base_offset=0,
        record_count=len(values),
        last_offset_delta=len(values) - 1,
        base_timestamp=TS,
        max_timestamp=TS + len(values) - 1,
        attributes=attributes,
        producer_id=producer_id,
        producer_epoch=0,
        base_sequence=0,
    )


def plain(values: list[bytes]) -> bytes:
    """A batch of a producer without transactions (no producer id)."""
    entries = [(v, b"k-" + v, (), TS) for v in values]
    return batch.encode_batch(entries, base_offset=0)


def marker(producer_id: int, kind: int, *, key: bytes | None = None) -> bytes:
    """The end marker Kafka's coordinator writes: a control batch of one record."""
    key = struct.pack(">hh", 0, kind) if key is None else key
    value = struct.pack(">hi", 0, 7)  # version 0, coordinator epoch 7
    return batch.build_batch(
        batch.encode_records([(value, key, (), TS)], TS),
        base_offset=0,
        record_count=1,
        last_offset_delta=0,
        base_timestamp=TS,
        max_timestamp=TS,
        attributes=batch.TRANSACTIONAL_BIT | batch.CONTROL_BIT,
        producer_id=producer_id,
        producer_epoch=0,
    )


def values(records: list[logstore.Record]) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for r in records]


@pytest.fixture
def log(tmp_path: Path):
    with logstore.Log.open(tmp_path / "t-0", maintenance_interval_ms=None) as opened:
        yield opened


def test_aborted_and_open_transactions_are_not_delivered(log: logstore.Log) -> None:
    """Two producers interleaved, one commits, one aborts; a plain batch between; one left open."""
    log.append_batches(data(1, [b"a0", b"a1"]))  # 0-1, aborted below
    log.append_batches(data(2, [b"c0"]))  # 2, committed below
    log.append_batches(plain([b"p0"]))  # 3
    log.append_batches(data(1, [b"a2"]))  # 4
    log.append_batches(marker(2, COMMIT))  # 5
    log.append_batches(marker(1, ABORT))  # 6
    log.append_batches(data(1, [b"c1"], codec="gzip"))  # 7: producer 1's next, committed
    log.append_batches(marker(1, COMMIT))  # 8
    log.append_batches(data(3, [b"o0"]))  # 9: never ended
    log.append(b"mine")  # 10
    committed = [(2, b"c0"), (3, b"p0"), (7, b"c1"), (10, b"mine")]
    everything = [(0, b"a0"), (1, b"a1"), (2, b"c0"), (3, b"p0"), (4, b"a2"), (7, b"c1")]
    everything += [(9, b"o0"), (10, b"mine")]
    assert values(log.read(0)) == committed
    assert values(list(log.scan())) == committed
    assert values(log.read(0, isolation="read_uncommitted")) == everything
    assert values(list(log.scan(isolation="read_uncommitted"))) == everything
    # Started inside a transaction, bounded by count and by range.
    assert values(log.read(1, max_records=2)) == [(2, b"c0"), (3, b"p0")]
    assert values(list(log.scan(4, 8))) == [(7, b"c1")]
    assert values(list(log.scan(0, 2))) == []  # its marker lies past the range: still aborted
    assert values(log.read(4, max_records=1)) == [(7, b"c1")]


def test_a_marker_in_a_later_segment_decides_for_an_earlier_one(log: logstore.Log) -> None:
    log.append_batches(data(5, [b"x0", b"x1"]))  # 0-1
    log.roll()
    log.append_batches(data(5, [b"x2"]))  # 2
    log.roll()
    log.append(b"between")  # 3
    log.roll()
    log.append_batches(marker(5, ABORT))  # 4
    log.append_batches(data(6, [b"y0"]))  # 5
    log.append_batches(marker(6, COMMIT))  # 6
    assert len(log.segments) == 4
    assert values(log.read(0)) == [(3, b"between"), (5, b"y0")]
    # A read that starts after the transaction's first offset, in a later segment.
    assert values(log.read(2)) == [(3, b"between"), (5, b"y0")]
    everything = [(2, b"x2"), (3, b"between"), (5, b"y0")]
    assert values(log.read(2, isolation="read_uncommitted")) == everything


def test_truncating_a_marker_away_reopens_its_transaction(log: logstore.Log) -> None:
    """What a read found is dropped with the bytes it came from; a marker appended later counts."""
    log.append_batches(data(1, [b"t0"]))  # 0
    log.append_batches(marker(1, COMMIT))  # 1
    assert values(log.read(0)) == [(0, b"t0")]
    log.truncate(1)
    assert values(log.read(0)) == []  # open again
    log.append_batches(marker(1, ABORT))  # 1 again, now an abort
    assert values(log.read(0)) == []
    log.append_batches(data(1, [b"t1"]))  # 2
    assert values(log.read(0)) == []  # open
    log.append_batches(marker(1, COMMIT))  # 3: the active segment's walk goes on from where it was
    assert values(log.read(0)) == [(2, b"t1")]


def test_the_verdicts_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r-0"
    with logstore.Log.open(path, maintenance_interval_ms=None) as log:
        log.append_batches(data(1, [b"v0"]))  # 0
        log.roll()
        log.append_batches(data(1, [b"v1"]))  # 1
        log.append_batches(marker(1, ABORT))  # 2
    with logstore.Log.open(path, maintenance_interval_ms=None) as log:
        assert values(log.read(0)) == []
        assert values(log.read(0, isolation="read_uncommitted")) == [(0, b"v0"), (1, b"v1")]


def test_compaction_keeps_the_committed_value_an_aborted_one_would_replace(
    tmp_path: Path,
) -> None:
    """Kafka's cleaner leaves aborted records out of its offset map and removes them.

    An aborted record of a key must not make the cleaner drop the key's
    committed value: the key would vanish for a read_committed reader.
    """
    config = logstore.LogConfig(cleanup_policy="compact")
    with logstore.Log.open(tmp_path / "c-0", config, maintenance_interval_ms=None) as log:
        log.append_batches(data(1, [b"committed"], key=b"k"))  # 0
        log.append_batches(marker(1, COMMIT))  # 1
        log.append_batches(data(1, [b"aborted"], key=b"k"))  # 2
        log.append_batches(marker(1, ABORT))  # 3
        log.append_batches(data(2, [b"open"], key=b"k"))  # 4: never ended
        log.append(b"tail", key=b"other")  # 5
        log.roll()
        log.compact()
        assert values(log.read(0)) == [(0, b"committed"), (5, b"tail")]
        uncommitted = [(0, b"committed"), (4, b"open"), (5, b"tail")]
        assert values(log.read(0, isolation="read_uncommitted")) == uncommitted


def test_a_control_batch_without_a_control_key_is_corrupt(log: logstore.Log) -> None:
    log.append_batches(data(1, [b"t0"]))
    log.append_batches(marker(1, COMMIT, key=b"\x00"))
    with pytest.raises(
        CorruptLogError,
        match=r"00000000000000000000\.log at byte 74: control batch at offset 1 has no control record key$",
    ):
        log.read(0)
    assert values(log.read(0, isolation="read_uncommitted")) == [(0, b"t0")]


def test_isolation_is_checked() -> None:
    with pytest.raises(
        ValueError,
        match=r"^isolation must be 'read_committed' or 'read_uncommitted', not 'committed'$",
    ):
        logstore.transactions.check_isolation("committed")
    with pytest.raises(WrongTypeError, match=r"^isolation must be a str, not int$"):
        logstore.transactions.check_isolation(1)


def test_log_read_refuses_an_unknown_isolation(log: logstore.Log) -> None:
    with pytest.raises(ValueError, match="isolation must be"):
        log.read(0, isolation="read_commited")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="isolation must be"):
        log.scan(isolation="dirty")  # type: ignore[arg-type]


def test_a_consumer_steps_over_markers_and_aborted_records_to_the_end(tmp_path: Path) -> None:
    """Its position reaches ``end_offset`` past a trailing marker and an aborted transaction."""
    with logstore.Broker.open(tmp_path / "root", maintenance_interval_ms=None) as broker:
        broker.create_topic("t", partitions=1)
        log = broker.topic("t").partition(0)
        log.append_batches(data(7, [b"a", b"b"]))  # offsets 0-1, committed at 2
        log.append_batches(marker(7, COMMIT))
        log.append_batches(data(8, [b"x"]))  # offset 3, aborted at 4
        log.append_batches(marker(8, ABORT))
        assert log.end_offset == 5
        consumer = broker.consumer("g", "t")
        first = consumer.poll(max_records=10, timeout_ms=0)
        assert [(c.record.offset, c.record.value) for c in first] == [(0, b"a"), (1, b"b")]
        assert consumer.position("t", 0) == 2
        assert consumer.poll(max_records=10, timeout_ms=0) == []
        assert consumer.position("t", 0) == 5
        consumer.commit()
        assert broker.committed_offsets() == {("g", "t", 0): 5}
        log.append_many([b"after"])
        after = consumer.poll(timeout_ms=0)
        assert [(c.record.offset, c.record.value) for c in after] == [(5, b"after")]
