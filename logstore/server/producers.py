"""Idempotent producers: producer ids handed out and sequence numbers checked, across restarts.

Owns InitProducerId's ids and, per producer and partition, the last batches
accepted (Kafka keeps five): a batch whose sequence continues the last one is
appended, a retry of one of the last five is answered with its first offset
(as Kafka does, DUPLICATE is success to the client), any other sequence is
OUT_OF_ORDER_SEQUENCE_NUMBER. Knows batch headers only by their fixed field
positions; never decodes records.

What survives a restart, and why it is safe (Kafka's design):

- The log is the source of truth. Every stored batch carries its producer id,
  epoch, base sequence and last offset delta, so a partition's producer state
  is rebuilt from its batches (``read_batches``, headers only) the first time
  a produce reaches that partition after the server started. A SIGKILL loses
  nothing here: what was appended is in the log (and recovery's tail check
  keeps exactly the whole batches), so a retry of an acknowledged batch is
  recognised after the restart, and one that was never appended is not.
- The scan is sped up by a snapshot, ``ROOT/serve-producer-state``, written
  every ``SNAPSHOT_INTERVAL_S`` while idempotent batches arrive and at clean
  close (temporary file, fsync, rename, fsync of the root), so that after a
  SIGKILL only the last interval's appends are scanned (Kafka writes one per
  segment roll for the same reason). Each of its partitions says the state as
  of an end offset and names the last batch below it (base offset and CRC);
  on load that batch is checked and only the log after it is scanned. A torn,
  damaged or missing snapshot, or a partition whose log no longer holds that
  batch (truncated, deleted and recreated), falls back to the full scan: the
  snapshot is a cache, never the truth.
- Producer ids are reserved in blocks of ``ID_BLOCK`` by a high-water mark,
  ``ROOT/serve-producer-ids``, made durable (fsync of the file and the root)
  before any id of the block is handed out; a restart, clean or not, starts
  above it. It never starts below ``now_ms << 8`` either, which keeps ids
  above those of a server that kept no mark, and unique if the file is lost.

Expiry (Kafka's ``producer.id.expiration.ms``, one day by default): a
producer whose last batch on a partition is older than ``expiration_ms`` is
forgotten for that partition, so that state (and the snapshot) does not
grow with every producer id that ever wrote. A producer's time on a
partition is when its last batch was appended there by this server (the
server's clock, kept in the snapshot), or, for batches found by scanning
the log, the batch's max timestamp (as Kafka does), raised to the time the
snapshot they follow was taken, since they were appended after it. The
check is a comparison per producer: at the load of a partition, at each
periodic snapshot tick (an expiry alone rewrites the snapshot), and on the
producer's next batch. A forgotten producer is a new one, as in Kafka: its
next batch is appended whatever its sequence and starts its state, so a
retry of a batch appended before the expiry is appended again.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

from .. import Broker, Log, LogStoreError
from .._fs import atomic_write

logger = logging.getLogger(__name__)

#: RecordBatch v2 fields (after base offset and length): producer id, epoch, base sequence.
_PRODUCER = struct.Struct(">qhi")
_PRODUCER_AT = 43
_LAST_DELTA = struct.Struct(">i")
_LAST_DELTA_AT = 23
_ATTRIBUTES = struct.Struct(">h")
_ATTRIBUTES_AT = 21
_CRC = struct.Struct(">I")
_CRC_AT = 17
_MAX_TIMESTAMP = struct.Struct(">q")
_MAX_TIMESTAMP_AT = 35
_BASE = struct.Struct(">qi")  # base offset, batch length
_LENGTH = struct.Struct(">i")
_HEADER_BYTES = 61
_CONTROL = 0x20
#: How many of a producer's last batches a retry is recognised among (Kafka's number).
REMEMBERED_BATCHES = 5
#: Producer ids reserved by one durable write of the high-water mark (Kafka's block size).
ID_BLOCK = 1000
IDS_FILE = "serve-producer-ids"
SNAPSHOT_FILE = "serve-producer-state"
_SNAPSHOT_MAGIC = b"logstore-serve-producer-state 2 "
_SCAN_CHUNK = 4 << 20
#: How often the snapshot is rewritten while producers write (and once more at close).
SNAPSHOT_INTERVAL_S = 30.0
#: How long a producer's state on a partition outlives its last batch (Kafka's default).
EXPIRATION_MS = 86_400_000


def _now_ms() -> int:
    """The clock of append times and expiry (a test replaces it)."""
    return int(time.time() * 1000)


@dataclasses.dataclass(frozen=True)
class BatchIdentity:
    """Who wrote a batch and which sequence numbers it holds."""

    producer_id: int
    epoch: int
    first_sequence: int
    last_sequence: int


@dataclasses.dataclass
class _ProducerState:
    epoch: int
    #: (first sequence, last sequence, first offset) of the last batches appended.
    batches: collections.deque[tuple[int, int, int]]
    #: When its last batch was appended (ms since the epoch): what expiry compares.
    last_ms: int


@dataclasses.dataclass(frozen=True)
class _Saved:
    """One partition's entry of the snapshot read at open."""

    end: int
    last_batch: tuple[int, int]
    #: When the entry's state was taken: batches after ``end`` were appended later.
    as_of_ms: int
    #: ``[producer id, epoch, last_ms, [[first, last, offset], ...]]`` each.
    producers: list[list[Any]]


