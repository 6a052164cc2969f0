"""Batching producers: ``Log.producer`` and ``Broker.producer`` (Kafka's linger and batch size).

A writer thread per partition writes the sealed batches, each its own
record batch, offsets in send order; those that queued while it was busy go
under one fsync (group commit), and their handles resolve only after it
(semantics: ``Producing.producer``). Owns the threads, the waits and the
checks of ``send``'s slow path; the buffer and the handles are
``accumulator``'s. Knows a log by its ``_append_groups``, ``config`` and
``path``, a topic by its routing.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from . import compression, validator
from ._fs import Closing
from .accumulator import BATCH_OVERHEAD, RECORD_OVERHEAD, SendHandle, _Batch, accumulator
from .config import LogConfig
from .errors import (
    BufferFullError,
    ConfigError,
    InvalidRecordError,
    LogClosedError,
    ProducerClosedError,
    RecordTooLarge,
)
from .model import Header, Message

logger = logging.getLogger("logstore")

T = TypeVar("T")
Sealed = tuple[_Batch, list[Any], int]
#: ``append(partition, batches) -> offsets or error per batch``: ``Log._append_groups``.
Append = Callable[[int, list[list[Any]]], list["range | Exception"]]

LINGER_MS = 5  # Kafka's linger.ms default since 3.9
BATCH_RECORDS = 1000
BATCH_BYTES = 1 << 20
MAX_BUFFERED_BYTES = 32 << 20  # Kafka's buffer.memory
MAX_BLOCK_MS = 60_000  # Kafka's max.block.ms
#: Ready batches written under one fsync, at most: bounds the first one's wait.
MAX_GROUP_BYTES = 4 << 20


def _option(name: str, value: object, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class _Lane:
    """One partition's writer: its sealed batches, its thread and what wakes it."""

    def __init__(self, core: _Core[Any], partition: int, name: str) -> None:
        self.core, self.partition, self.name = core, partition, name
        self.ready: collections.deque[Sealed] = collections.deque()
        self.wake = threading.Condition(core._lock)
        self.last: _Batch | None = None  # the batch sealed last: flush waits for it
        self.thread: threading.Thread | None = None

    def seal_locked(self) -> None:
        """Under the lock: queue the open batch (if any) for writing; start the writer."""
        sealed = self.core._acc.seal(self.partition, self.core._new_batch(self.partition))
        if sealed is not None:
            self.ready.append(sealed)
            self.last = sealed[0]
            self.start_locked()
            self.wake.notify()

    def start_locked(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._run, name=f"logstore-producer-{self.name}", daemon=True
            )
            self.thread.start()

    def _next(self) -> list[Sealed] | None:
        """Wait for batches to write: all sealed ones (to ``max_group_bytes``), or the open
        one once its linger is up."""
        core, acc = self.core, self.core._acc
        with core._lock:
            while True:
                if self.ready:
                    group = [self.ready.popleft()]
                    size, most = group[0][2], core.max_group_bytes
                    while self.ready and size + self.ready[0][2] <= most:
                        group.append(self.ready.popleft())
                        size += group[-1][2]
                    return group
                if acc.count(self.partition):
                    due = acc.batch(self.partition).created + core._linger_s
                    now = time.monotonic()
                    if core._closing or now >= due:
                        self.seal_locked()
                        continue
                    self.wake.wait(due - now)
                elif core._closing:
                    return None
                else:
                    self.wake.wait()

    def _run(self) -> None:
        try:
            while (group := self._next()) is not None:
                self._write(group)
        except BaseException as exc:  # a bug: no handle may wait for a writer that is gone
            logger.exception("%s: producer writer stopped", self.name)
            self.core._abort(exc)
            raise

    def _write(self, group: list[Sealed]) -> None:
        """Write ``group``'s batches with one fsync; resolve each handle only after it."""
        batches = [batch for batch, _, _ in group]
        size = sum(s for _, _, s in group)
        results: list[range | Exception]
        try:
            results = self.core._append(self.partition, [records for _, records, _ in group])
        except Exception as exc:  # LogClosedError, an OSError of the fsync...: the whole group
            results = [exc] * len(batches)
        except BaseException as exc:  # the writer dies (_run says so): its batches fail first
            for batch in batches:
                batch.settle(-1, exc)
            raise
        del group
        with self.core._lock:
            self.core._acc.release(size)  # first: a callback may send, and must find room
            self.core._space.notify_all()
        for batch, result in zip(batches, results, strict=True):
            batch.settle_as(result)


