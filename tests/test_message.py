"""The compiled ``Message`` and ``Record`` against their ``NamedTuple`` twins.

``_native.TYPES`` pairs each type of ``logstore._speedups`` with its pure twin in
``model``. Both kinds must be indistinguishable to a user's code: the same
construction (and the same ``TypeError`` text for a wrong call), fields,
defaults, repr, equality and hashing with tuples, immutability, pickling,
copying, the NamedTuple helpers and pattern matching. Each test runs on both
kinds (the compiled one only when it is loaded) and asserts exact outcomes.
"""

from __future__ import annotations

import copy
import copyreg
import gc
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest

import logstore
from logstore import _native, model

C = _native.speedups
COMPILED = pytest.mark.skipif(C is None, reason="the compiled codec is not loaded")

#: (compiled name, pure twin) for each kind; the compiled one skipped when not loaded.
MESSAGE_KINDS = [
    pytest.param("compiled", id="compiled", marks=COMPILED),
    pytest.param("pure", id="pure"),
]


def message_type(kind: str) -> Any:
    return C.Message if kind == "compiled" else model.PyMessage


def record_type(kind: str) -> Any:
    return C.Record if kind == "compiled" else model.PyRecord


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """What a call gave: ``("ok", tuple(result))``, or the error's class and text."""
    try:
        result = call()
    except Exception as exc:  # the point is to compare whatever each one raises
        return (type(exc).__name__, str(exc))
    return ("ok", tuple(result), type(result).__name__)


# ---------------------------------------------------------------- the public names


def test_the_public_types_are_the_compiled_ones_when_loaded() -> None:
    if C is None:
        assert logstore.Message is model.PyMessage
        assert logstore.Record is model.PyRecord
    else:
        assert logstore.Message is C.Message
        assert logstore.Record is C.Record
    assert {p.compiled for p in _native.TYPES} == {"Message", "Record"}
    assert {p.pure for p in _native.TYPES} == {"model:PyMessage", "model:PyRecord"}


@COMPILED
def test_reads_give_compiled_records_and_appends_take_compiled_messages(open_log: Any) -> None:
    log = open_log()
    log.append_many([C.Message(b"v", key=b"k", timestamp=7)])
    (record,) = log.read(0)
    assert type(record) is C.Record
    assert record == (0, 7, b"k", b"v", ())
    assert [type(r) for r in log.scan()] == [C.Record]


# ---------------------------------------------------------------- construction

CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((b"v",), {}),
    ((b"v", b"k"), {}),
    ((b"v", b"k", [("h", b"x")], 5), {}),
    ((b"v",), {"key": b"k"}),
    ((), {"value": b"v", "timestamp": 3}),
    ((None,), {"headers": (), "key": None}),
    ((b"v", b"k", (), None, 9), {}),  # too many positional
    ((b"v", b"k", (), None, 9, 10), {}),
    ((), {}),  # missing value
    ((), {"key": b"k"}),
    ((b"v",), {"value": b"w"}),  # twice
    ((b"v",), {"nope": 1}),  # unknown keyword
    ((b"v",), {"nope": 1, "value": 2}),  # the first problem in keyword order wins
    ((b"v",), {"value": 2, "nope": 1}),
    ((b"v", b"k", (), None, 9), {"value": 1}),  # multiple values before too many
    ((b"v", b"k", (), None, 9), {"nope": 1}),
]


@pytest.mark.skipif(C is None, reason="the compiled codec is not loaded")
@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_message_construction_and_its_errors_match_the_named_tuple(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    compiled = outcome(lambda: C.Message(*args, **kwargs))
    pure = outcome(lambda: model.PyMessage(*args, **kwargs))
    assert compiled == pure


def test_message_construction_outcomes() -> None:
    """The pure twin's answers (what the compiled one is held to), spelled out."""
    assert outcome(lambda: model.PyMessage(b"v")) == ("ok", (b"v", None, (), None), "Message")
    assert outcome(lambda: model.PyMessage()) == (
        "TypeError",
        "Message.__new__() missing 1 required positional argument: 'value'",
    )
    assert outcome(lambda: model.PyMessage(1, 2, 3, 4, 5)) == (
        "TypeError",
        "Message.__new__() takes from 2 to 5 positional arguments but 6 were given",
    )
    assert outcome(lambda: model.PyMessage(1, foo=2)) == (
        "TypeError",
        "Message.__new__() got an unexpected keyword argument 'foo'",
    )
    assert outcome(lambda: model.PyMessage(1, value=2)) == (
        "TypeError",
        "Message.__new__() got multiple values for argument 'value'",
    )


RECORD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1, 2, b"k", b"v", ()), {}),
    ((1,), {"timestamp": 2, "key": None, "value": None, "headers": ()}),
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((1, 2, 3, 4), {}),
    ((1, 2, 3, 4, 5, 6), {}),
    ((1, 2, 3, 4), {"offset": 0}),
    ((1, 2, 3, 4), {"headers": (), "x": 1}),
]