#: One partition's producers, by producer id.
_PartitionState = dict[int, _ProducerState]


def identities(records: bytes) -> list[BatchIdentity] | None:
    """The producer fields of each batch in ``records``; ``None`` when none is idempotent.

    A malformed buffer gives ``None`` too: ``append_batches`` refuses it with the reason.
    """
    found: list[BatchIdentity] = []
    position = 0
    idempotent = False
    while position + _HEADER_BYTES <= len(records):
        (length,) = _LENGTH.unpack_from(records, position + 8)
        producer_id, epoch, sequence = _PRODUCER.unpack_from(records, position + _PRODUCER_AT)
        (delta,) = _LAST_DELTA.unpack_from(records, position + _LAST_DELTA_AT)
        if producer_id >= 0 and sequence >= 0:
            idempotent = True
        found.append(BatchIdentity(producer_id, epoch, sequence, sequence + delta))
        if length < _HEADER_BYTES - 12:
            return None
        position += 12 + length
    return found if idempotent else None


def _remember(
    state: _PartitionState,
    producer_id: int,
    epoch: int,
    first: int,
    last: int,
    offset: int,
    at_ms: int,
) -> None:
    """Add one batch appended at ``at_ms`` to a partition's state (a newer epoch starts afresh)."""
    current = state.get(producer_id)
    if current is None or epoch > current.epoch:
        current = state[producer_id] = _ProducerState(
            epoch, collections.deque(maxlen=REMEMBERED_BATCHES), at_ms
        )
    elif epoch < current.epoch:
        return  # a fenced epoch's batch: the newer epoch's state stands
    current.batches.append((first, last, offset))
    current.last_ms = max(current.last_ms, at_ms)


def _expired(producer: _ProducerState | list[Any], now_ms: int, expiration_ms: int) -> bool:
    """Whether a producer's last batch is ``expiration_ms`` old or more (Kafka's test)."""
    last_ms = producer.last_ms if isinstance(producer, _ProducerState) else producer[2]
    return bool(now_ms - last_ms >= expiration_ms)


def _expire(state: _PartitionState, now_ms: int, expiration_ms: int) -> int:
    """Forget a partition's expired producers; how many there were."""
    gone = [pid for pid, p in state.items() if _expired(p, now_ms, expiration_ms)]
    for producer_id in gone:
        del state[producer_id]
    return len(gone)


