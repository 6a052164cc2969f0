"""``_varint``: zigzag varints as FORMAT.md gives them, and their limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstore._varint import _zigzag, decode_varint, encode_varint
from logstore.errors import CorruptLogError


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "00"),
        (-1, "01"),
        (1, "02"),
        (63, "7e"),
        (64, "8001"),
        (-1000, "cf0f"),
        (8191, "fe7f"),
        (8192, "808001"),
    ],
)
def test_varint_examples_from_the_format(n: int, encoded: str) -> None:
    assert encode_varint(n).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded), 0) == (n, len(encoded) // 2)


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_varint_round_trip(n: int) -> None:
    data = encode_varint(n)
    assert data == _zigzag(n)
    assert decode_varint(data + b"\xff", 0) == (n, len(data))


def test_varint_longer_than_its_limit_is_corrupt() -> None:
    with pytest.raises(CorruptLogError, match="longer than 5 bytes"):
        decode_varint(b"\xff" * 6 + b"\x01", 0, 5)
    with pytest.raises(CorruptLogError, match="past the end"):
        decode_varint(b"\xff\xff", 0)
