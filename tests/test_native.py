"""Every compiled function against its pure twin, from the one table in ``_native``.

``_native.PAIRS`` names each function of ``logstore._speedups`` and its
pure-Python twin. This walks the table: each pair gets the same inputs, valid
and corrupt, and must give the same result or the same error (class, kind,
position and message). The record decoders also meet a sweep of damage over
a few encoded sections, and random damage from Hypothesis.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstore import Message, _native, batch, recordcodec
from logstore.model import ConsumedRecord, Record

C = _native.speedups


def _pure(pair: _native.Pair) -> Callable[..., Any]:
    module, name = pair.pure.split(":")
    return getattr(importlib.import_module(f"logstore.{module}"), name)  # type: ignore[no-any-return]


def _outcome(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # the point is to compare whatever each one raises
        return (
            type(exc).__name__,
            getattr(exc, "kind", None),
            getattr(exc, "position", None),
            str(exc),
        )


def _section(entries: list[tuple[Any, ...]]) -> bytes:
    return recordcodec._py_encode_section(entries, 1_000, 0, None, None, None, 2_000)[0]


ENTRIES = [
    (b"value-1", b"key-1", [], 1_000),
    (None, b"key-2", [("h", b"v"), ("n", None)], 1_007),
    (b"x" * 300, None, [], 990),
    (b"", b"", [], None),
]
SECTION = _section(ENTRIES)

#: Sections for the damage sweep, as the encoder writes them: null and empty
#: keys, values and header values, a non-ASCII header key, timestamps before
#: and far after the base, and lengths of one, two and three varint bytes.
SWEPT = [
    (SECTION, len(ENTRIES)),
    (
        _section(
            [
                (None, None, [("a", b""), ("\u00e9", b"x" * 70), ("", None)], 5),
                (b"v", b"k" * 150, [], 10**12),
                (None, b"", [("h", None)], None),
            ]
        ),
        3,
    ),
    (
        _section(
            [
                (b"v" * 9_000, b"key", [("h", b"v")], 1_000),
                (b"", None, [], 999),
                (b"w", b"k", [], 1_001),
            ]
        ),
        3,
    ),
]


def _decode_args(
    data: bytes, count: int = 4, *, limit: int = -1, skip_below: int = -1, build: bool = True
) -> tuple[Any, ...]:
    # base offset 100, base ts 1000, CreateTime, `count` records, deltas 0..count - 1
    args = (data, 100, 1_000, None, skip_below, count, count - 1, limit)
    # build false: checked only, the answer the number of records without a key
    return args if build else (*args, False)


def _damaged(section: bytes) -> list[bytes]:
    """The section cut, each byte set to edge values or flipped, dropped, or preceded by 0.

    A section over 1 KiB is damaged in its first 64 and last 96 bytes only: its
    middle is one long value, with no structure to damage.
    """
    out = []
    for i in range(len(section)):
        if len(section) > 1024 and 64 <= i < len(section) - 96:
            continue
        out.append(section[:i])
        for b in (0x00, 0x01, 0x7F, 0x80, 0xFF, section[i] ^ 0x01):
            data = bytearray(section)
            data[i] = b
            out.append(bytes(data))
        out.append(section[:i] + section[i + 1 :])
        out.append(section[:i] + b"\x00" + section[i:])
    return out


def _corrupt_sections() -> list[tuple[Any, ...]]:
    """Every damaged form of every swept section, read whole, from its second record, and
    for its first two records only."""
    return [
        _decode_args(data, count, **kw)
        for section, count in SWEPT
        for data in _damaged(section)
        for kw in ({}, {"skip_below": 1}, {"limit": 2}, {"build": False})
    ]


MESSAGES = [Message(b"v", key=b"k%d" % i) for i in range(50)]
RECORDS = [Record(i, 5, None, b"v", ()) for i in range(20)]


def _descriptor(data: bytes) -> int:
    """An open descriptor of an unlinked file holding ``data`` (open for the whole run)."""
    with tempfile.TemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        return os.dup(handle.fileno())


def _stored_file() -> tuple[int, list[int], int]:
    """A file of five batches (base offsets 10, 13, 16, 19, 22), the third one's
    record damaged, and the bytes after it torn: (fd, batch positions, size)."""
    batches = [
        batch.encode_batch(
            [(b"v%d" % (10 + 3 * b + i), None, [], 1_000 + i) for i in range(3)],
            base_offset=10 + 3 * b,
        )
        for b in range(5)
    ]
    positions = [sum(len(b) for b in batches[:i]) for i in range(6)]
    data = bytearray(b"".join(batches))
    data[positions[2] + 70] ^= 1  # inside the third batch's records: its CRC fails
    return _descriptor(bytes(data) + batches[0][:30]), positions, len(data) + 30  # torn tail


STORED_FD, STORED_AT, STORED_SIZE = _stored_file()


def _many_batches(count: int) -> tuple[int, int]:
    """A file of ``count`` one-record batches (more than ``read_stored`` hops over)."""
    data = b"".join(
        batch.encode_batch([(b"%d" % i, None, [], 1_000)], base_offset=i) for i in range(count)
    )
    return _descriptor(data), len(data)


MANY_FD, MANY_SIZE = _many_batches(100)
_B = STORED_AT[1]  # every batch has this size


def _stored_cases() -> list[tuple[Any, ...]]:
    fd, at, crc = STORED_FD, STORED_AT, crc32c.crc32c
    cases: list[tuple[Any, ...]] = []
    for budget in (0, 1, _B - 1, _B, _B + 1, 2 * _B, 10 * _B):
        for first in (True, False):
            cases.append((fd, 0, 2 * _B, budget, first, 10, 1 << 40, crc))
    cases += [
        (fd, 0, 5 * _B, 10 * _B, True, 10, 1 << 40, None),  # damage unseen without the CRC
        (fd, 0, 5 * _B, 10 * _B, True, 10, 1 << 40, crc),  # the third batch's CRC fails
        (fd, at[3], 2 * _B, 10 * _B, True, 19, 1 << 40, crc),
        (fd, at[3], 2 * _B + 30, 10 * _B, True, 19, 1 << 40, crc),  # the torn tail
        (fd, at[3], 2 * _B + 30, 2 * _B, True, 19, 1 << 40, crc),  # ... past the budget
        (fd, at[3], 3 * _B, 10 * _B, True, 19, 1 << 40, crc),  # past the end of the file
        (fd, 0, 2 * _B, 10 * _B, True, 11, 1 << 40, crc),  # not the base offset expected
        (fd, 0, 2 * _B, 10 * _B, True, 10, 15, crc),  # past the end offset
        (fd, 0, 2 * _B, 10 * _B, True, 10, 16, crc),
        (fd, 5, 2 * _B, 10 * _B, True, 10, 1 << 40, crc),  # not at a batch
        (fd, 0, 0, 10 * _B, True, 10, 1 << 40, crc),
        (fd, -1, 0, 10 * _B, True, 10, 1 << 40, crc),
        (-1, 0, _B, _B, True, 10, 1 << 40, crc),  # a bad descriptor: OSError
        # Past the hops: read to the budget, then cut after the last whole batch.
        (MANY_FD, 0, MANY_SIZE, MANY_SIZE, True, 0, 1 << 40, crc),
        (MANY_FD, 0, MANY_SIZE, MANY_SIZE - 1, True, 0, 1 << 40, crc),
        (MANY_FD, 0, MANY_SIZE, MANY_SIZE * 9 // 10, True, 0, 1 << 40, crc),
        (MANY_FD, 0, MANY_SIZE, MANY_SIZE, True, 0, 90, crc),
        (MANY_FD, 0, MANY_SIZE + 5, 2 * MANY_SIZE, True, 0, 1 << 40, crc),
    ]
    return cases


#: Shared inputs: each is in the domain of both twins. The encoders take
#: entries already validated by the caller (the compiled one also checks
#: types, the pure one trusts them), so they share only valid entries.
CASES: dict[str, list[tuple[Any, ...]]] = {
    "encode_section": [
        (ENTRIES, 1_000, 0, None, None, None, 2_000),
        (ENTRIES, 1_000, 1, 3, None, None, -1),
        (ENTRIES, 1_000, 0, None, 20, None, -1),  # stops after the first record
        (ENTRIES, 1_000, 0, None, None, [0, 2, 5, 9], -1),
        ([Message(b"m", key=b"k", timestamp=3)], 3, 0, None, None, None, -1),
    ],
    "decode_section": [
        _decode_args(SECTION),
        _decode_args(SECTION, limit=2),
        _decode_args(SECTION, skip_below=2),
        _decode_args(SECTION, build=False),  # checked, not built: one record has no key
        _decode_args(SECTION + b"\x00", build=False),
        (SECTION, 100, 1_000, 5_555, -1, 4, 3, -1),  # LogAppendTime: one timestamp for all
        _decode_args(SECTION + b"\x00"),  # bytes left over
        (SECTION, 100, 1_000, None, -1, 5, 4, -1),  # a count the data does not hold
        (SECTION, 100, 1_000, None, -1, 3, 2, -1),
        (SECTION, 100, 1_000, None, -1, 4, 2, -1),  # a delta past the last offset delta
        *_corrupt_sections(),
    ],
    "check_messages": [
        (MESSAGES, True, Message),
        ([b"a", b"b"], False, Message),
        ([b"a", b"b"], True, Message),
        ([Message(b"v")], True, Message),
        ([Message(b"v")], False, Message),
        ([Message(b"v", headers=[("h", b"")])], False, Message),
        ([Message(b"v", timestamp=-5)], False, Message),
        ([Message(b"v", timestamp=1 << 62)], False, Message),
        ([Message(b"v", timestamp=(1 << 62) + 1)], False, Message),
        ([Message(bytearray(b"v"))], False, Message),
        ([(b"v", None, (), None)], False, Message),  # a plain tuple is not a Message
        ([], True, Message),
        ([(b"v", b"k"), (None, b"k"), b"x", MESSAGES[0]], False, Message),  # (value, key) pairs
        ([(b"v", b"k"), (None, b"")], True, Message),
        ([(b"v", None)], False, Message),
        ([(b"v", None)], True, Message),  # a key is required
        ([(bytearray(b"v"), b"k")], False, Message),
        ([(b"v", memoryview(b"k"))], False, Message),
        ([(b"v", b"k", None)], False, Message),
        ([(b"v",)], False, Message),
        ([Message(b"v", key=b"k")[:2]], False, Message),  # a slice: a plain pair
        ([MESSAGES[0]._replace(headers=()), [b"v", b"k"]], False, Message),  # a list is not one
    ],
    "route": [
        (MESSAGES, 7, 0),
        ([b"a", b"b", b"c", MESSAGES[0], Message(b"v")], 3, 5),
        ([b"a", Message(b"v", key=bytearray(b"k"))], 3, 0),  # another kind: None
        ([(b"v", b"k1"), (None, b"k2"), (b"v", None), MESSAGES[1]], 5, 2),  # pairs
        ([(b"v", b"k"), (7, b"k")], 5, 0),  # a pair of another value: None
        ([(b"v", bytearray(b"k"))], 5, 0),
        ([(b"v", b"k", b"x")], 5, 0),
        ([b"a", 42], 3, 0),
        ([], 4, 9),
        ([b"a"], 0, 0),
    ],
    "number": [
        ([0, 1, 0, 2, 2, 2], [10, 0, 7]),
        ([], [1]),
        ([3], [0, 0]),  # outside the partitions
        ([-1], [0]),
        ([0], ["1"]),
    ],
    "read_stored": _stored_cases(),
    "wrap": [
        (RECORDS, "topic", 3, ConsumedRecord),
        ([], "t", 0, ConsumedRecord),
        (RECORDS, "t", 0, dict),  # not a tuple subclass
    ],
}


#: Twins with state, driven through the same steps by tests/test_accumulator.py.
STATEFUL = {"accumulator"}
STATELESS = [p for p in _native.PAIRS if p.compiled not in STATEFUL]


def test_the_table_lists_every_compiled_function_and_every_twin_exists() -> None:
    assert {p.compiled for p in _native.PAIRS} == set(CASES) | STATEFUL
    for pair in _native.PAIRS:
        assert callable(_pure(pair)), pair
    if C is not None:
        exported = {
            n
            for n in dir(C)
            if not n.startswith("_")
            and callable(getattr(C, n))
            and not isinstance(getattr(C, n), type)
        }
        assert exported - {"configure"} == set(CASES) | STATEFUL
        types = {n for n in dir(C) if isinstance(getattr(C, n), type)}
        assert types == {p.compiled for p in _native.TYPES}


@pytest.mark.skipif(C is None, reason="the compiled codec is not built (or LOGSTORE_PURE=1)")
@pytest.mark.parametrize("pair", STATELESS, ids=lambda p: p.compiled)
def test_compiled_and_pure_twins_agree_on_results_and_errors(pair: _native.Pair) -> None:
    compiled, pure = getattr(C, pair.compiled), _pure(pair)
    for args in CASES[pair.compiled]:
        assert _outcome(compiled, args) == _outcome(pure, args), args


blobs = st.one_of(st.none(), st.binary(max_size=140))
entries = st.lists(
    st.tuples(
        blobs,
        blobs,
        st.lists(st.tuples(st.text(max_size=4), blobs), max_size=3),
        st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 62)),
    ),
    min_size=1,
    max_size=6,
)
#: ("set", position, byte), ("drop", position, _) or ("insert", position, byte).
edits = st.lists(
    st.tuples(
        st.sampled_from(["set", "drop", "insert"]), st.integers(min_value=0), st.integers(0, 255)
    ),
    min_size=1,
    max_size=4,
)


@pytest.mark.skipif(C is None, reason="the compiled codec is not built (or LOGSTORE_PURE=1)")
@given(
    items=entries,
    damage=edits,
    cut=st.one_of(st.none(), st.integers(min_value=0)),
    skip_below=st.integers(-1, 3),
    limit=st.sampled_from([-1, 1, 2]),
)
def test_the_record_decoders_agree_on_randomly_damaged_sections(
    items: list[tuple[Any, ...]],
    damage: list[tuple[str, int, int]],
    cut: int | None,
    skip_below: int,
    limit: int,
) -> None:
    (pair,) = [p for p in _native.PAIRS if p.compiled == "decode_section"]
    data = bytearray(_section(items))
    for op, where, byte in damage:
        i = where % (len(data) + 1)
        if op == "insert":
            data[i:i] = bytes([byte])
        elif i < len(data):
            if op == "set":
                data[i] = byte
            else:
                del data[i]
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    args = _decode_args(bytes(data), len(items), limit=limit, skip_below=skip_below)
    assert _outcome(C.decode_section, args) == _outcome(_pure(pair), args)
    check = _decode_args(bytes(data), len(items), build=False)
    assert _outcome(C.decode_section, check) == _outcome(_pure(pair), check)


def test_checking_a_section_counts_its_keyless_records_and_builds_none() -> None:
    assert recordcodec._py_decode_section_flat(*_decode_args(SECTION, build=False)) == 1
    if C is not None:
        assert C.decode_section(*_decode_args(SECTION, build=False)) == 1
        assert C.decode_section(*_decode_args(SWEPT[1][0], 3, build=False)) == 1  # key None


def test_the_cases_cover_success_and_failure() -> None:
    """The shared inputs would catch a twin that only ever fails or never does."""
    for pair in STATELESS:
        kinds = {_outcome(_pure(pair), args)[0] for args in CASES[pair.compiled]}
        assert "ok" in kinds, pair
        # check_messages answers False instead of raising; the encoders get valid entries.
        if pair.compiled not in ("check_messages", "encode_section"):
            assert kinds - {"ok"}, pair


@pytest.mark.skipif(C is None, reason="the compiled codec is not built (or LOGSTORE_PURE=1)")
def test_the_compiled_encoder_takes_bare_values_and_pairs_as_the_pure_one_takes_entries() -> None:
    """Beyond the shared domain: what ``validator.prepare`` converts for the pure encoder."""
    items: list[Any] = [b"a", (b"b", b"kb"), (None, b"kc"), (b"d", None), ENTRIES[1]]
    entries = [
        (m, None, (), None) if type(m) is bytes else (*m, (), None) if len(m) == 2 else m
        for m in items
    ]
    for args in ((1_000, 0, None, None, None, 1_500), (1_000, 1, 4, 30, None, 1_000)):
        assert C.encode_section(items, *args) == recordcodec._py_encode_section(entries, *args)
