"""The producer's buffer: the compiled ``Accumulator`` and its pure twin, step by step.

Both are driven through the same steps; every answer (a handle as its batch
and index, ``None``, a sealed batch's records, the slow path's arguments, an
error) must be the same. The fast path is taken exactly where the twin takes it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from logstore import Message, SendHandle, _native, accumulator
from logstore.accumulator import _Batch, _PyAccumulator

C = _native.speedups


def _drive(make: Any) -> list[Any]:
    lock = threading.Lock()
    batches = [_Batch(None, lock), _Batch(1, lock)]
    names = {id(b): f"b{i}" for i, b in enumerate(batches)}
    slow_calls: list[tuple[Any, ...]] = []

    def slow(*args: Any) -> Any:
        slow_calls.append(args)
        return "slow"

    acc = make(batches, 3, 300, 500, False, slow)
    out: list[Any] = []

    def seen(x: Any) -> Any:
        if isinstance(x, SendHandle):
            return ("handle", names.get(id(x[0]), "?"), x[1])
        if isinstance(x, tuple) and len(x) == 3 and isinstance(x[0], _Batch):
            return ("sealed", names.get(id(x[0]), "?"), list(x[1]), x[2])
        return x

    def step(name: str, *args: Any, **kwargs: Any) -> None:
        try:
            out.append((name, seen(getattr(acc, name)(*args, **kwargs))))
        except Exception as exc:  # the point is to compare whatever each raises
            out.append((name, type(exc).__name__))
        out.append(("state", acc.buffered, acc.count(0), acc.count(1), acc.closed))

    step("send", b"first")  # a batch's first record: slow
    step("push", 0, b"first", 15)
    step("send", b"second", key=b"k")  # fast: a Message
    step("send", b"third")  # would fill the batch (3): slow
    step("push", 0, b"third", 15)
    step("push", 0, b"fourth", 16)  # full by count
    step("seal", 0, batches[0])
    step("seal", 0, _Batch(None, lock))  # empty: None
    step("push", 0, b"x" * 290, 300)  # a first record may be as large as the budget
    step("send", b"y")  # over the budget: slow
    step("push", 0, b"y", 11)  # None: over the budget
    step("send_to", 1, b"v", None, (), None)  # partition 1's first: slow
    step("push", 1, b"v", 11)
    step("send_to", 1, b"w", b"k", (), None)  # fast
    step("send_to", 1, b"w", b"k", (("h", b""),), None)  # headers: slow
    step("send_to", 1, b"w", b"k", (), 5)  # a timestamp: slow
    step("send_to", 1, bytearray(b"w"), None, (), None)  # not bytes: slow
    step("send_to", 1, b"w", "k", (), None)  # a str key: slow (which refuses it)
    step("send_to", 2, b"w", None, (), None)  # no such partition
    step("push", 1, b"z" * 200, 200)  # over max_buffered_bytes (500): None
    step("release", 300)
    step("send", b"a", key=b"k", headers=(), timestamp=None)
    step("send", b"a", b"k")
    step("send", b"a", other=1)
    step("close")
    step("send_to", 1, b"w", b"k", (), None)  # closed: slow
    sealed = acc.seal(1, _Batch(1, lock))
    out.append(("records", [tuple(r) if isinstance(r, Message) else r for r in sealed[1]]))
    out.append(("types", [type(r).__name__ for r in sealed[1]]))
    out.append(("slow", slow_calls))
    return out


def test_the_pure_buffer_takes_the_fast_path_only_where_it_may() -> None:
    steps = _drive(lambda b, r, bu, m, k, s: _PyAccumulator(b, r, bu, m, k, SendHandle, s))
    assert ("send", ("handle", "b0", 1)) in steps
    assert steps[-1][1][0] == (0, b"first", None, (), None)
    assert len(steps[-1][1]) == 10  # the sends that went slow


@pytest.mark.skipif(C is None, reason="the compiled codec is not built (or LOGSTORE_PURE=1)")
def test_the_compiled_buffer_and_its_twin_agree_step_by_step() -> None:
    pure = _drive(lambda b, r, bu, m, k, s: _PyAccumulator(b, r, bu, m, k, SendHandle, s))
    compiled = _drive(
        lambda b, r, bu, m, k, s: C.accumulator(b, r, bu, m, k, Message, SendHandle, s)
    )
    for mine, theirs in zip(compiled, pure):
        assert mine == theirs
    assert len(compiled) == len(pure)


def test_the_factory_picks_the_compiled_buffer_when_built() -> None:
    acc = accumulator.accumulator(
        [_Batch(None, threading.Lock())],
        batch_records=2,
        batch_budget=100,
        max_buffered_bytes=100,
        require_key=True,
        slow=lambda *a: None,
    )
    assert (type(acc).__name__ == "Accumulator") == (C is not None)