def _scan(log: Log, start: int, end: int, state: _PartitionState, floor_ms: int = 0) -> None:
    """Add the producer batches stored in ``[start, end)`` to ``state``, headers only.

    A batch's time is its max timestamp, or ``floor_ms`` when that is later
    (the batches were appended after it).
    """
    offset = start
    while offset < end:
        data = log.read_batches(offset, _SCAN_CHUNK)
        if len(data) < _HEADER_BYTES:
            return
        before = offset
        position = 0
        while position + _HEADER_BYTES <= len(data):
            base, length = _BASE.unpack_from(data, position)
            (delta,) = _LAST_DELTA.unpack_from(data, position + _LAST_DELTA_AT)
            (attributes,) = _ATTRIBUTES.unpack_from(data, position + _ATTRIBUTES_AT)
            producer_id, epoch, sequence = _PRODUCER.unpack_from(data, position + _PRODUCER_AT)
            if producer_id >= 0 and sequence >= 0 and not attributes & _CONTROL:
                (timestamp,) = _MAX_TIMESTAMP.unpack_from(data, position + _MAX_TIMESTAMP_AT)
                at_ms = max(timestamp, floor_ms)
                _remember(state, producer_id, epoch, sequence, sequence + delta, base, at_ms)
            offset = max(offset, base + delta + 1)
            position += 12 + length
        if offset == before:  # never: the batch holding ``offset`` ends at or after it
            return


def _last_batch(log: Log, end: int) -> tuple[int, int] | None:
    """Base offset and CRC of the batch holding ``end - 1``; ``None`` when there is none."""
    if end <= log.start_offset:
        return None
    data = log.read_batches(end - 1, 1)
    if len(data) < _HEADER_BYTES:
        return None
    (base, _), (crc,) = _BASE.unpack_from(data), _CRC.unpack_from(data, _CRC_AT)
    return base, crc


