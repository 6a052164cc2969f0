"""Idempotent producers: producer ids handed out and sequence numbers checked.

Owns InitProducerId's ids and, per producer and partition, the last batches
accepted (Kafka keeps five): a batch whose sequence continues the last one is
appended, a retry of one of the last five is answered with its first offset
(as Kafka does, DUPLICATE is success to the client), any other sequence is
OUT_OF_ORDER_SEQUENCE_NUMBER. State is in memory: it does not survive a
restart yet. Knows batch headers only by their fixed field positions.
"""

from __future__ import annotations

import collections
import dataclasses
import struct
import threading
import time

#: RecordBatch v2 fields (after base offset and length): producer id, epoch, base sequence.
_PRODUCER = struct.Struct(">qhi")
_PRODUCER_AT = 43
_LAST_DELTA = struct.Struct(">i")
_LAST_DELTA_AT = 23
_LENGTH = struct.Struct(">i")
_HEADER_BYTES = 61
#: How many of a producer's last batches a retry is recognised among (Kafka's number).
REMEMBERED_BATCHES = 5


@dataclasses.dataclass(frozen=True)
class BatchIdentity:
    """Who wrote a batch and which sequence numbers it holds."""

    producer_id: int
    epoch: int
    first_sequence: int
    last_sequence: int


@dataclasses.dataclass
class _PartitionState:
    epoch: int
    #: (first sequence, last sequence, first offset) of the last batches appended.
    batches: collections.deque[tuple[int, int, int]]


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


class Producers:
    """Producer ids and the sequence state of every idempotent producer's partitions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Ids that a restarted server will not hand out again (its state is in memory).
        self._next_id = int(time.time() * 1000) << 8
        self._state: dict[tuple[int, str, int], _PartitionState] = {}

    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def check(self, topic: str, partition: int, batch: BatchIdentity) -> int | str | None:
        """Judge a batch before it is appended.

        ``None``: append it. An ``int``: a duplicate, already at that offset.
        A ``str``: the error's name (``out_of_order_sequence_number``,
        ``invalid_producer_epoch``).
        """
        with self._lock:
            state = self._state.get((batch.producer_id, topic, partition))
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
        with self._lock:
            key = (batch.producer_id, topic, partition)
            state = self._state.get(key)
            if state is None or batch.epoch > state.epoch:
                state = self._state[key] = _PartitionState(
                    batch.epoch, collections.deque(maxlen=REMEMBERED_BATCHES)
                )
            state.batches.append((batch.first_sequence, batch.last_sequence, offset))