@pytest.mark.skipif(C is None, reason="the compiled codec is not loaded")
@pytest.mark.parametrize(("args", "kwargs"), RECORD_CALLS)
def test_record_construction_and_its_errors_match_the_named_tuple(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    assert outcome(lambda: C.Record(*args, **kwargs)) == outcome(
        lambda: model.PyRecord(*args, **kwargs)
    )


def test_record_construction_errors_name_every_missing_field() -> None:
    assert outcome(lambda: model.PyRecord(1, 2)) == (
        "TypeError",
        "Record.__new__() missing 3 required positional arguments: 'key', 'value', and 'headers'",
    )
    assert outcome(lambda: model.PyRecord(1, 2, 3)) == (
        "TypeError",
        "Record.__new__() missing 2 required positional arguments: 'value' and 'headers'",
    )


def _parameters(cls: Any) -> list[tuple[str, Any]]:
    """Names and defaults of a class's signature (the NamedTuple's also has annotations)."""
    return [(p.name, p.default) for p in inspect.signature(cls).parameters.values()]


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_dunder_new_and_signature(kind: str) -> None:
    M = message_type(kind)
    assert M.__new__(M, b"v", key=b"k") == (b"v", b"k", (), None)
    assert type(M.__new__(M, b"v")) is M
    assert _parameters(M) == [
        ("value", inspect.Parameter.empty),
        ("key", None),
        ("headers", ()),
        ("timestamp", None),
    ]
    assert M.__doc__ == 'A record to append. ``timestamp=None`` means "now" (the log\'s clock).'
    assert M.__name__ == "Message"
    assert M.__qualname__ == "Message"
    assert M.__module__ == "logstore.model"
    R = record_type(kind)
    assert [name for name, _ in _parameters(R)] == list(R._fields)
    assert R.__doc__ == "A record read back from a log."


# ---------------------------------------------------------------- a tuple, immutable


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_a_message_is_a_tuple(kind: str) -> None:
    M = message_type(kind)
    m = M(b"v", key=b"k", timestamp=5)
    assert isinstance(m, tuple)
    assert M.__mro__[1:] == (tuple, object)
    value, key, headers, ts = m
    assert (value, key, headers, ts) == (b"v", b"k", (), 5)
    assert (m[0], m[1], m[2], m[3], m[-1]) == (b"v", b"k", (), 5, 5)
    assert m[1:3] == (b"k", ())
    assert type(m[1:3]) is tuple
    assert len(m) == 4
    assert m == (b"v", b"k", (), 5)
    assert (b"v", b"k", (), 5) == m  # noqa: SIM300 (the tuple on the left)
    assert m != (b"v", b"k", (), 6)
    assert hash(m) == hash((b"v", b"k", (), 5))
    assert {m: 1}[(b"v", b"k", (), 5)] == 1
    assert m < (b"w",)
    assert m.count(b"v") == 1
    assert m.index(5) == 3
    assert list(m) == [b"v", b"k", (), 5]
    assert m + (1,) == (b"v", b"k", (), 5, 1)  # noqa: RUF005 (tuple concatenation)
    assert (m.value, m.key, m.headers, m.timestamp) == (b"v", b"k", (), 5)
    assert str(m) == repr(m)


@pytest.mark.skipif(C is None, reason="the compiled codec is not loaded")
def test_compiled_and_pure_messages_are_equal_and_hash_alike() -> None:
    a, b = C.Message(b"v", key=b"k"), model.PyMessage(b"v", key=b"k")
    assert a == b
    assert hash(a) == hash(b)
    r, s = C.Record(1, 2, b"k", b"v", ()), model.PyRecord(1, 2, b"k", b"v", ())
    assert r == s
    assert hash(r) == hash(s)


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_messages_and_records_are_immutable(kind: str) -> None:
    m = message_type(kind)(b"v")
    r = record_type(kind)(1, 2, None, b"v", ())
    for obj, field in ((m, "value"), (m, "timestamp"), (r, "offset"), (r, "headers")):
        with pytest.raises(AttributeError):
            setattr(obj, field, 1)
        with pytest.raises(AttributeError):
            delattr(obj, field)
    # The text names the class as its type does: 'Message' for the NamedTuple,
    # 'logstore.model.Message' for the compiled (static) type.
    with pytest.raises(AttributeError, match="Message' object has no attribute 'extra'"):
        m.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="Record' object has no attribute 'extra'"):
        r.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        m[0] = b"w"  # type: ignore[index]
    assert not hasattr(m, "__dict__")
    assert m == (b"v", None, (), None)


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_repr(kind: str) -> None:
    M, R = message_type(kind), record_type(kind)
    assert repr(M(b"x")) == "Message(value=b'x', key=None, headers=(), timestamp=None)"
    assert (
        repr(M(None, key=b"k", headers=[("h", None)], timestamp=5))
        == "Message(value=None, key=b'k', headers=[('h', None)], timestamp=5)"
    )
    assert (
        repr(R(3, 4, b"k", b"v", (("h", b"x"),)))
        == "Record(offset=3, timestamp=4, key=b'k', value=b'v', headers=(('h', b'x'),))"
    )


