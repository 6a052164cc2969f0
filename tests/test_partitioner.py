"""Kafka's default partitioner, against vectors from an independent Kafka client."""

from __future__ import annotations

import json

import pytest

from logstore.partitioner import murmur2, partition_for

from .conftest import DATA

VECTORS = json.loads((DATA / "murmur2.json").read_text())


def test_every_vector_and_partition_count() -> None:
    assert len(VECTORS["vectors"]) >= 200
    for v in VECTORS["vectors"]:
        key = bytes.fromhex(v["key_hex"])
        assert murmur2(key) == v["murmur2"], v["key_hex"]
        assert murmur2(key) & 0xFFFFFFFF == v["murmur2_unsigned"]
        assert murmur2(key) & 0x7FFFFFFF == v["positive"]
        for count, partition in v["partition"].items():
            assert partition_for(key, int(count)) == partition, (v["key_hex"], count)


@pytest.mark.parametrize(
    ("key", "signed", "p3", "p12", "p64"),
    [
        (b"21", -973932308, 0, 0, 44),
        (b"foobar", -790332482, 0, 6, 62),
        (b"abc", 479470107, 0, 3, 27),
        (b"", 275646681, 0, 9, 25),
        (b"web-017.example.com", -2138702988, 2, 8, 52),
    ],
)
def test_format_table(key: bytes, signed: int, p3: int, p12: int, p64: int) -> None:
    assert murmur2(key) == signed
    assert [partition_for(key, n) for n in (3, 12, 64)] == [p3, p12, p64]


def test_the_sign_bit_is_cleared_not_negated() -> None:
    # abs() would send this hostname to partition 0 of 12 instead of 8
    assert abs(murmur2(b"web-017.example.com")) % 12 == 0
    assert partition_for(b"web-017.example.com", 12) == 8