class _Core(Closing, Generic[T]):
    """What the two producers share: options, the buffer, the slow path, flush and close."""

    def __init__(
        self,
        names: Sequence[str],
        config: LogConfig,
        append: Append,
        *,
        topic: bool,
        linger_ms: int,
        batch_records: int,
        batch_bytes: int,
        max_buffered_bytes: int,
        max_block_ms: int,
        max_group_bytes: int,
    ) -> None:
        self.linger_ms = _option("linger_ms", linger_ms, 0)
        self.max_group_bytes = _option("max_group_bytes", max_group_bytes, 0)
        self.batch_records = _option("batch_records", batch_records, 1)
        batch_bytes = _option("batch_bytes", batch_bytes, BATCH_OVERHEAD + RECORD_OVERHEAD)
        self.max_buffered_bytes = _option("max_buffered_bytes", max_buffered_bytes, 1)
        self.max_block_ms = _option("max_block_ms", max_block_ms, 0)
        self._allowed = min(config.max_message_bytes, config.segment_bytes)
        if batch_bytes > self._allowed:
            logger.warning(
                "%s: producer batch_bytes %d cut to %d, the most one batch of the log may be "
                "(max_message_bytes %d, segment_bytes %d)",
                names[0],
                batch_bytes,
                self._allowed,
                config.max_message_bytes,
                config.segment_bytes,
            )
            batch_bytes = self._allowed
        #: The largest batch this producer writes, after the cut to the log's limit.
        self.batch_bytes = batch_bytes
        self._config = config
        self._codec = compression.CODEC_IDS[config.compression]
        self._append = append
        self._topic = topic
        self._linger_s = linger_ms / 1000
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._closing = False
        self._closed = False
        self._lanes = [_Lane(self, p, name) for p, name in enumerate(names)]
        self._acc = accumulator(
            [self._new_batch(p) for p in range(len(names))],
            batch_records=self.batch_records,
            batch_budget=batch_bytes - BATCH_OVERHEAD,
            max_buffered_bytes=self.max_buffered_bytes,
            require_key=config.compacted,
            slow=self._send_slow,
        )
        self._on_close: Callable[[], None] | None = None

    def _new_batch(self, partition: int) -> _Batch:
        return _Batch(partition if self._topic else None, self._lock)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the records sent and not yet resolved (by ``send``'s estimate)."""
        return int(self._acc.buffered)

    # ------------------------------------------------------------ sending

    def _send_slow(
        self, partition: int, value: Any, key: Any, headers: Any, timestamp: Any
    ) -> SendHandle[T]:
        """``send`` when the fast path does not apply: check, wait for room, wake the writer."""
        lane = self._lanes[partition]
        record, size = self._checked(lane.name, value, key, headers, timestamp)
        acc = self._acc
        deadline: float | None = None
        with self._lock:
            while True:
                if self._closing:
                    raise ProducerClosedError(f"{lane.name}: the producer is closed")
                handle: SendHandle[T] | None = acc.push(partition, record, size)
                if handle is not None:
                    break
                if acc.count(partition):  # the batch is full (or the buffer): write it
                    lane.seal_locked()
                    continue
                now = time.monotonic()
                deadline = now + self.max_block_ms / 1000 if deadline is None else deadline
                if now >= deadline:
                    raise BufferFullError(
                        f"{lane.name}: producer buffer full: {acc.buffered} of max_buffered_bytes "
                        f"{self.max_buffered_bytes} bytes still unwritten after max_block_ms "
                        f"{self.max_block_ms}"
                    )
                self._space.wait(deadline - now)
            count = acc.count(partition)
            if count == 1:  # a new batch: its linger starts now
                handle[0].created = time.monotonic()
                lane.start_locked()
                lane.wake.notify()
            if count >= self.batch_records:
                lane.seal_locked()
        return handle

    def _checked(
        self, name: str, value: Any, key: Any, headers: Any, timestamp: Any
    ) -> tuple[Any, int]:
        """The record as ``append_many`` takes it and its size; refuse what it would refuse."""
        try:
            value = validator.as_bytes(value, "value")
            key = validator.as_bytes(key, "key")
            if key is None and self._config.compacted:
                raise InvalidRecordError("a compacted log cannot accept a record without a key")
            headers = validator.check_headers(headers) if headers else ()
            if timestamp is not None:
                timestamp = validator.check_timestamp(timestamp)
            size = len(value or b"") + len(key or b"") + RECORD_OVERHEAD
            size += sum(len(k.encode()) + len(v or b"") + 2 for k, v in headers)
            record: Any = value
            if key is not None or headers or timestamp is not None:
                record = Message(value, key, headers, timestamp)
            if size + BATCH_OVERHEAD > self._allowed:  # the estimate is near: encode to be sure
                validator.plan(
                    validator.prepare([record], compacted=self._config.compacted),
                    config=self._config,
                    codec=self._codec,
                    now=0,
                    start=0,
                    base_offset=0,
                    active_records=0,
                )
        except (RecordTooLarge, InvalidRecordError) as exc:
            raise type(exc)(f"{name}: {exc}") from None  # as append_many names it
        if size > self.max_buffered_bytes:
            raise RecordTooLarge(
                f"{name}: a record of {size} bytes is over the producer's max_buffered_bytes "
                f"{self.max_buffered_bytes}"
            )
        return record, size

    # ------------------------------------------------------------ flushing and closing

    def flush(self, timeout: float | None = None) -> None:
        """Write every record sent before this call now; return once each is written or failed.

        Failures are in the records' handles, not raised here.

        Raises:
            TimeoutError: some were still unwritten after ``timeout`` seconds.
        """
        with self._lock:
            for lane in self._lanes:
                lane.seal_locked()
            waits = [lane.last for lane in self._lanes if lane.last is not None]
        deadline = None if timeout is None else time.monotonic() + timeout
        for batch in waits:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not batch.event.wait(left):
                raise TimeoutError(f"producer flush: records still unwritten after {timeout} s")

    def close(self, timeout: float | None = None) -> None:
        """Flush, then refuse ``send`` (``ProducerClosedError``) and stop the writer threads.

        Records still unwritten after ``timeout`` seconds (``None``: wait) fail
        with ``ProducerClosedError``; a batch whose write already began ends as
        that write does. Idempotent.
        """
        with self._lock:
            self._closing = True
            self._acc.close()
            for lane in self._lanes:
                lane.seal_locked()
                lane.wake.notify()
            threads = [lane.thread for lane in self._lanes if lane.thread is not None]
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():  # close from a done callback
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        self._fail_unwritten(
            ProducerClosedError("the producer was closed before the record was written")
        )
        self._closed = True
        if self._on_close is not None:
            self._on_close()

    def _fail_unwritten(self, error: BaseException) -> None:
        with self._lock:
            left = [s for lane in self._lanes for s in lane.ready]
            for lane in self._lanes:
                lane.ready.clear()
            for _, _, size in left:
                self._acc.release(size)
            self._space.notify_all()
        for batch, _, _ in left:
            batch.settle(-1, error)

    def _abort(self, error: BaseException) -> None:
        """A writer died: refuse further sends, fail what waits (its open batch included)."""
        with self._lock:
            self._closing = True
            self._acc.close()
            for lane in self._lanes:
                lane.seal_locked()
        self._fail_unwritten(error)

    def _closed_message(self) -> str:
        return f"producer of {self._lanes[0].name} is closed"


class Producer(_Core[int]):
    """Batches records into one ``Log``; ``send`` returns a handle to the offset at once.

    Use ``Log.producer``. Thread safe: many threads may ``send``; the records
    of one thread keep their order. ``close`` (or the ``with`` block's end)
    flushes; closing the log closes its open producers first, so every
    record sent is written or failed, never left waiting. The writer is a
    daemon thread: at interpreter exit, records sent to a producer nobody
    flushed or closed are lost, as in a crash.
    """

    def __init__(self, log: _ProducerLog, **options: int) -> None:
        super().__init__(
            [log.path],
            log.config,
            lambda _, groups: log._append_groups(groups),
            topic=False,
            **options,
        )
        # The compiled accumulator's method itself: no Python frame per record.
        self.send = self._acc.send  # type: ignore[method-assign]

    def send(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[Header] = (),
        timestamp: int | None = None,
    ) -> SendHandle[int]:
        """Queue one record; return its handle at once (``handle.result()`` is its offset).

        Blocks only while the buffer is full (``max_buffered_bytes``), at most
        ``max_block_ms``. The record is checked here as ``append_many`` would.

        Raises:
            BufferFullError: no room within ``max_block_ms``.
            ProducerClosedError: the producer is closed.
            RecordTooLarge: the record alone exceeds ``max_message_bytes`` or the buffer.
            InvalidRecordError, TypeError: as ``append_many`` refuses the record.
        """
        return self._acc.send(value, key=key, headers=headers, timestamp=timestamp)  # type: ignore[no-any-return]


class _RoutedTopic(Protocol):
    @property
    def partitions(self) -> int: ...

    def partition_for(self, key: bytes | None) -> int: ...


class TopicProducer(_Core[tuple[int, int]]):
    """Batches records into a topic's partitions, routed by key as ``Broker.produce_many``.

    Use ``Broker.producer``. Records of one key keep their order (one
    partition, one writer). Handles resolve to ``(partition, offset)``.
    Thread safe; closing the broker closes its open producers first.
    """

    def __init__(
        self,
        topic: _RoutedTopic,
        names: Sequence[str],
        config: LogConfig,
        append: Append,
        **options: int,
    ) -> None:
        super().__init__(names, config, append, topic=True, **options)
        self._route = topic.partition_for
        self._send_to = self._acc.send_to

    def send(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[Header] = (),
        timestamp: int | None = None,
    ) -> SendHandle[tuple[int, int]]:
        """Queue one record to its key's partition; return its handle at once.

        ``handle.result()`` is ``(partition, offset)``. Blocking and errors as
        ``Producer.send``.
        """
        return self._send_to(self._route(key), value, key, headers, timestamp)  # type: ignore[no-any-return]


class _ProducerLog(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def config(self) -> LogConfig: ...

    def _append_groups(self, groups: list[list[Any]]) -> list[range | Exception]: ...

    def _check_open(self) -> None: ...


_REGISTRY = threading.Lock()


class _Producers:
    """The open producers of a ``Log`` or ``Broker``, closed (so flushed) by its ``close``."""

    _producers: set[_Core[Any]] | None = None

    def _track(self, producer: _Core[T]) -> None:
        with _REGISTRY:
            if self._producers is None:
                self._producers = set()
            self._producers.add(producer)

        def untrack() -> None:
            with _REGISTRY:
                if self._producers is not None:
                    self._producers.discard(producer)

        producer._on_close = untrack

    def _close_producers(self) -> None:
        with _REGISTRY:
            producers = list(self._producers or ())
        for producer in producers:
            producer.close()


class Producing(_Producers):
    """``Log.producer``."""

    def producer(
        self: _ProducerLog,
        *,
        linger_ms: int = LINGER_MS,
        batch_records: int = BATCH_RECORDS,
        batch_bytes: int = BATCH_BYTES,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        max_block_ms: int = MAX_BLOCK_MS,
        max_group_bytes: int = MAX_GROUP_BYTES,
    ) -> Producer:
        """A batching producer into this log: ``send`` returns a ``SendHandle`` at once.

        A batch is sealed for writing when it holds ``batch_records`` records, when the next record would take it over
        ``batch_bytes`` (estimated: key, value and header bytes plus 10 per
        record, plus 61 per batch; cut, with a warning, to what one batch of
        the log may be: ``max_message_bytes``), ``linger_ms`` after its first
        record (0: as soon as the writer is free), or at ``flush``/``close``.
        ``send`` blocks while ``max_buffered_bytes`` are unwritten, at most
        ``max_block_ms``, then raises ``BufferFullError``.

        Group commit: the writer takes the batches sealed while its last write
        ran, up to ``max_group_bytes`` (0: one per write), writes each as its
        own batch under one hold of the log's lock, then fsyncs once (per
        ``fsync``); handles resolve only after that: with ``fsync="always"`` on
        stable storage, else in the file (a killed process keeps it; a power
        loss only after the log's next fsync). A failed write fails its batch
        and the group's later ones (not tried) with its error; the earlier ones
        are fsynced and resolved (or fail with that fsync's error); later groups
        go on. Sent but unresolved records are in memory only: a crash loses
        them. Closing the log closes (flushes) its open producers first.

        Raises:
            ConfigError: an option is out of range.
            LogClosedError: the log is closed.
        """
        self._check_open()
        producer = Producer(
            self,
            linger_ms=linger_ms,
            batch_records=batch_records,
            batch_bytes=batch_bytes,
            max_buffered_bytes=max_buffered_bytes,
            max_block_ms=max_block_ms,
            max_group_bytes=max_group_bytes,
        )
        self._track(producer)  # type: ignore[attr-defined]
        return producer


class _ProducerTopic(_RoutedTopic, Protocol):
    name: str
    config: LogConfig

    @property
    def logs(self) -> tuple[_ProducerLog, ...]: ...


class _ProducerBroker(Protocol):
    def topic(self, name: str) -> Any: ...

    def _notify(self) -> None: ...


def _topic_append(broker: _ProducerBroker, name: str) -> Append:
    """One batch into partition ``p`` of the topic's current logs (``alter_topic`` reopens them)."""

    def append(p: int, groups: list[list[Any]]) -> list[range | Exception]:
        log = broker.topic(name).partition(p)
        try:
            results: list[range | Exception] = log._append_groups(groups)
        except LogClosedError:  # reopened meanwhile: nothing was written, write to the new one
            fresh = broker.topic(name).partition(p)
            if fresh is log:
                raise
            results = fresh._append_groups(groups)
        broker._notify()  # wake consumers waiting for data, as produce_many does
        return results

    return append


class TopicProducing(_Producers):
    """``Broker.producer``."""

    def producer(
        self: _ProducerBroker,
        topic: str,
        *,
        linger_ms: int = LINGER_MS,
        batch_records: int = BATCH_RECORDS,
        batch_bytes: int = BATCH_BYTES,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        max_block_ms: int = MAX_BLOCK_MS,
        max_group_bytes: int = MAX_GROUP_BYTES,
    ) -> TopicProducer:
        """A batching producer into ``topic``: ``send`` returns a ``SendHandle`` at once.

        Routed as ``produce_many`` routes (Kafka's murmur2 of the key, keyless
        records round-robin), so a key's records keep their order in one
        partition; each partition has its own batches and writer thread (started
        on its first record), and all share ``max_buffered_bytes``. Handles
        resolve to ``(partition, offset)``. Options, durability and crash
        semantics as ``Log.producer``'s. Closing the broker closes (flushes)
        its open producers first.

        Raises:
            UnknownTopicError: there is no such topic.
            ConfigError: an option is out of range.
        """
        t: _ProducerTopic = self.topic(topic)
        producer = TopicProducer(
            t,
            [log.path for log in t.logs],
            t.config,
            _topic_append(self, topic),
            linger_ms=linger_ms,
            batch_records=batch_records,
            batch_bytes=batch_bytes,
            max_buffered_bytes=max_buffered_bytes,
            max_block_ms=max_block_ms,
            max_group_bytes=max_group_bytes,
        )
        self._track(producer)  # type: ignore[attr-defined]
        return producer
