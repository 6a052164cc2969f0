"""What a producer's ``send`` touches: the handle, the batch it resolves with, the buffer.

``send`` must cost well under a microsecond, so a record's handle is a
2-tuple ``(batch, index)`` sharing one ``_Batch`` per batch: resolving a
batch is one assignment and one ``Event.set``, not a call per record, and
the offset is ``base + index`` when asked. The buffer (``Accumulator``)
holds each partition's open batch and the bytes buffered; every method is
atomic, so a ``send`` that needs nothing else (not the first record of a
batch, not the one that fills it, room in the buffer, plain types) takes no
lock of the producer's: the compiled twin in ``_speedups`` runs it under the
GIL alone. Anything else goes to the producer's ``slow`` path, which checks,
waits for room and wakes the writer. Knows nothing of logs or of the writer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._native import speedups
from .model import Message

logger = logging.getLogger("logstore")

T = TypeVar("T")
#: Bytes a record adds to its key, value and headers in a batch (varints and
#: attributes; 10 for a 100-byte value): ``send``'s estimate, what ``batch_bytes``
#: and ``max_buffered_bytes`` count.
RECORD_OVERHEAD = 10
#: Fixed bytes of a batch (its 61-byte header), counted once per batch against ``batch_bytes``.
BATCH_OVERHEAD = 61

#: ``slow(partition, value, key, headers, timestamp) -> handle``: the producer's full path.
Slow = Callable[[int, Any, Any, Any, Any], "SendHandle[Any]"]


class _Batch:
    """One batch's fate, shared by the handles of its records.

    ``base`` (its first offset) or ``error`` is set once, then ``done``, then
    ``event``; ``partition`` is ``None`` for a ``Log``'s producer.
    """

    __slots__ = ("base", "callbacks", "created", "done", "error", "event", "lock", "partition")

    def __init__(self, partition: int | None, lock: threading.Lock) -> None:
        self.partition = partition
        self.lock = lock  # the producer's: guards ``callbacks`` against ``settle``
        self.base = -1
        self.error: BaseException | None = None
        self.done = False
        self.event = threading.Event()
        self.callbacks: list[tuple[SendHandle[Any], Callable[[Any], object]]] | None = []
        self.created = 0.0  # time.monotonic() of its first record: the linger's start

    def settle(self, base: int, error: BaseException | None) -> None:
        """Resolve every handle of the batch: at ``base`` on, or failed with ``error``."""
        with self.lock:
            self.base, self.error, self.done = base, error, True
            callbacks, self.callbacks = self.callbacks, None
        self.event.set()
        for handle, fn in callbacks or ():
            try:
                fn(handle)
            except Exception:  # a caller's callback: as concurrent.futures does, log and go on
                logger.exception("producer: a done callback raised")

    def settle_as(self, result: range | BaseException) -> None:
        """``settle`` with a write's result: the batch's offsets, or its error."""
        if isinstance(result, range):
            self.settle(result.start, None)
        else:
            self.settle(-1, result)


class SendHandle(tuple, Generic[T]):  # type: ignore[type-arg]
    """The pending result of one ``send``: its offset (``Log``) or ``(partition, offset)``.

    Future-like and cheap (the compiled ``send`` builds it in one allocation):
    ``result``, ``exception``, ``done``, ``add_done_callback``. A handle
    resolves once its batch was written and the flush covering it returned
    (with ``fsync="always"``: on stable storage), or failed (every handle of
    the batch gets that same error). It is a ``(batch, index)`` pair underneath: compare handles by
    their results, not by ``==``.
    """

    __slots__ = ()

    def done(self) -> bool:
        """Whether the record was written or failed."""
        return self[0].done  # type: ignore[no-any-return]

    def _wait(self, timeout: float | None) -> _Batch:
        batch: _Batch = self[0]
        if not batch.done and not batch.event.wait(timeout):
            raise TimeoutError(f"the record was not written within {timeout} s")
        return batch

    def result(self, timeout: float | None = None) -> T:
        """Wait for the record; return its offset, or ``(partition, offset)`` for a topic.

        Raises:
            TimeoutError: not resolved within ``timeout`` seconds (``None``: wait).
            Exception: the error its batch's write failed with (``OSError``,
                ``LogClosedError``, ``ProducerClosedError``...).
        """
        batch: _Batch = self[0]
        if not batch.done:  # the common case, a resolved handle, without a further call
            self._wait(timeout)
        if batch.error is not None:
            raise batch.error
        offset = batch.base + self[1]
        return offset if batch.partition is None else (batch.partition, offset)  # type: ignore[return-value]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the record; the error its write failed with, or ``None`` if written.

        Raises:
            TimeoutError: not resolved within ``timeout`` seconds.
        """
        return self._wait(timeout).error

    def add_done_callback(self, fn: Callable[[SendHandle[T]], object]) -> None:
        """Call ``fn(handle)`` once the record is written or failed.

        Called in the producer's writer thread (right after the write of the
        batch's group and its fsync returned), or at once in this thread if
        already done. An exception it
        raises is logged and ignored.
        """
        batch: _Batch = self[0]
        with batch.lock:
            if batch.callbacks is not None:
                batch.callbacks.append((self, fn))
                return
        try:
            fn(self)
        except Exception:
            logger.exception("producer: a done callback raised")

    def __repr__(self) -> str:
        batch: _Batch = self[0]
        if not batch.done:
            return "<SendHandle pending>"
        if batch.error is not None:
            return f"<SendHandle failed: {batch.error!r}>"
        return f"<SendHandle {self.result()!r}>"