# ---------------------------------------------------------------- NamedTuple helpers


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_the_named_tuple_helpers(kind: str) -> None:
    M, R = message_type(kind), record_type(kind)
    assert M._fields == ("value", "key", "headers", "timestamp")
    assert M.__match_args__ == ("value", "key", "headers", "timestamp")
    assert M._field_defaults == {"key": None, "headers": (), "timestamp": None}
    assert R._fields == ("offset", "timestamp", "key", "value", "headers")
    assert R.__match_args__ == R._fields
    assert R._field_defaults == {}
    m = M(b"v", key=b"k")
    replaced = m._replace(key=None, timestamp=9)
    assert replaced == (b"v", None, (), 9)
    assert type(replaced) is M
    assert m._replace() == m
    assert m._asdict() == {"value": b"v", "key": b"k", "headers": (), "timestamp": None}
    assert list(m._asdict()) == ["value", "key", "headers", "timestamp"]
    made = M._make(iter([b"a", b"b", (), 1]))
    assert made == (b"a", b"b", (), 1)
    assert type(made) is M
    assert outcome(lambda: M._make([1, 2])) == ("TypeError", "Expected 4 arguments, got 2")
    assert outcome(lambda: m._replace(foo=1, bar=2)) == (
        "ValueError",
        "Got unexpected field names: ['foo', 'bar']",
    )
    assert outcome(lambda: m._replace(foo=1, key=b"x")) == (
        "ValueError",
        "Got unexpected field names: ['foo']",
    )
    assert R._make([1, 2, None, b"v", ()])._asdict() == {
        "offset": 1,
        "timestamp": 2,
        "key": None,
        "value": b"v",
        "headers": (),
    }
    assert m.__getnewargs__() == (b"v", b"k", (), None)
    assert type(m.__getnewargs__()) is tuple


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_class_attributes_name_the_fields(kind: str) -> None:
    M, R = message_type(kind), record_type(kind)
    m = M(b"v", key=b"k", headers=(), timestamp=1)
    for i, name in enumerate(M._fields):
        assert getattr(m, name) == m[i]
        assert getattr(M, name).__get__(m, M) == m[i]
        assert getattr(M, name).__doc__ == f"Alias for field number {i}"
    r = R(1, 2, b"k", b"v", ())
    for i, name in enumerate(R._fields):
        assert getattr(r, name) == r[i]


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_pattern_matching(kind: str) -> None:
    M, R = message_type(kind), record_type(kind)
    match M(b"v", key=b"k"):
        case M(value, key, headers, ts):
            assert (value, key, headers, ts) == (b"v", b"k", (), None)
        case _:
            pytest.fail("no match")
    match M(b"v", key=b"k"):
        case M(key=b"x"):
            pytest.fail("matched the wrong key")
        case M(value=v, key=b"k"):
            assert v == b"v"
        case _:
            pytest.fail("no match")
    match R(1, 2, b"k", b"v", ()):
        case R(offset, _, key):
            assert (offset, key) == (1, b"k")
        case _:
            pytest.fail("no match")
    match M(b"v"):
        case (value, None, (), None):  # a sequence pattern
            assert value == b"v"
        case _:
            pytest.fail("no match")


