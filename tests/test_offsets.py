"""The records of ``__consumer_offsets`` in Kafka's schemas (FORMAT.md section 15).

Keys and values are matched byte for byte against layouts computed by hand
from Kafka's ``OffsetCommitKey.json`` / ``OffsetCommitValue.json``, and
against bytes Kafka 4.x itself wrote. Records of other Kafka record types and
versions are skipped; roots holding the JSON records of earlier logstore
releases keep their committed offsets, which move into Kafka's records at the
next open, and compaction never brings a forgotten entry back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import logstore
from logstore import Message, _offsets, diagnostics
from logstore._offsets import Commit

from .conftest import FakeClock

CONFIG = logstore.LogConfig(fsync="never")
DAY_MS = 86_400_000


def h(text: str) -> bytes:
    """Hex with spaces and ``|`` between fields, for layouts that read like the schema."""
    return bytes.fromhex(text.replace("|", ""))


def open_broker(root: Path, clock: FakeClock) -> logstore.Broker:
    return logstore.Broker.open(root, CONFIG, clock=clock, maintenance_interval_ms=None)


def offsets_log(broker: logstore.Broker) -> logstore.Log:
    return broker.topic(_offsets.OFFSETS_TOPIC).partition(0)


def stored(broker: logstore.Broker) -> list[tuple[bytes | None, bytes | None]]:
    log = offsets_log(broker)
    return [(r.key, r.value) for r in log.read(log.start_offset, max_records=100_000)]


# ---------------------------------------------------------------- the bytes written


def test_a_key_is_record_type_1_then_group_topic_and_partition() -> None:
    assert _offsets.encode_key("g", "t", 3) == h("0001 | 0001 67 | 0001 74 | 00000003")
    # UTF-8 lengths, not characters: "ü" is two bytes. 70000 = 0x11170.
    assert _offsets.encode_key("grüppe", "logs", 70000) == h(
        "0001 | 0007 67 72 c3 bc 70 70 65 | 0004 6c 6f 67 73 | 00011170"
    )


def test_a_key_is_the_bytes_kafkas_group_coordinator_writes() -> None:
    # GroupCoordinatorRecordSerde.serializeKey(newOffsetCommitRecord("g", "t", 3, ...)),
    # Kafka 4.4.0; its tombstone record has the same key.
    assert _offsets.encode_key("g", "t", 3).hex() == "000100016700017400000003"


def test_a_value_is_version_3_with_no_leader_epoch_and_no_metadata() -> None:
    value = _offsets.encode_value(42, 1_700_000_000_000)  # 1_700_000_000_000 = 0x18bcfe56800
    assert value == h("0003 | 000000000000002a | ffffffff | 0000 | 0000018bcfe56800")
    assert len(value) == 24
    assert _offsets.decode_value(_offsets.encode_key("g", "t", 0), value) == Commit(
        42, 1_700_000_000_000
    )


def test_a_value_carries_its_metadata_as_a_kafka_string() -> None:
    # "kafka-offset=7" is 14 bytes; "é" two bytes of UTF-8.
    value = _offsets.encode_value(42, 1_700_000_000_000, "kafka-offset=7é")
    assert value == h(
        "0003 | 000000000000002a | ffffffff | 0010 6b61666b612d6f66667365743d37 c3a9"
        " | 0000018bcfe56800"
    )
    assert _offsets.decode_value(KEY, value) == Commit(42, 1_700_000_000_000, "kafka-offset=7é")


def test_metadata_is_at_most_4096_bytes_of_utf8() -> None:
    assert _offsets.metadata_error("x" * 4096) is None
    assert _offsets.metadata_error("é" * 2049) == (
        "is 4098 bytes of UTF-8: at most 4096 (Kafka's default offset.metadata.max.bytes)"
    )
    assert _offsets.metadata_error("\ud800") == "is not encodable as UTF-8 (a lone surrogate)"
    assert _offsets.metadata_error(b"x") == "must be a str, not bytes"


def test_an_over_long_name_does_not_fit_a_kafka_string() -> None:
    assert _offsets.fits("x" * 32767)
    assert not _offsets.fits("x" * 32768)
    assert not _offsets.fits("é" * 16384)  # 32768 bytes in UTF-8
    assert not _offsets.fits("\ud800")  # a lone surrogate has no UTF-8 form
    with pytest.raises(ValueError, match="32768 UTF-8 bytes"):
        _offsets.encode_key("x" * 32768, "t", 0)


def test_commits_and_a_forgotten_topic_are_written_as_kafka_records(
    tmp_path: Path, clock: FakeClock
) -> None:
    with open_broker(tmp_path, clock) as broker:
        broker.create_topic("t", 2)
        broker.create_topic("gone")
        broker.produce_many("t", [b"x"] * 3, partition=0)
        broker.produce_many("gone", [b"y"])
        with broker.consumer("g", ["t", "gone"]) as consumer:
            consumer.poll()
            consumer.commit()
        broker.delete_topic("gone")
        value = _offsets.encode_value
        assert stored(broker) == [
            (h("0001 | 0001 67 | 0004 676f6e65 | 00000000"), value(1, 1_700_000_000_000)),
            (h("0001 | 0001 67 | 0001 74 | 00000000"), value(3, 1_700_000_000_000)),
            (h("0001 | 0001 67 | 0001 74 | 00000001"), value(0, 1_700_000_000_000)),
            (h("0001 | 0001 67 | 0004 676f6e65 | 00000000"), None),  # Kafka's tombstone
        ]
        assert broker.committed_offsets() == {("g", "t", 0): 3, ("g", "t", 1): 0}


# ---------------------------------------------------------------- every version read

KEY = _offsets.encode_key("g", "t", 0)
TS = "0000018bcfe56800"  # 1_700_000_000_000


@pytest.mark.parametrize(
    ("value", "commit"),
    [
        # version 0 and 2: offset, metadata "meta", commit timestamp
        (
            h(f"0000 | 0000000000000007 | 0004 6d657461 | {TS}"),
            Commit(7, 1_700_000_000_000, "meta"),
        ),
        (h(f"0002 | 0000000000000007 | 0000 | {TS}"), Commit(7, 1_700_000_000_000)),
        # version 1 adds an expire timestamp
        (
            h(f"0001 | 0000000000000007 | 0000 | {TS} | 0000018bd4ebc400"),
            Commit(7, 1_700_000_000_000),
        ),
        # version 3 with a leader epoch and metadata
        (
            h(f"0003 | 0000000000000007 | 00000005 | 0002 6d64 | {TS}"),
            Commit(7, 1_700_000_000_000, "md"),
        ),
        # version 4 (flexible), as Kafka 4.4.0 writes a commit with no topic id:
        # metadata "" as COMPACT_STRING 0x01 (length + 1), then zero tagged fields
        (h(f"0004 | 000000000000002a | ffffffff | 01 | {TS} | 00"), Commit(42, 1_700_000_000_000)),
        # ... and with a topic id: one tagged field, tag 0, 16 bytes of uuid
        (
            h(f"0004 | 000000000000002a | ffffffff | 01 | {TS} | 01 00 10 {'00' * 15}01"),
            Commit(42, 1_700_000_000_000),
        ),
        # a value Kafka 4.1.0 wrote on a real cluster (twmb/franz-go issue 1105)
        (
            bytes.fromhex("0004000000000021d4a8ffffffff010000019964f2d83600"),
            Commit(2_217_128, 1_758_335_260_726),
        ),
        # version 4 metadata of 200 bytes: 201 = 0xc9 as an unsigned varint is c9 01
        (
            h(f"0004 | 0000000000000007 | ffffffff | c901 {'78' * 200} | {TS} | 00"),
            Commit(7, 1_700_000_000_000, "x" * 200),
        ),
        # bytes after the fields are ignored, as Kafka's reader ignores them
        (_offsets.encode_value(9, 1) + b"\xff", Commit(9, 1)),
    ],
)
def test_every_kafka_value_version_is_read(value: bytes, commit: Commit) -> None:
    assert _offsets.decode_value(KEY, value) == commit
    assert _offsets.latest([(KEY, value)]) == {("g", "t", 0): commit.offset}


def test_kafkas_legacy_key_type_0_names_the_same_entry() -> None:
    assert _offsets.decode_key(h("0000 | 0001 67 | 0001 74 | 00000000")) == ("g", "t", 0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (h("0002 | 0001 67"), h("0004 | 0008 636f6e73756d6572")),  # group metadata, type 2
        (h("0002 | 0001 67"), None),  # its tombstone
        (h("0003 | 0001 67"), h("0000 | 00000001")),  # consumer group metadata, type 3
        (h("0011 | 0001 67"), h("0000")),  # streams group metadata, type 17
        (h("7fff | 0001 67"), h("0000")),  # a type no Kafka has
        (h("0001 | 0001 67 | 0001"), _offsets.encode_value(1, 1)),  # a key cut short
        (h("0001 | 0001 ff | 0001 74 | 00000000"), _offsets.encode_value(1, 1)),  # not UTF-8
        (h("0001 | ffff | 0001 74 | 00000000"), _offsets.encode_value(1, 1)),  # a null group
        (b"", b""),
        (None, b"x"),
        (b"[1, 2]", b'{"offset": 1}'),  # JSON, but not a [group, topic, partition]
    ],
)
def test_records_that_are_not_offset_commits_are_skipped(
    key: bytes | None, value: bytes | None
) -> None:
    live = _offsets.replay([(KEY, _offsets.encode_value(5, 1)), (key, value)])
    assert _offsets.committed(live) == {("g", "t", 0): Commit(5, 1)}


@pytest.mark.parametrize(
    "value",
    [
        h(f"0005 | 0000000000000007 | ffffffff | 01 | {TS} | 00"),  # a version not known
        h("0003 | 0000000000000007"),  # cut short
        h(f"0003 | 0000000000000007 | ffffffff | ffff | {TS}"),  # null metadata
        h(f"0004 | 0000000000000007 | ffffffff | 00 | {TS} | 00"),  # null COMPACT_STRING
        h(f"0004 | 0000000000000007 | ffffffff | 01 | {TS} | 01 00 10 00"),  # tag overruns
        h(f"0004 | 0000000000000007 | ffffffff | ffffffffff01 | {TS} | 00"),  # varint > 5 bytes
        b"{}",
    ],
)
def test_an_unreadable_value_ends_its_key_as_compaction_would(value: bytes) -> None:
    """Compaction keeps only a key's latest record, so an earlier commit must not
    show through an unreadable later one: the key then counts for nothing."""
    assert _offsets.decode_value(KEY, value) is None
    other = _offsets.encode_key("g", "t", 1)
    records = [(KEY, _offsets.encode_value(5, 1)), (other, _offsets.encode_value(6, 1))]
    assert _offsets.latest([*records, (KEY, value)]) == {("g", "t", 1): 6}


def test_an_entry_takes_the_commit_of_its_most_recently_written_key() -> None:
    json_key, kafka_key = b'["g","t",0]', _offsets.encode_key("g", "t", 0)
    json_value = b'{"offset":3,"commit_ms":10}'
    older_json = [(json_key, json_value), (kafka_key, _offsets.encode_value(8, 20))]
    assert _offsets.latest(older_json) == {("g", "t", 0): 8}
    assert _offsets.latest(older_json[::-1]) == {("g", "t", 0): 3}
    # A tombstone ends only its own key.
    assert _offsets.latest([*older_json, (json_key, None)]) == {("g", "t", 0): 8}
    assert _offsets.latest([*older_json, (kafka_key, None)]) == {("g", "t", 0): 3}


def test_the_same_entry_compacts_to_its_latest_commit(tmp_path: Path, clock: FakeClock) -> None:
    config = logstore.LogConfig(fsync="never", cleanup_policy="compact", segment_bytes=1000)
    with logstore.Log.open(tmp_path, config, clock=clock, maintenance_interval_ms=None) as log:
        for n in range(60):
            log.append_many(
                Message(_offsets.encode_value(n * 10 + p, n), key=_offsets.encode_key("g", "t", p))
                for p in range(3)
            )
        log.roll()
        before = _offsets.latest((r.key, r.value) for r in log.scan())
        log.compact()
        kept = [(r.key, r.value) for r in log.scan()]
    assert len(kept) == 3
    assert _offsets.latest(kept) == before == {("g", "t", p): 590 + p for p in range(3)}


# ---------------------------------------------------------------- roots of earlier releases


def write_json_commits(root: Path, records: list[tuple[bytes, bytes | None]]) -> None:
    """Append records to the offsets partition of a closed root, as earlier releases wrote them."""
    config = logstore.LogConfig(fsync="never", cleanup_policy="compact")
    path = root / f"{_offsets.OFFSETS_TOPIC}-0"
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        log.append_many(Message(value, key=key) for key, value in records)


#: What earlier releases wrote: compact JSON keys and values, a JSON tombstone.
JSON_COMMITS = [
    (b'["g","t",0]', b'{"offset":2,"commit_ms":1000}'),
    (b'["g","t",0]', b'{"offset":4,"commit_ms":2000}'),
    (b'["g","t",1]', b'{"offset":1,"commit_ms":2000}'),
    (b'["other","t",1]', b'{"offset":3,"commit_ms":3000}'),
    (b'["gone","t",0]', b'{"offset":1,"commit_ms":1000}'),
    (b'["gone","t",0]', None),
]


def json_root(root: Path, clock: FakeClock) -> None:
    with open_broker(root, clock) as broker:
        broker.create_topic("t", 2)
        for p in (0, 1):
            broker.produce_many("t", [b"%d-%d" % (p, i) for i in range(6)], partition=p)
    write_json_commits(root, JSON_COMMITS)


def test_a_root_with_json_commits_reopens_at_its_positions_and_continues(
    tmp_path: Path, clock: FakeClock
) -> None:
    json_root(tmp_path, clock)
    assert diagnostics.group_offsets(str(tmp_path)) == {
        ("g", "t", 0): 4,
        ("g", "t", 1): 1,
        ("other", "t", 1): 3,
    }
    with open_broker(tmp_path, clock) as broker:
        assert broker.committed_offsets() == {
            ("g", "t", 0): 4,
            ("g", "t", 1): 1,
            ("other", "t", 1): 3,
        }
        # The old records moved into Kafka's, with their offsets and commit times,
        # in one batch after them; every old key that was live got a tombstone.
        assert stored(broker)[len(JSON_COMMITS) :] == [
            (_offsets.encode_key("g", "t", 0), _offsets.encode_value(4, 2000)),
            (_offsets.encode_key("g", "t", 1), _offsets.encode_value(1, 2000)),
            (_offsets.encode_key("other", "t", 1), _offsets.encode_value(3, 3000)),
            (b'["g","t",0]', None),
            (b'["g","t",1]', None),
            (b'["other","t",1]', None),
        ]
        with broker.consumer("g", ["t"]) as consumer:
            got = consumer.poll(max_records=100)
            assert sorted((c.partition, c.record.offset) for c in got) == [
                *((0, o) for o in range(4, 6)),
                *((1, o) for o in range(1, 6)),
            ]
            consumer.commit()
        end = offsets_log(broker).end_offset
    with open_broker(tmp_path, clock) as broker:
        assert offsets_log(broker).end_offset == end  # rewritten once, not at every open
        assert broker.committed_offsets() == {
            ("g", "t", 0): 6,
            ("g", "t", 1): 6,
            ("other", "t", 1): 3,
        }
        with broker.consumer("other", ["t"]) as consumer:
            assert consumer.position("t", 1) == 3
    assert diagnostics.group_offsets(str(tmp_path))[("g", "t", 0)] == 6


def test_a_forgotten_entry_of_a_json_root_stays_forgotten_after_compaction(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The JSON record of an entry must not outlive the Kafka tombstone that forgets it."""
    json_root(tmp_path, clock)
    with open_broker(tmp_path, clock) as broker:
        broker.delete_topic("t")
        assert broker.committed_offsets() == {}
        log = offsets_log(broker)
        log.roll()
        log.compact()
        clock.advance(2 * DAY_MS)  # past delete_retention_ms: the next round drops tombstones
        broker.create_topic("u")
        with broker.consumer("h", ["u"]) as consumer:
            consumer.commit()
        log.roll()
        log.compact()
        keys = [key for key, _ in stored(broker)]
    assert keys == [_offsets.encode_key("h", "u", 0)]
    with open_broker(tmp_path, clock) as broker:
        assert broker.committed_offsets() == {("h", "u", 0): 0}