class Producers:
    """Producer ids and the sequence state of every idempotent producer's partitions.

    ``open`` and ``close`` do file I/O (and ``new_id`` once per ``ID_BLOCK``
    ids): call them from a worker thread. ``partition`` is held around
    judging, appending and recording one partition's batches, so that two
    requests never both pass the check for the same batch.
    """

    def __init__(self, broker: Broker, root: str, expiration_ms: int = EXPIRATION_MS) -> None:
        self._broker = broker
        self._root = root
        self._expiration_ms = expiration_ms
        self._lock = threading.Lock()
        self._next_id = 0
        self._reserved = 0  # ids below this are covered by the durable high-water mark
        self._state: dict[tuple[str, int], _PartitionState] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        #: The snapshot read at open, by partition (until the partition is loaded).
        self._snapshot: dict[tuple[str, int], _Saved] = {}
        self._dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        broker: Broker,
        root: str | os.PathLike[str],
        *,
        snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
        expiration_ms: int = EXPIRATION_MS,
    ) -> Producers:
        """Read the id high-water mark and the last snapshot (if any); start the snapshots.

        ``expiration_ms``: how long a producer's state on a partition outlives its last batch.
        """
        producers = cls(broker, os.fspath(root), expiration_ms)
        producers._next_id = max(producers._read_high_water(), _now_ms() << 8)
        producers._reserved = producers._next_id
        producers._snapshot = producers._read_snapshot()
        producers._thread = threading.Thread(
            target=producers._snapshot_forever,
            args=(snapshot_interval_s,),
            name=f"logstore-serve-producer-snapshots-{producers._root}",
            daemon=True,
        )
        producers._thread.start()
        return producers

    # ------------------------------------------------------------ producer ids

    def _read_high_water(self) -> int:
        path = os.path.join(self._root, IDS_FILE)
        try:
            with open(path, "rb") as f:
                return int(f.read().decode("ascii").strip())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            # Written by rename, so never torn; damage is answered by the clock's floor.
            logger.warning("%s unreadable (%s): producer ids start from the clock", path, exc)
            return 0

    def new_id(self) -> int:
        """A producer id no server on this root handed out before, nor will again."""
        with self._lock:
            if self._next_id >= self._reserved:
                mark = self._next_id + ID_BLOCK
                atomic_write(os.path.join(self._root, IDS_FILE), b"%d\n" % mark)
                self._reserved = mark
            self._next_id += 1
            return self._next_id - 1

    # ------------------------------------------------------------ sequences

    @contextlib.contextmanager
    def partition(self, topic: str, partition: int) -> Iterator[None]:
        """Hold one partition's producer state (loading it from the log the first time)."""
        key = (topic, partition)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._state:
                self._state[key] = self._load(topic, partition)
            yield

    def check(self, topic: str, partition: int, batch: BatchIdentity) -> int | str | None:
        """Judge a batch before it is appended (inside ``partition``).

        ``None``: append it. An ``int``: a duplicate, already at that offset.
        A ``str``: the error's name (``out_of_order_sequence_number``,
        ``invalid_producer_epoch``).
        """
        partition_state = self._state[(topic, partition)]
        state = partition_state.get(batch.producer_id)
        if state is not None and _expired(state, _now_ms(), self._expiration_ms):
            del partition_state[batch.producer_id]  # forgotten: a new producer from here
            state = None
        if state is None or batch.epoch > state.epoch:
            return None  # a new producer (or epoch) starts where it says
        if batch.epoch < state.epoch:
            return "invalid_producer_epoch"
        for first, last, offset in state.batches:
            if (first, last) == (batch.first_sequence, batch.last_sequence):
                return offset
        last_sequence = state.batches[-1][1] if state.batches else -1
        if batch.first_sequence != (last_sequence + 1) & 0x7FFFFFFF:
            return "out_of_order_sequence_number"
        return None

    def appended(self, topic: str, partition: int, batch: BatchIdentity, offset: int) -> None:
        """Record a batch ``append_batches`` stored at ``offset`` (inside ``partition``)."""
        self._dirty = True
        _remember(
            self._state[(topic, partition)],
            batch.producer_id,
            batch.epoch,
            batch.first_sequence,
            batch.last_sequence,
            offset,
            _now_ms(),
        )

    def forget(self, topic: str) -> None:
        """Drop a deleted topic's state (a topic created again with its name starts empty)."""
        with self._lock:
            for key in [k for k in self._state if k[0] == topic]:
                del self._state[key]
            for key in [k for k in self._snapshot if k[0] == topic]:
                del self._snapshot[key]

    def _load(self, topic: str, partition: int) -> _PartitionState:
        """A partition's state: the snapshot's (if its last batch is still there), then the log."""
        log = self._broker.topic(topic).partition(partition)
        end = log.end_offset
        state: _PartitionState = {}
        start = log.start_offset
        floor_ms = 0
        with self._lock:  # ``expire`` may be replacing the entry
            saved = self._snapshot.pop((topic, partition), None)
        if saved is not None:
            try:
                usable = (
                    start <= saved.end <= end and _last_batch(log, saved.end) == saved.last_batch
                )
            except LogStoreError:
                usable = False
            if usable:
                for producer_id, epoch, last_ms, batches in saved.producers:
                    for first, last, offset in batches:
                        _remember(state, producer_id, epoch, first, last, offset, last_ms)
                start, floor_ms = saved.end, saved.as_of_ms
            else:
                logger.info("%s-%d: producer snapshot stale, scanning the log", topic, partition)
        _scan(log, start, end, state, floor_ms)
        _expire(state, _now_ms(), self._expiration_ms)
        return state

    def expire(self) -> int:
        """Forget every expired producer, loaded or only in the snapshot; how many there were."""
        now = _now_ms()
        with self._lock:
            loaded = list(self._state)
            removed = 0
            for key, saved in list(self._snapshot.items()):
                kept = [p for p in saved.producers if not _expired(p, now, self._expiration_ms)]
                if len(kept) < len(saved.producers):
                    removed += len(saved.producers) - len(kept)
                    self._snapshot[key] = dataclasses.replace(saved, producers=kept)
        for key in loaded:
            with self._lock:
                lock = self._locks.setdefault(key, threading.Lock())
            with lock:
                state = self._state.get(key)
                if state is not None:
                    removed += _expire(state, now, self._expiration_ms)
        return removed

    # ------------------------------------------------------------ the snapshot

    def _read_snapshot(self) -> dict[tuple[str, int], _Saved]:
        path = os.path.join(self._root, SNAPSHOT_FILE)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.warning("%s unreadable (%s): producer state from the logs", path, exc)
            return {}
        head, _, body = data.partition(b"\n")
        digest = hashlib.sha256(body).hexdigest().encode()
        if head != _SNAPSHOT_MAGIC + digest:
            logger.warning("%s damaged (checksum): producer state from the logs", path)
            return {}
        found = {}
        now = _now_ms()
        try:
            for entry in json.loads(body)["partitions"]:
                key = (str(entry["topic"]), int(entry["partition"]))
                base, crc = entry["last_batch"]
                producers = [
                    [
                        int(pid),
                        int(epoch),
                        int(last_ms),
                        [[int(f), int(la), int(o)] for f, la, o in batches],
                    ]
                    for pid, epoch, last_ms, batches in entry["producers"]
                ]
                found[key] = _Saved(
                    int(entry["end"]),
                    (int(base), int(crc)),
                    int(entry["as_of_ms"]),
                    [p for p in producers if not _expired(p, now, self._expiration_ms)],
                )
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("%s not understood (%s): producer state from the logs", path, exc)
            return {}
        return found

    def _entry(self, topic: str, partition: int) -> dict[str, Any] | None:
        """One loaded partition's snapshot entry, taken under its lock (``None``: none to keep)."""
        key = (topic, partition)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            state = self._state.get(key)
            if state is None:
                return None
            try:
                log = self._broker.topic(topic).partition(partition)
                end = log.end_offset
                last_batch = _last_batch(log, end)
            except LogStoreError:
                return None  # deleted meanwhile, or the broker closing
            if last_batch is None:
                return None  # an empty log: nothing a scan would take long over
            now = _now_ms()
            _expire(state, now, self._expiration_ms)
            producers = [
                [producer_id, p.epoch, p.last_ms, [list(b) for b in p.batches]]
                for producer_id, p in state.items()
            ]
        return {
            "topic": topic,
            "partition": partition,
            "end": end,
            "last_batch": list(last_batch),
            "as_of_ms": now,
            "producers": producers,
        }

    def write_snapshot(self) -> None:
        """Write every partition's state durably (a failure is logged: the next start scans)."""
        now = _now_ms()
        with self._lock:
            self._dirty = False
            loaded = list(self._state)
            carried = dict(self._snapshot)
        entries = [
            {
                "topic": t,
                "partition": p,
                "end": saved.end,
                "last_batch": list(saved.last_batch),
                "as_of_ms": saved.as_of_ms,
                "producers": [
                    x for x in saved.producers if not _expired(x, now, self._expiration_ms)
                ],
            }
            for (t, p), saved in carried.items()
        ]
        entries += [e for e in (self._entry(t, p) for t, p in loaded) if e is not None]
        body = json.dumps({"partitions": entries}, separators=(",", ":")).encode()
        head = _SNAPSHOT_MAGIC + hashlib.sha256(body).hexdigest().encode()
        try:
            atomic_write(os.path.join(self._root, SNAPSHOT_FILE), head + b"\n" + body)
        except OSError as exc:
            logger.warning("producer snapshot not written (%s): the next start scans", exc)

    def _snapshot_forever(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            if self.expire() or self._dirty:
                self.write_snapshot()

    def close(self) -> None:
        """Stop the periodic snapshots, write the last one (after the last produce,
        before the logs close); idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.write_snapshot()
