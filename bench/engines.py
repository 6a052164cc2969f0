"""Storage engines under benchmark, behind one small interface.

An engine owns one directory. ``prepare`` turns the generated batches into the
engine's native input (untimed); ``append`` writes them all (timed, including
opening and closing the store); ``scan`` reads every record back (timed) and
returns ``(records, payload_bytes)`` so the harness can check nothing was lost.

Heavy third-party imports happen inside the engine that needs them, so each
engine's child process pays only for its own libraries in its peak RSS.

To add an engine, subclass ``Engine`` and decorate it with ``@register``.
"""

from __future__ import annotations

import os
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from workload import Batch

if TYPE_CHECKING:
    import logstore

P = TypeVar("P")

#: The SQLite ``synchronous`` settings the harness accepts.
SQLITE_SYNC_MODES = ("OFF", "NORMAL")


@dataclass(frozen=True)
class Settings:
    """Knobs shared by every engine (set from the command line)."""

    sqlite_synchronous: str = "OFF"


class Engine(ABC, Generic[P]):
    """One storage engine, writing to and reading from ``directory``."""

    name: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, directory: str, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        os.makedirs(directory, exist_ok=True)

    @classmethod
    def describe(cls, settings: Settings) -> str:
        """One line on how this engine is configured, for the report."""
        return cls.label

    @abstractmethod
    def prepare(self, batches: list[Batch]) -> P:
        """Build the engine's input objects from ``batches`` (not timed)."""

    @abstractmethod
    def append(self, prepared: P) -> None:
        """Open the store, append every batch, close it."""

    @abstractmethod
    def scan(self) -> tuple[int, int]:
        """Open the store, read every record, close it; return ``(records, payload bytes)``."""


ENGINES: dict[str, type[Engine[Any]]] = {}

E = TypeVar("E", bound="type[Engine[Any]]")


def register(cls: E) -> E:
    """Class decorator: make an engine available to the harness under ``cls.name``."""
    if cls.name in ENGINES:
        raise ValueError(f"engine {cls.name!r} registered twice")
    ENGINES[cls.name] = cls
    return cls


@register
class LogstoreEngine(Engine["list[list[logstore.Message]]"]):
    name = "logstore"
    label = "logstore"

    @classmethod
    def describe(cls, settings: Settings) -> str:
        return (
            'logstore `Log.open(dir, LogConfig(fsync="never"))`, `append_many` of 1 batch of '
            "`Message`s per call, `scan()` (CRC verified on read, the default)"
        )

    def _config(self) -> logstore.LogConfig:
        import logstore

        return logstore.LogConfig(fsync="never")

    def prepare(self, batches: list[Batch]) -> list[list[logstore.Message]]:
        from logstore import Message

        return [[Message(value, key=key) for key, value in batch] for batch in batches]

    def append(self, prepared: list[list[logstore.Message]]) -> None:
        import logstore

        log = logstore.Log.open(self.directory, self._config())
        try:
            append_many = log.append_many
            for messages in prepared:
                append_many(messages)
        finally:
            log.close()

    def scan(self) -> tuple[int, int]:
        import logstore

        count = total = 0
        with logstore.Log.open(self.directory, self._config()) as log:
            for r in log.scan():
                count += 1
                total += len(r.key or b"") + len(r.value or b"")
        return count, total


_LENGTHS = struct.Struct("<II")


@register
class PlainFileEngine(Engine[list[Batch]]):
    """Length-prefixed records in one file: about the least work Python can do."""

    name = "plain-file"
    label = "plain file"
    chunk_size = 1 << 20

    @classmethod
    def describe(cls, settings: Settings) -> str:
        return (
            "plain file: `<II` key/value lengths + key + value per record, one `write` of "
            f"`b''.join(...)` per batch; read back in {cls.chunk_size >> 20} MiB chunks and parsed "
            "with `struct.unpack_from` (no offsets, timestamps or checksums)"
        )

    @property
    def path(self) -> str:
        return os.path.join(self.directory, "records.bin")

    def prepare(self, batches: list[Batch]) -> list[Batch]:
        return batches

    def append(self, prepared: list[Batch]) -> None:
        pack = _LENGTHS.pack
        with open(self.path, "wb") as f:
            write = f.write
            for batch in prepared:
                parts: list[bytes] = []
                extend = parts.extend
                for key, value in batch:
                    extend((pack(len(key), len(value)), key, value))
                write(b"".join(parts))

    def scan(self) -> tuple[int, int]:
        unpack_from = _LENGTHS.unpack_from
        head = _LENGTHS.size
        count = total = pos = 0
        buf = b""
        with open(self.path, "rb", buffering=0) as f:
            read = f.read
            while True:
                chunk = read(self.chunk_size)
                if not chunk:
                    break
                buf = buf[pos:] + chunk
                pos = 0
                end = len(buf)
                while pos + head <= end:
                    klen, vlen = unpack_from(buf, pos)
                    start = pos + head
                    stop = start + klen + vlen
                    if stop > end:
                        break
                    key = buf[start : start + klen]
                    value = buf[start + klen : stop]
                    count += 1
                    total += len(key) + len(value)
                    pos = stop
        if buf[pos:]:
            raise ValueError(f"{len(buf) - pos} trailing bytes in {self.path}")
        return count, total


