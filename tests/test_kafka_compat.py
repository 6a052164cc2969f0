"""Golden batches from an independent Kafka implementation, matched byte for byte.

Every vector in ``tests/data/kafka-python`` (built by kafka-python's batch
builder, cross-checked with aiokafka) must decode to exactly its manifest; the
uncompressed ones must re-encode to identical bytes; whole files must open as
logs ending where the manifest says; and segments logstore writes must decode
with kafka-python's own reader.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore import batch, compression
from logstore.errors import CorruptLogError

from .conftest import VECTORS

MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
ALL = MANIFEST["vectors"]
BATCH_VECTORS = [v for v in ALL if v["kind"] in ("batches", "corrupt")]
LEGACY_VECTORS = [v for v in ALL if v["kind"] == "legacy"]
# Our CorruptLogError.kind for each manifest stop_reason. A zero-filled tail has
# batch length 0 ("invalid_length" to Kafka); logstore names it a torn tail.
STOP_KINDS = {
    "truncated": {"truncated"},
    "invalid_length": {"invalid_length", "zero_fill"},
    "crc_mismatch": {"crc_mismatch"},
    "unsupported_magic": {"unsupported_magic"},
    "invalid_records": {"invalid_records"},
}
HEADER_FIELDS = [
    ("base_offset", "base_offset"),
    ("batch_length", "batch_length"),
    ("partition_leader_epoch", "leader_epoch"),
    ("magic", "magic"),
    ("crc", "crc"),
    ("attributes", "attributes"),
    ("last_offset_delta", "last_offset_delta"),
    ("base_timestamp", "base_timestamp"),
    ("max_timestamp", "max_timestamp"),
    ("producer_id", "producer_id"),
    ("producer_epoch", "producer_epoch"),
    ("base_sequence", "base_sequence"),
    ("record_count", "record_count"),
]


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _data(vector: dict[str, Any]) -> bytes:
    return (VECTORS / vector["file"]).read_bytes()


def _codec_available(vector: dict[str, Any]) -> bool:
    return all(compression.is_available(b["codec"]) for b in vector.get("batches", []))


def test_manifest_files_match_their_hashes() -> None:
    for vector in ALL:
        data = _data(vector)
        assert len(data) == vector["size"], vector["name"]
        assert hashlib.sha256(data).hexdigest() == vector["sha256"], vector["name"]


@pytest.mark.parametrize("vector", BATCH_VECTORS, ids=lambda v: v["name"])
def test_vector_decodes_to_its_manifest(vector: dict[str, Any]) -> None:
    if not _codec_available(vector):
        pytest.skip("codec package not installed")
    data = _data(vector)
    expected = vector["batches"]
    position = 0
    for want in expected:
        assert position == want["position"]
        header = batch.read_header(data, position)
        for manifest_name, field in HEADER_FIELDS:
            assert getattr(header, field) == want[manifest_name], (vector["name"], field)
        assert compression.CODEC_NAMES[header.codec] == want["codec"]
        records = batch.decode_records(data, position, header)
        assert len(records) == len(want["records"])
        for got, rec in zip(records, want["records"], strict=True):
            assert got.offset == rec["offset"]
            assert got.timestamp == rec["timestamp"]
            assert _hex(got.key) == rec["key"]
            if "value" in rec:
                assert _hex(got.value) == rec["value"]
            else:  # large values are summarised
                assert got.value is not None
                assert len(got.value) == rec["value_len"]
                assert hashlib.sha256(got.value).hexdigest() == rec["value_sha256"]
                assert got.value[:64].hex() == rec["value_head"]
            assert [[k, _hex(v)] for k, v in got.headers] == rec["headers"]
        position += header.size
    assert position == vector["expect"]["valid_bytes"]
    stop = vector["expect"]["stop_reason"]
    if stop is None:
        assert position == len(data)
    else:
        with pytest.raises(CorruptLogError) as info:
            batch.read_header(data, position)
        assert info.value.kind in STOP_KINDS[stop]
        assert info.value.position == position


@pytest.mark.parametrize(
    "vector",
    [v for v in BATCH_VECTORS if any(b["codec"] == "none" for b in v["batches"])],
    ids=lambda v: v["name"],
)
def test_uncompressed_vector_reencodes_to_identical_bytes(vector: dict[str, Any]) -> None:
    data = _data(vector)
    for want in vector["batches"]:
        if want["codec"] != "none":
            continue
        position = want["position"]
        header = batch.read_header(data, position)
        records = batch.decode_records(data, position, header)
        section = batch.encode_records(
            [(r.value, r.key, r.headers, r.timestamp) for r in records],
            header.base_timestamp,
            [r.offset - header.base_offset for r in records],
        )
        rebuilt = batch.build_batch(
            section,
            base_offset=header.base_offset,
            record_count=header.record_count,
            last_offset_delta=header.last_offset_delta,
            base_timestamp=header.base_timestamp,
            max_timestamp=header.max_timestamp,
            attributes=header.attributes,
            leader_epoch=header.leader_epoch,
            producer_id=header.producer_id,
            producer_epoch=header.producer_epoch,
            base_sequence=header.base_sequence,
        )
        assert rebuilt == data[position : position + header.size], vector["name"]


def test_fresh_batch_matches_kafka_python_builder_bytes() -> None:
    """A batch logstore encodes itself equals kafka-python's for the same records."""
    vector = next(v for v in ALL if v["name"] == "single_record")
    rec = vector["batches"][0]["records"][0]
    encoded = batch.encode_batch(
        [(bytes.fromhex(rec["value"]), bytes.fromhex(rec["key"]), (), rec["timestamp"])],
        base_offset=0,
    )
    assert encoded == _data(vector)


