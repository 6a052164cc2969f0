"""A Fetch response in pieces is byte for byte kio's whole encoding, records not copied.

``codec.encode_response`` hands a Fetch back as a list of pieces in which
each records field of ``SPLICE_BYTES`` or more is the very ``bytes`` object
the handler gave (sent as it is). Checked against kio's own encoding of the
same response into one buffer, over every served version (4..12), with no
topic, empty and null records, records below and above the splice size,
several topics and partitions, errors and aborted transactions.
"""

from __future__ import annotations

import io
import itertools
import struct
from typing import Any

import pytest

pytest.importorskip("kio")

from kio.serial import entity_reader, entity_writer

from logstore.server import codec

VERSIONS = range(4, 13)
BIG = bytes(range(256)) * 40  # 10,240 bytes: spliced
BIG2 = b"\x07" * codec.SPLICE_BYTES  # exactly the splice size: spliced
SMALL = b"\x01" * (codec.SPLICE_BYTES - 1)  # one byte short: copied into a piece


def _partition(index: int, records: bytes | None, **extra: Any) -> dict[str, Any]:
    return {
        "partition_index": index,
        "high_watermark": 100 + index,
        "last_stable_offset": 100 + index,
        "log_start_offset": index,
        "records": records,
        "aborted_transactions": None,
        "preferred_read_replica": -1,
        **extra,
    }


CASES: dict[str, list[dict[str, Any]]] = {
    "no topics": [],
    "empty records": [{"topic": "t", "partitions": [_partition(0, b"")]}],
    "null records": [{"topic": "t", "partitions": [_partition(0, None)]}],
    "one big": [{"topic": "t", "partitions": [_partition(0, BIG)]}],
    "small only": [{"topic": "t", "partitions": [_partition(0, SMALL), _partition(1, b"x")]}],
    "many": [
        {
            "topic": "alpha",
            "partitions": [
                _partition(0, BIG),
                _partition(1, b""),
                _partition(2, BIG2),
                _partition(3, SMALL),
                _partition(4, None, error_code=codec.ErrorCode.offset_out_of_range),
            ],
        },
        {"topic": "beta", "partitions": []},
        {
            "topic": "gamma-ünï",
            "partitions": [
                _partition(
                    7,
                    BIG,
                    aborted_transactions=[{"producer_id": 9, "first_offset": 3}],
                ),
                _partition(8, BIG2 + BIG),
            ],
        },
    ],
}


def _kio_whole(version: int, correlation_id: int, body: dict[str, Any]) -> bytes:
    """kio's encoding of the same response into one buffer: the reference."""
    cls = codec.response_class(codec.FETCH_KEY, version)
    assert cls is not None
    out = io.BytesIO()
    out.write(struct.pack(">i", correlation_id))
    if cls.__flexible__:
        out.write(b"\0")
    entity_writer(cls)(out, codec.build(cls, body))
    payload = out.getvalue()
    return struct.pack(">i", len(payload)) + payload


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_fetch_pieces_are_kio_encoding_byte_for_byte(version: int, case: str) -> None:
    body = {"error_code": 0, "session_id": 0, "throttle_time": 0, "responses": CASES[case]}
    pieces = codec.encode_response(codec.FETCH_KEY, version, 0x1234ABCD, body)
    assert isinstance(pieces, list)
    assert all(type(p) is bytes for p in pieces)
    frame = b"".join(pieces)
    assert frame == _kio_whole(version, 0x1234ABCD, body)
    assert struct.unpack_from(">i", frame)[0] == len(frame) - 4

    given = [p["records"] for t in CASES[case] for p in t["partitions"]]
    big = [r for r in given if r is not None and len(r) >= codec.SPLICE_BYTES]
    # Every records value of the splice size or more is a piece, the very same object, in
    # order; the small writes between are gathered: never two such pieces side by side.
    kept = [any(p is r for r in big) for p in pieces]
    assert [p for p, k in zip(pieces, kept) if k] == big
    assert not any(not a and not b for a, b in itertools.pairwise(kept))
    assert not kept[0]  # the header and its size come first

    # And what a client decodes: the records as given, partition by partition.
    cls = codec.response_class(codec.FETCH_KEY, version)
    assert cls is not None
    header = 4 + 4 + (1 if cls.__flexible__ else 0)
    decoded, size = entity_reader(cls)(frame, header)
    assert header + size == len(frame)
    got = [p.records for t in decoded.responses for p in t.partitions]
    assert got == given


def test_other_responses_stay_one_buffer() -> None:
    """Only a Fetch is in pieces: every other API's answer is one ``bytes``, as kio encodes it."""
    body = {"error_code": 0, "api_keys": [{"api_key": 1, "min_version": 4, "max_version": 12}]}
    frame = codec.encode_response(codec.API_VERSIONS_KEY, 3, 5, body)
    assert isinstance(frame, bytes)
    cls = codec.response_class(codec.API_VERSIONS_KEY, 3)
    assert cls is not None
    out = io.BytesIO()
    out.write(struct.pack(">i", 5))
    entity_writer(cls)(out, codec.build(cls, body))
    assert frame == struct.pack(">i", len(out.getvalue())) + out.getvalue()