def test_a_json_commit_whose_group_kafka_cannot_store_is_forgotten_with_a_warning(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    json_root(tmp_path, clock)
    lone = json.dumps(["\ud800", "t", 0], separators=(",", ":")).encode()
    write_json_commits(tmp_path, [(lone, b'{"offset":1,"commit_ms":1}')])
    with caplog.at_level(logging.WARNING, logger="logstore"), open_broker(tmp_path, clock) as b:
        assert ("\ud800", "t", 0) not in b.committed_offsets()
        assert ("g", "t", 0) in b.committed_offsets()
        assert (lone, None) in stored(b)
    assert "committed offset of t-0 forgotten" in caplog.text


@pytest.mark.parametrize("group", ["x" * 32768, "é" * 16384, "\ud800"])
def test_a_group_kafka_cannot_store_is_refused(
    tmp_path: Path, clock: FakeClock, group: str
) -> None:
    with open_broker(tmp_path, clock) as broker:
        broker.create_topic("t")
        with pytest.raises(logstore.ConfigError, match="does not fit Kafka's offsets schema"):
            broker.consumer(group, ["t"])
        with broker.consumer("x" * 32767, ["t"]) as consumer:
            consumer.commit()
        assert broker.committed_offsets() == {("x" * 32767, "t", 0): 0}


# ---------------------------------------------------------------- commit metadata


def test_commit_metadata_round_trips_and_survives_reopen(tmp_path: Path, clock: FakeClock) -> None:
    oam = logstore.OffsetAndMetadata
    with open_broker(tmp_path, clock) as broker:
        broker.create_topic("t", 2)
        broker.produce_many("t", [b"x"] * 5, partition=0)
        with broker.consumer("g", "t") as consumer:
            assert consumer.committed_metadata("t", 0) is None
            consumer.commit({("t", 0): oam(4, "kafka-offset=17"), ("t", 1): 0})
            assert consumer.committed_metadata("t", 0) == oam(4, "kafka-offset=17")
            assert consumer.committed_metadata("t", 1) == oam(0, "")
            assert consumer.committed("t", 0) == 4
        key = _offsets.encode_key("g", "t", 0)
        assert stored(broker)[-2] == (key, _offsets.encode_value(4, clock(), "kafka-offset=17"))
    with open_broker(tmp_path, clock) as broker, broker.consumer("g", "t") as consumer:
        assert consumer.committed_metadata("t", 0) == oam(4, "kafka-offset=17")
        assert consumer.position("t", 0) == 4
        assert broker.committed_offsets() == {("g", "t", 0): 4, ("g", "t", 1): 0}
        consumer.commit()  # a commit without metadata keeps "", as Kafka's commitSync()
        assert consumer.committed_metadata("t", 0) == oam(4, "")
    with open_broker(tmp_path, clock) as broker, broker.consumer("g", "t") as consumer:
        assert consumer.committed_metadata("t", 0) == oam(4, "")


def test_metadata_over_4096_bytes_is_refused_and_nothing_is_written(
    tmp_path: Path, clock: FakeClock
) -> None:
    oam = logstore.OffsetAndMetadata
    with open_broker(tmp_path, clock) as broker:
        broker.create_topic("t", 2)
        with broker.consumer("g", "t") as consumer:
            consumer.commit({("t", 0): oam(0, "é" * 2048)})  # 4096 bytes: the most
            before = stored(broker)
            with pytest.raises(logstore.ConfigError) as raised:
                consumer.commit({("t", 1): 0, ("t", 0): oam(0, "x" * 4097)})
            assert str(raised.value) == (
                "the commit metadata of t-0 is 4097 bytes of UTF-8: at most 4096 "
                "(Kafka's default offset.metadata.max.bytes)"
            )
            with pytest.raises(logstore.WrongTypeError, match="of t-1 must be a str, not bytes"):
                consumer.commit({("t", 1): oam(0, b"x")})  # type: ignore[arg-type]
            assert stored(broker) == before
            assert consumer.committed_metadata("t", 0) == oam(0, "é" * 2048)
            assert consumer.committed("t", 1) is None


def test_json_commits_of_earlier_releases_read_with_empty_metadata(
    tmp_path: Path, clock: FakeClock
) -> None:
    json_root(tmp_path, clock)
    with open_broker(tmp_path, clock) as broker, broker.consumer("g", "t") as consumer:
        assert consumer.committed_metadata("t", 0) == logstore.OffsetAndMetadata(4, "")
        assert consumer.committed_metadata("t", 1) == logstore.OffsetAndMetadata(1, "")