@register
class SQLiteEngine(Engine["list[list[tuple[bytes, bytes, int]]]"]):
    name = "sqlite"
    label = "SQLite"

    @classmethod
    def describe(cls, settings: Settings) -> str:
        import sqlite3

        return (
            f"SQLite {sqlite3.sqlite_version} (stdlib `sqlite3`): `journal_mode=WAL`, "
            f"`synchronous={settings.sqlite_synchronous}`, table "
            "`(offset INTEGER PRIMARY KEY, key BLOB, value BLOB, ts INTEGER)`, one transaction "
            "per batch of `executemany` (offsets are SQLite-assigned rowids; row tuples incl. "
            "timestamp are built before timing), then `SELECT` of all rows iterating the cursor"
        )

    @property
    def path(self) -> str:
        return os.path.join(self.directory, "log.sqlite")

    def prepare(self, batches: list[Batch]) -> list[list[tuple[bytes, bytes, int]]]:
        ts = int(time.time() * 1000)
        return [[(key, value, ts) for key, value in batch] for batch in batches]

    def append(self, prepared: list[list[tuple[bytes, bytes, int]]]) -> None:
        import sqlite3

        sync = self.settings.sqlite_synchronous
        if sync not in SQLITE_SYNC_MODES:
            raise ValueError(f"sqlite synchronous must be one of {SQLITE_SYNC_MODES}, not {sync}")
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"SQLite refused WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={sync}")
            conn.execute(
                'CREATE TABLE log ("offset" INTEGER PRIMARY KEY, key BLOB, value BLOB, ts INTEGER)'
            )
            execute, executemany = conn.execute, conn.executemany
            insert = "INSERT INTO log (key, value, ts) VALUES (?, ?, ?)"
            for rows in prepared:
                execute("BEGIN")
                executemany(insert, rows)
                execute("COMMIT")
        finally:
            conn.close()

    def scan(self) -> tuple[int, int]:
        import sqlite3

        count = total = 0
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            cursor = conn.execute('SELECT "offset", key, value, ts FROM log ORDER BY "offset"')
            for _offset, key, value, _ts in cursor:
                count += 1
                total += len(key) + len(value)
        finally:
            conn.close()
        return count, total


@register
class KafkaPythonEngine(Engine[list[Batch]]):
    """kafka-python's pure-Python RecordBatch v2 builder and reader, into a plain file."""

    name = "kafka-python"
    label = "kafka-python"
    batch_limit = 1 << 30

    @classmethod
    def describe(cls, settings: Settings) -> str:
        from importlib.metadata import version

        return (
            f"kafka-python {version('kafka-python')}: `DefaultRecordBatchBuilder(magic=2, "
            "compression_type=0, ...)`, `append(offset_delta, timestamp=, key=, value=, "
            "headers=[])` per record, `build()`, one `write` per batch; read back batch by batch "
            "(length from bytes 8..12) and iterated with `DefaultRecordBatch` (no CRC check)"
        )

    @property
    def path(self) -> str:
        return os.path.join(self.directory, "batches.bin")

    def prepare(self, batches: list[Batch]) -> list[Batch]:
        return batches

    def append(self, prepared: list[Batch]) -> None:
        from kafka.record.default_records import DefaultRecordBatchBuilder

        now: Callable[[], float] = time.time
        base_offset = 0
        with open(self.path, "wb") as f:
            for batch in prepared:
                builder = DefaultRecordBatchBuilder(
                    magic=2,
                    compression_type=0,
                    is_transactional=False,
                    producer_id=-1,
                    producer_epoch=-1,
                    base_sequence=-1,
                    batch_size=self.batch_limit,
                )
                ts = int(now() * 1000)
                append = builder.append
                for delta, (key, value) in enumerate(batch):
                    if append(delta, timestamp=ts, key=key, value=value, headers=[]) is None:
                        raise RuntimeError("kafka-python builder refused a record")
                buf = builder.build()
                struct.pack_into(">q", buf, 0, base_offset)
                base_offset += len(batch)
                f.write(buf)

    def scan(self) -> tuple[int, int]:
        from kafka.record.default_records import DefaultRecordBatch

        count = total = 0
        with open(self.path, "rb") as f:
            read = f.read
            while True:
                head = read(12)
                if not head:
                    break
                if len(head) < 12:
                    raise ValueError(f"truncated batch header in {self.path}")
                (length,) = struct.unpack_from(">i", head, 8)
                body = read(length)
                if len(body) < length:
                    raise ValueError(f"truncated batch in {self.path}")
                for record in DefaultRecordBatch(head + body):
                    count += 1
                    total += len(record.key) + len(record.value)
        return count, total