@pytest.mark.parametrize("vector", LEGACY_VECTORS, ids=lambda v: v["name"])
def test_legacy_message_sets_are_refused(vector: dict[str, Any]) -> None:
    data = _data(vector)
    with pytest.raises(CorruptLogError) as info:
        batch.read_header(data, 0)
    assert info.value.kind == "unsupported_magic"
    assert info.value.position == 0
    assert f"magic {vector['expect']['magic']}" in str(info.value)


def _install(vector: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    base = vector["batches"][0]["base_offset"] if vector.get("batches") else 0
    target = directory / f"{base:020d}.log"
    shutil.copyfile(VECTORS / vector["file"], target)
    return target


@pytest.mark.parametrize("vector", BATCH_VECTORS, ids=lambda v: v["name"])
def test_vector_opens_as_a_log(vector: dict[str, Any], tmp_path: Path) -> None:
    if not _codec_available(vector):
        pytest.skip("codec package not installed")
    segment = _install(vector, tmp_path / "p-0")
    expect = vector["expect"]
    with logstore.Log.open(tmp_path / "p-0", logstore.LogConfig(fsync="never")) as log:
        assert log.end_offset == expect["next_offset"]
        assert segment.stat().st_size == expect["valid_bytes"]
        offsets = [r.offset for r in log.scan(isolation="read_uncommitted")]
        want = [r["offset"] for b in vector["batches"] for r in b["records"]]
        assert offsets == want
        # A transactional batch with no end marker after it is an open
        # transaction: Kafka's read_committed consumer does not see it.
        open_txn = any(b["is_transactional"] for b in vector["batches"])
        assert [r.offset for r in log.scan()] == ([] if open_txn else want)
    if expect["stop_reason"] is not None:
        quarantined = segment.with_name(f"{segment.name}.corrupt-{expect['valid_bytes']}")
        assert quarantined.read_bytes() == _data(vector)[expect["valid_bytes"] :]


@pytest.mark.parametrize("vector", LEGACY_VECTORS, ids=lambda v: v["name"])
@pytest.mark.parametrize("recovery", ["truncate", "fail"])
def test_legacy_segment_is_refused_and_left_untouched(
    vector: dict[str, Any], recovery: str, tmp_path: Path
) -> None:
    segment = _install(vector, tmp_path / "p-0")
    with pytest.raises(CorruptLogError) as info:
        logstore.Log.open(tmp_path / "p-0", logstore.LogConfig(recovery=recovery))
    assert "unsupported message format" in str(info.value)
    assert str(segment) in str(info.value)
    assert segment.read_bytes() == _data(vector)


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd", "lz4", "snappy"])
def test_kafka_python_reads_what_logstore_writes(codec: str, tmp_path: Path) -> None:
    if not compression.is_available(codec):
        pytest.skip(f"{codec} not installed")
    default_records = pytest.importorskip("kafka.record.default_records")
    messages = [
        logstore.Message(
            value=None if i % 17 == 0 else b"value-%d" % i * (i % 5 + 1),
            key=None if i % 7 == 0 else b"key-%d" % (i % 13),
            headers=(("h", b"%d" % i), ("n", None)) if i % 3 == 0 else (),
            timestamp=1_700_000_000_000 + (i * 37) % 1000,
        )
        for i in range(500)
    ]
    config = logstore.LogConfig(fsync="never", compression=codec, max_message_bytes=4096)
    with logstore.Log.open(tmp_path / "p-0", config) as log:
        log.append_many(messages[:200])
        for m in messages[200:]:
            log.append(m.value, key=m.key, headers=m.headers, timestamp=m.timestamp)
    data = (tmp_path / "p-0" / f"{0:020d}.log").read_bytes()
    seen = []
    position = 0
    while position < len(data):
        size = 12 + int.from_bytes(data[position + 8 : position + 12], "big")
        kbatch = default_records.DefaultRecordBatch(bytearray(data[position : position + size]))
        assert kbatch.validate_crc()
        for record in kbatch:
            seen.append(
                (record.offset, record.timestamp, record.key, record.value, list(record.headers))
            )
        position += size
    assert seen == [
        (i, m.timestamp, m.key, m.value, [tuple(h) for h in m.headers])
        for i, m in enumerate(messages)
    ]
