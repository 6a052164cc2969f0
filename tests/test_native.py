"""Every compiled function against its pure twin, from the one table in ``_native``.

``_native.PAIRS`` names each function of ``logstore._speedups`` and its
pure-Python twin. This walks the table: each pair gets the same inputs, valid
and corrupt, and must give the same result or the same error (class, kind,
position and message).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest

from logstore import Message, _native, batch
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


ENTRIES = [
    (b"value-1", b"key-1", [], 1_000),
    (None, b"key-2", [("h", b"v"), ("n", None)], 1_007),
    (b"x" * 300, None, [], 990),
    (b"", b"", [], None),
]
SECTION, _, _ = batch._py_encode_section(ENTRIES, 1_000, 0, None, None, None, 2_000)


def _decode_args(data: bytes, *, limit: int = -1, skip_below: int = -1) -> tuple[Any, ...]:
    # base offset 100, base ts 1000, CreateTime, 4 records, deltas 0..3
    return (data, 100, 1_000, None, skip_below, 4, 3, limit)


def _corrupt_sections() -> list[tuple[Any, ...]]:
    """The section cut at every byte, and every byte set to 0xFF and to 0x00."""
    out = [_decode_args(SECTION[:n]) for n in range(len(SECTION))]
    for i in range(len(SECTION)):
        for b in (0xFF, 0x00, 0x7F):
            data = bytearray(SECTION)
            data[i] = b
            out.append(_decode_args(bytes(data)))
    return out


MESSAGES = [Message(b"v", key=b"k%d" % i) for i in range(50)]
RECORDS = [Record(i, 5, None, b"v", ()) for i in range(20)]

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
    ],
    "route": [
        (MESSAGES, 7, 0),
        ([b"a", b"b", b"c", MESSAGES[0], Message(b"v")], 3, 5),
        ([b"a", Message(b"v", key=bytearray(b"k"))], 3, 0),  # another kind: None
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
    "wrap": [
        (RECORDS, "topic", 3, ConsumedRecord),
        ([], "t", 0, ConsumedRecord),
        (RECORDS, "t", 0, dict),  # not a tuple subclass
    ],
}


def test_the_table_lists_every_compiled_function_and_every_twin_exists() -> None:
    assert {p.compiled for p in _native.PAIRS} == set(CASES)
    for pair in _native.PAIRS:
        assert callable(_pure(pair)), pair
    if C is not None:
        exported = {n for n in dir(C) if not n.startswith("_") and callable(getattr(C, n))}
        assert exported - {"configure"} == set(CASES)


#: Known divergences of the two record decoders on damaged sections: the same
#: error class and kind, but the compiled one names the field it was reading
#: and the pure one the first bound it crossed (sometimes a record earlier).
#: ``(compiled reason, pure reason)``; every entry must still occur.
KNOWN_REASONS = {
    ("varint runs past the end of the data", "record runs past the end of the records section"),
    ("header value of 52 bytes overruns its record", "header key length 60 is invalid"),
    (
        "header value of 55 bytes overruns its record",
        "record fields end at byte 92, its length says 38",
    ),
    (
        "value of 300 bytes overruns its record",
        "record fields end at byte 347, its length says 91",
    ),
    ("header value of 60 bytes overruns its record", "header key length 0 is invalid"),
    (
        "value of 991212 bytes overruns its record",
        "record runs past the end of the records section",
    ),
    ("value of 8172 bytes overruns its record", "record runs past the end of the records section"),
}


def _reason(outcome: tuple[Any, ...]) -> str:
    return str(outcome[3]).split(": ", 1)[-1]


@pytest.mark.skipif(C is None, reason="the compiled codec is not built (or LOGSTORE_PURE=1)")
@pytest.mark.parametrize("pair", _native.PAIRS, ids=lambda p: p.compiled)
def test_compiled_and_pure_twins_agree_on_results_and_errors(pair: _native.Pair) -> None:
    compiled, pure = getattr(C, pair.compiled), _pure(pair)
    seen: set[tuple[str, str]] = set()
    for args in CASES[pair.compiled]:
        got, want = _outcome(compiled, args), _outcome(pure, args)
        if got != want and got[0] != "ok" and (_reason(got), _reason(want)) in KNOWN_REASONS:
            assert got[:2] == want[:2], args  # class and kind agree even then
            seen.add((_reason(got), _reason(want)))
            continue
        assert got == want, args
    if pair.compiled == "decode_section":
        assert seen == KNOWN_REASONS  # a fixed divergence leaves the list


def test_the_cases_cover_success_and_failure() -> None:
    """The shared inputs would catch a twin that only ever fails or never does."""
    for pair in _native.PAIRS:
        kinds = {_outcome(_pure(pair), args)[0] for args in CASES[pair.compiled]}
        assert "ok" in kinds, pair
        # check_messages answers False instead of raising; the encoders get valid entries.
        if pair.compiled not in ("check_messages", "encode_section"):
            assert kinds - {"ok"}, pair