class _Lane:
    """One partition's open batch in the pure ``Accumulator``."""

    __slots__ = ("batch", "records", "size")

    def __init__(self, batch: _Batch) -> None:
        self.batch = batch
        self.records: list[Any] = []
        self.size = 0


class _PyAccumulator:
    """The buffer of a producer: every partition's open batch and the bytes buffered.

    Pure twin of ``_speedups.accumulator``; each method is atomic (its own
    lock here, the GIL there). ``batch_budget`` is what a batch's records may
    add up to (``batch_bytes`` less the batch header).
    """

    def __init__(
        self,
        batches: list[_Batch],
        batch_records: int,
        batch_budget: int,
        max_buffered_bytes: int,
        require_key: bool,
        handle_type: type[SendHandle[Any]],
        slow: Slow,
    ) -> None:
        self._lanes = [_Lane(b) for b in batches]
        self._batch_records = batch_records
        self._budget = batch_budget
        self._max_buffered = max_buffered_bytes
        self._require_key = require_key
        self._handle = handle_type
        self._slow = slow
        self._lock = threading.Lock()
        self.buffered = 0
        self.closed = False

    def send(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Any = (),
        timestamp: int | None = None,
    ) -> SendHandle[Any]:
        return self.send_to(0, value, key, headers, timestamp)

    def send_to(
        self, partition: int, value: Any, key: Any, headers: Any, timestamp: Any
    ) -> SendHandle[Any]:
        """The fast path when it applies, else ``slow`` (the producer's checks and waits)."""
        if (
            (type(value) is bytes or value is None)
            and (type(key) is bytes or (key is None and not self._require_key))
            and timestamp is None
            and type(headers) is tuple
            and not headers
        ):
            size = (len(value) if value else 0) + (len(key) if key else 0) + RECORD_OVERHEAD
            record: Any = value if key is None else Message(value, key)
            with self._lock:
                lane = self._lanes[partition]
                count = len(lane.records)
                if (
                    not self.closed
                    and 0 < count < self._batch_records - 1
                    and lane.size + size <= self._budget
                    and self.buffered + size <= self._max_buffered
                ):
                    lane.records.append(record)
                    lane.size += size
                    self.buffered += size
                    return self._handle((lane.batch, count))
        return self._slow(partition, value, key, headers, timestamp)

    def push(self, partition: int, record: Any, size: int) -> SendHandle[Any] | None:
        """Add a checked record if the batch and the buffer have room, else ``None``.

        A batch takes up to ``batch_records`` records while their sizes stay
        within the budget; its first record is taken whatever its size.
        """
        with self._lock:
            lane = self._lanes[partition]
            count = len(lane.records)
            if (
                count >= self._batch_records
                or (count and lane.size + size > self._budget)
                or self.buffered + size > self._max_buffered
            ):
                return None
            lane.records.append(record)
            lane.size += size
            self.buffered += size
            return self._handle((lane.batch, count))

    def seal(self, partition: int, new_batch: _Batch) -> tuple[_Batch, list[Any], int] | None:
        """Take the open batch ``(batch, records, size)``, opening ``new_batch``; ``None`` if empty."""
        with self._lock:
            lane = self._lanes[partition]
            if not lane.records:
                return None
            sealed = (lane.batch, lane.records, lane.size)
            lane.batch, lane.records, lane.size = new_batch, [], 0
            return sealed

    def release(self, size: int) -> None:
        """Free ``size`` buffered bytes (a batch written or failed)."""
        with self._lock:
            self.buffered -= size

    def close(self) -> None:
        """Send every later ``send`` to the slow path (which refuses it)."""
        self.closed = True

    def count(self, partition: int) -> int:
        return len(self._lanes[partition].records)

    def batch(self, partition: int) -> _Batch:
        return self._lanes[partition].batch


def accumulator(
    batches: list[_Batch],
    *,
    batch_records: int,
    batch_budget: int,
    max_buffered_bytes: int,
    require_key: bool,
    slow: Slow,
) -> Any:
    """The compiled ``Accumulator`` when the extension is active, else the pure one."""
    if speedups is not None and hasattr(speedups, "accumulator"):
        return speedups.accumulator(
            batches,
            batch_records,
            batch_budget,
            max_buffered_bytes,
            require_key,
            Message,
            SendHandle,
            slow,
        )
    return _PyAccumulator(
        batches,
        batch_records,
        batch_budget,
        max_buffered_bytes,
        require_key,
        SendHandle,
        slow,
    )
