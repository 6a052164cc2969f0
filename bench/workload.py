"""Deterministic input data for the benchmark workloads.

Every engine runs in its own process, so each process regenerates the input
from the same seed: the bytes handed to every engine are identical.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

#: One batch of ``(key, value)`` pairs: the pre-built input of the "codec only" tables.
Batch = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Workload:
    """An append-then-scan workload: ``records`` records in batches of ``batch_size``.

    With ``fsync`` set, every engine makes each batch durable before the next one
    (``os.fsync``, or the engine's own equivalent).
    """

    name: str = "append-scan"
    records: int = 1_000_000
    batch_size: int = 1000
    key_size: int = 16
    value_size: int = 100
    seed: int = 20240601
    fsync: bool = False

    @property
    def record_bytes(self) -> int:
        """Payload bytes of one record (key + value)."""
        return self.key_size + self.value_size

    @property
    def payload_bytes(self) -> int:
        """Payload bytes of the whole workload (keys + values)."""
        return self.records * self.record_bytes

    def warmup(self, records: int = 20_000) -> Workload:
        """A small workload of the same shape with a different seed, for warming up.

        At most a tenth of the workload (but one batch at least), so that slow
        engines running a capped workload do not spend most of their time warming up.
        """
        size = min(records, max(self.batch_size, self.records // 10), self.records)
        return replace(self, name=f"{self.name}-warmup", records=size, seed=self.seed + 1)

    def capped(self, records: int | None) -> Workload:
        """This workload with at most ``records`` records (``None``: unchanged)."""
        if records is None or records >= self.records:
            return self
        return replace(self, records=records)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workload:
        return cls(**data)


@dataclass(frozen=True)
class Columns:
    """The workload's keys and values as two flat lists: a user's data, before any engine.

    The user-loop tables time engines that slice these per batch and build their
    own input objects (``Message``s, row tuples, packed records) inside the loop.
    """

    keys: list[bytes]
    values: list[bytes]
    batch_size: int

    def __len__(self) -> int:
        return len(self.keys)

    def batches(self) -> Iterator[tuple[list[bytes], list[bytes]]]:
        """``(keys, values)`` of each batch, sliced as the caller's loop reaches it."""
        keys, values, size = self.keys, self.values, self.batch_size
        for start in range(0, len(keys), size):
            yield keys[start : start + size], values[start : start + size]


def _blocks(workload: Workload) -> Iterator[tuple[bytes, int]]:
    """One random block per batch and its record count (seeded), made as they are used.

    A block at a time keeps the generator's own peak memory small.
    """
    rng = random.Random(workload.seed)
    size = workload.record_bytes
    for start in range(0, workload.records, workload.batch_size):
        count = min(workload.batch_size, workload.records - start)
        yield rng.randbytes(count * size), count


def columns(workload: Workload) -> Columns:
    """The same bytes as ``generate``, as flat key and value lists."""
    ks, size = workload.key_size, workload.record_bytes
    keys: list[bytes] = []
    values: list[bytes] = []
    for blob, count in _blocks(workload):
        end = count * size
        keys += [blob[p : p + ks] for p in range(0, end, size)]
        values += [blob[p + ks : p + size] for p in range(0, end, size)]
    return Columns(keys, values, workload.batch_size)


def generate(workload: Workload) -> list[Batch]:
    """The workload's records as batches of random ``(key, value)`` pairs (seeded)."""
    ks, size = workload.key_size, workload.record_bytes
    return [
        [(blob[p : p + ks], blob[p + ks : p + size]) for p in range(0, count * size, size)]
        for blob, count in _blocks(workload)
    ]