# ---------------------------------------------------------------- pickle and copy


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trips_with_every_protocol(protocol: int) -> None:
    m = logstore.Message(b"v", key=b"k", headers=[("h", b"x")], timestamp=3)
    r = logstore.Record(1, 2, b"k", None, (("h", None),))
    loaded_m, loaded_r = pickle.loads(pickle.dumps((m, r), protocol))
    assert (loaded_m, loaded_r) == (m, r)
    assert type(loaded_m) is logstore.Message
    assert type(loaded_r) is logstore.Record
    assert loaded_m.headers == [("h", b"x")]


@pytest.mark.skipif(C is None, reason="the compiled codec is not loaded")
def test_a_named_tuple_pickle_loads_as_the_compiled_type_and_back() -> None:
    """Protocol 2 and above (the default): the NamedTuple's ``__newobj__`` form calls
    ``cls.__new__(cls, *fields)``; the compiled form calls the class. Each loads as the
    other."""
    fields = (b"v", b"k", (), 4)
    loaded = copyreg.__newobj__(C.Message, *fields)  # type: ignore[attr-defined]
    assert type(loaded) is C.Message
    assert loaded == fields
    func, args = C.Message(*fields).__reduce__()
    assert func is C.Message
    assert model.PyMessage(*args) == fields
    record = copyreg.__newobj__(C.Record, 1, 2, None, b"v", ())  # type: ignore[attr-defined]
    assert type(record) is C.Record


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_copy_and_deepcopy(kind: str) -> None:
    M = message_type(kind)
    headers = [("h", b"x")]
    m = M(b"v", key=b"k", headers=headers)
    shallow, deep = copy.copy(m), copy.deepcopy(m)
    assert shallow == m
    assert deep == m
    assert type(shallow) is M
    assert type(deep) is M
    assert shallow.headers is headers
    assert deep.headers is not headers
    assert deep.headers == headers
    r = record_type(kind)(1, 2, b"k", b"v", ())
    assert copy.deepcopy(r) == r
    assert type(copy.copy(r)) is record_type(kind)


# ---------------------------------------------------------------- subclasses and the collector


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_a_subclass_keeps_its_class(kind: str) -> None:
    M = message_type(kind)

    class Tagged(M):  # type: ignore[misc, valid-type]
        def tag(self) -> str:
            return "tagged:" + self.value.decode()

    t = Tagged(b"v", key=b"k")
    assert t.tag() == "tagged:v"
    assert repr(t) == "Tagged(value=b'v', key=b'k', headers=(), timestamp=None)"
    assert type(t._replace(key=None)) is Tagged
    assert type(Tagged._make([b"a", None, (), None])) is Tagged
    assert outcome(lambda: Tagged()) == (
        "TypeError",
        "Message.__new__() missing 1 required positional argument: 'value'",
    )
    assert isinstance(t, M)
    assert t == (b"v", b"k", (), None)


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_a_cycle_through_headers_is_collected(kind: str) -> None:
    M = message_type(kind)
    collected: list[bool] = []

    class Canary:
        def __del__(self) -> None:
            collected.append(True)

    headers: list[Any] = [Canary()]
    m = M(b"v", headers=headers)
    headers.append(m)  # headers -> m -> headers
    del headers, m
    gc.collect()
    assert collected == [True]


@pytest.mark.skipif(C is None, reason="the compiled codec is not loaded")
def test_compiled_messages_of_bytes_are_left_to_reference_counting() -> None:
    """Like CPython's own tuples of atomic values: nothing for the cycle collector."""
    assert not gc.is_tracked(C.Message(b"v", key=b"k", timestamp=1))
    assert not gc.is_tracked(C.Message(None))
    assert gc.is_tracked(C.Message(b"v", headers=[]))
    assert gc.is_tracked(C.Message(b"v", headers=(("h", bytearray()),)))
    assert gc.is_tracked(C.Message(b"v", key={}))  # a dict can gain a cycle later
    assert not gc.is_tracked(C.Record(1, 2, b"k", b"v", ()))


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_a_long_chain_and_many_at_once_are_freed(kind: str) -> None:
    """Freeing recurses through headers (bounded by CPython's trashcan), and more
    instances than the compiled free list keeps are freed at once."""
    M = message_type(kind)
    m = M(b"0")
    for i in range(100_000):
        m = M(b"%d" % i, headers=(("h", m),))  # type: ignore[list-item]
    del m
    many = [M(b"v", key=b"%d" % i) for i in range(10_000)]
    assert many[-1] == (b"v", b"9999", (), None)
    del many
    again = [M(b"w", key=b"%d" % i, timestamp=i) for i in range(5_000)]
    assert [m.timestamp for m in again] == list(range(5_000))
    assert again[17] == (b"w", b"17", (), 17)
