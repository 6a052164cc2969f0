"""Storage engines under benchmark, behind one small interface.

An engine owns one directory. Two ways to append, timed including opening and
closing the store:

- ``append_loop(columns)``: what a user's loop does (the headline tables): the
  raw keys and values are sliced per batch and the engine's input objects
  (``Message``s, row tuples, packed records) are built inside the timed loop;
- ``prepare`` then ``append``: the input objects built before the clock (the
  "codec only" table), so only the store's own work is timed.

logstore engines also have ``append_pairs`` (``(value, key)`` tuples, where the
build takes them: ``pairs_supported``) and ``read_batches``.

Two ways to read everything back, both returning ``(records, payload_bytes)``
so the harness can check nothing was lost: ``scan_fields`` touches every field
the engine returns (offset, timestamp, key, value, headers for logstore; every
column for SQLite), ``scan`` only the key and value (the "codec only" table).
``open`` opens the store as a writer would after a clean close; ``open_last``
opens it and reads its last record (timed: the reopen workload).
``Settings.fsync`` asks for each batch to be made durable.

Stores that keep one value per record (lmdb, diskcache, persist-queue) get
``pack_record(key, value)``: a 2-byte key length, the key, then the value.

Heavy third-party imports happen inside the engine that needs them, so each
engine's child process pays only for its own libraries in its peak RSS.

To add an engine, subclass ``Engine`` and decorate it with ``@register``.
"""

from __future__ import annotations

import os
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from workload import Batch, Columns

if TYPE_CHECKING:
    import sqlite3

    import lmdb
    import persistqueue

    import logstore

P = TypeVar("P")

#: The SQLite ``synchronous`` settings the harness accepts (without fsync).
SQLITE_SYNC_MODES = ("OFF", "NORMAL")


@dataclass(frozen=True)
class Settings:
    """Knobs shared by every engine (from the command line; ``fsync`` from the workload)."""

    sqlite_synchronous: str = "OFF"
    fsync: bool = False


class Engine(ABC, Generic[P]):
    """One storage engine, writing to and reading from ``directory``."""

    name: ClassVar[str]
    label: ClassVar[str]
    #: Extra environment variables for this engine's child processes.
    env: ClassVar[dict[str, str]] = {}
    #: ``logstore.__speedups__`` the child process must see (logstore engines only).
    speedups: ClassVar[str | None] = None
    #: At most this many records per workload, for engines too slow for the full sizes.
    max_records: ClassVar[int | None] = None
    #: What the engine does per batch when ``Settings.fsync`` is set.
    fsync_note: ClassVar[str] = "`os.fsync` (not `fdatasync`) after each batch's write"

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
        """Open the store, append every prepared batch, close it."""

    @abstractmethod
    def append_loop(self, data: Columns) -> None:
        """Open the store, append every batch building its input in the loop, close it."""

    @abstractmethod
    def scan(self) -> tuple[int, int]:
        """Open the store, read every record's key and value, close it.

        Returns ``(records, payload bytes)``.
        """

    def scan_fields(self) -> tuple[int, int]:
        """``scan``, touching every field the engine returns (the same unless overridden)."""
        return self.scan()

    def open(self) -> Callable[[], None] | None:
        """Open the store and learn where the next record goes; return its ``close``.

        ``None`` means the engine has no store to open (not applicable).
        """
        return None

    def open_last(self) -> Callable[[], None] | None:
        """Open the store and read its last record (every field); return its ``close``.

        ``None`` means the engine cannot find its last record without a scan.
        """
        return None


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
    speedups = "compiled"
    fsync_note = '`fsync="always"`: the segment is fsynced at the end of each `append_many`'

    @classmethod
    def describe(cls, settings: Settings) -> str:
        return (
            f"{cls.label}: codec `{cls.speedups}` (each child checks `logstore.__speedups__`), "
            '`Log.open(dir, LogConfig(fsync="never"))` (`"always"` in the fsync workload), '
            "`append_many` of 1 batch per call: `[Message(v, key=k) for k, v in zip(keys, "
            "values)]` built in the loop (codec only: built before), or `list(zip(values, keys))` "
            "pairs; `scan()` (CRC verified on read, the default) reading `r.offset, r.timestamp, "
            "r.key, r.value, r.headers` (codec only: `r.key, r.value`); reopen is `Log.open`, "
            "open + last record `Log.open` + `read(end_offset - 1, max_records=1)`"
        )

    def _config(self) -> logstore.LogConfig:
        import logstore

        return logstore.LogConfig(fsync="always" if self.settings.fsync else "never")

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

    def append_loop(self, data: Columns) -> None:
        import logstore

        message = logstore.Message
        log = logstore.Log.open(self.directory, self._config())
        try:
            append_many = log.append_many
            for keys, values in data.batches():
                append_many([message(v, key=k) for k, v in zip(keys, values)])
        finally:
            log.close()

    def append_pairs(self, data: Columns) -> None:
        """``append_loop`` with ``(value, key)`` pairs instead of ``Message``s."""
        import logstore

        log = logstore.Log.open(self.directory, self._config())
        try:
            # Typed for the pairs this API takes from issue 14 on; older builds refuse them.
            append_many: Callable[[Any], range] = log.append_many
            for keys, values in data.batches():
                append_many(list(zip(values, keys)))
        finally:
            log.close()

    @staticmethod
    def pairs_supported(directory: str) -> bool:
        """Whether this build's ``append_many`` takes ``(value, key)`` pairs: try it once.

        A build that takes them but stores something else fails loudly.
        """
        import logstore

        with logstore.Log.open(directory) as log:
            try:
                append_many: Callable[[Any], range] = log.append_many
                append_many([(b"value", b"key")])
            except TypeError:
                return False
            (r,) = log.read(0)
        if (r.value, r.key) != (b"value", b"key"):
            raise RuntimeError(f"append_many took a (value, key) pair but stored {r!r}")
        return True

    def scan(self) -> tuple[int, int]:
        import logstore

        count = total = 0
        with logstore.Log.open(self.directory, self._config()) as log:
            for r in log.scan():
                count += 1
                total += len(r.key or b"") + len(r.value or b"")
        return count, total

    def scan_fields(self) -> tuple[int, int]:
        import logstore

        count = total = 0
        last = -1
        with logstore.Log.open(self.directory, self._config()) as log:
            for r in log.scan():
                last = r.offset
                _timestamp = r.timestamp
                key = r.key
                value = r.value
                _headers = r.headers
                count += 1
                total += len(key or b"") + len(value or b"")
        if last != count - 1:
            raise RuntimeError(f"scan ended at offset {last} after {count} records")
        return count, total

    def open(self) -> Callable[[], None]:
        import logstore

        return logstore.Log.open(self.directory, self._config()).close

    def open_last(self) -> Callable[[], None]:
        import logstore

        log = logstore.Log.open(self.directory, self._config())
        (r,) = log.read(log.end_offset - 1, max_records=1)
        _fields = (r.offset, r.timestamp, r.key, r.value, r.headers)
        return log.close

    def read_batches(self, max_bytes: int = 1 << 20) -> tuple[int, int]:
        """Fetch the whole log with ``read_batches``, in order; return ``(batches, bytes)``.

        ``read_batches`` checks each batch's CRC (``verify_crc_on_read``), so the
        headers are parsed here without checking it again.
        """
        import logstore
        from logstore.batch import read_header

        batches = total = offset = 0
        with logstore.Log.open(self.directory, self._config()) as log:
            while buf := log.read_batches(offset, max_bytes):
                pos, end = 0, len(buf)
                while pos < end:
                    header = read_header(buf, pos, verify_crc=False)
                    pos += header.size
                    batches += 1
                offset = header.next_offset
                total += end
        return batches, total

    def read_files(self, chunk_size: int = 1 << 20) -> tuple[int, int]:
        """Read the log's segment files in ``chunk_size`` reads; return ``(files, bytes)``."""
        paths = sorted(p for p in os.listdir(self.directory) if p.endswith(".log"))
        total = 0
        for name in paths:
            with open(os.path.join(self.directory, name), "rb", buffering=0) as f:
                while chunk := f.read(chunk_size):
                    total += len(chunk)
        return len(paths), total


@register
class LogstorePureEngine(LogstoreEngine):
    """logstore with its pure-Python codec: children run with ``LOGSTORE_PURE=1``."""

    name = "logstore-pure"
    label = "logstore (pure)"
    env: ClassVar[dict[str, str]] = {"LOGSTORE_PURE": "1"}
    speedups = "pure"


_LENGTHS = struct.Struct("<II")
_KEY_LENGTH = struct.Struct(">H")
_OFFSET = struct.Struct(">Q")


def pack_record(key: bytes, value: bytes) -> bytes:
    """One record as one blob, for stores that keep a single value per record."""
    return _KEY_LENGTH.pack(len(key)) + key + value


def split_record(blob: bytes) -> tuple[bytes, bytes]:
    """``pack_record`` undone: ``(key, value)``."""
    split = 2 + (blob[0] << 8 | blob[1])
    return blob[2:split], blob[split:]


def count_records(blobs: Iterable[bytes]) -> tuple[int, int]:
    """Split every ``pack_record`` blob into key and value; return ``(records, payload bytes)``."""
    count = total = 0
    for blob in blobs:
        split = 2 + (blob[0] << 8 | blob[1])
        key, value = blob[2:split], blob[split:]
        count += 1
        total += len(key) + len(value)
    return count, total


def blob_batches(batches: list[Batch]) -> list[list[bytes]]:
    return [[pack_record(key, value) for key, value in batch] for batch in batches]


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
            "with `struct.unpack_from` (no offsets, timestamps or checksums); reopen is "
            "`open(path, 'ab')` + `tell()`"
        )

    @property
    def path(self) -> str:
        return os.path.join(self.directory, "records.bin")

    def prepare(self, batches: list[Batch]) -> list[Batch]:
        return batches

    def append(self, prepared: list[Batch]) -> None:
        self._write(prepared)

    def append_loop(self, data: Columns) -> None:
        self._write(zip(keys, values) for keys, values in data.batches())

    def _write(self, batches: Iterable[Iterable[tuple[bytes, bytes]]]) -> None:
        """Pack each batch's records and write them with one ``write`` (both ways alike)."""
        pack = _LENGTHS.pack
        fsync = self.settings.fsync
        with open(self.path, "wb", buffering=0) as f:
            write, fd = f.write, f.fileno()
            for batch in batches:
                parts: list[bytes] = []
                extend = parts.extend
                for key, value in batch:
                    extend((pack(len(key), len(value)), key, value))
                write(b"".join(parts))
                if fsync:
                    os.fsync(fd)

    def open(self) -> Callable[[], None]:
        f = open(self.path, "ab")  # noqa: SIM115 (closed by the caller)
        f.tell()
        return f.close

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
    fsync_note = "`synchronous=FULL` (WAL): the WAL is fsynced at each batch's `COMMIT`"

    @classmethod
    def describe(cls, settings: Settings) -> str:
        import sqlite3

        return (
            f"SQLite {sqlite3.sqlite_version} (stdlib `sqlite3`): `journal_mode=WAL`, "
            f"`synchronous={settings.sqlite_synchronous}` (`FULL` in the fsync workload), table "
            "`(offset INTEGER PRIMARY KEY, key BLOB, value BLOB, ts INTEGER)`, one transaction "
            "per batch of `executemany` (offsets are SQLite-assigned rowids; the row tuples incl. "
            "timestamp built per batch in the loop, codec only: before timing), then `SELECT` of "
            'all rows iterating the cursor (every column); reopen is `connect` + `SELECT max("offset")`, '
            "open + last record `connect` + `SELECT` of the row with the largest offset"
        )

    @property
    def path(self) -> str:
        return os.path.join(self.directory, "log.sqlite")

    def prepare(self, batches: list[Batch]) -> list[list[tuple[bytes, bytes, int]]]:
        ts = int(time.time() * 1000)
        return [[(key, value, ts) for key, value in batch] for batch in batches]

    _INSERT = "INSERT INTO log (key, value, ts) VALUES (?, ?, ?)"

    def _create(self) -> sqlite3.Connection:
        """Connect, set WAL and ``synchronous``, create the table."""
        import sqlite3

        sync = self.settings.sqlite_synchronous
        if sync not in SQLITE_SYNC_MODES:
            raise ValueError(f"sqlite synchronous must be one of {SQLITE_SYNC_MODES}, not {sync}")
        if self.settings.fsync:
            sync = "FULL"
        conn = sqlite3.connect(self.path, isolation_level=None)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise RuntimeError(f"SQLite refused WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute(
            'CREATE TABLE log ("offset" INTEGER PRIMARY KEY, key BLOB, value BLOB, ts INTEGER)'
        )
        return conn

    def append(self, prepared: list[list[tuple[bytes, bytes, int]]]) -> None:
        conn = self._create()
        try:
            execute, executemany, insert = conn.execute, conn.executemany, self._INSERT
            for rows in prepared:
                execute("BEGIN")
                executemany(insert, rows)
                execute("COMMIT")
        finally:
            conn.close()

    def append_loop(self, data: Columns) -> None:
        now: Callable[[], float] = time.time
        conn = self._create()
        try:
            execute, executemany, insert = conn.execute, conn.executemany, self._INSERT
            for keys, values in data.batches():
                ts = int(now() * 1000)
                rows = [(k, v, ts) for k, v in zip(keys, values)]
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

    def open(self) -> Callable[[], None]:
        import sqlite3

        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute('SELECT max("offset") FROM log').fetchone()
        return conn.close

    def open_last(self) -> Callable[[], None]:
        import sqlite3

        conn = sqlite3.connect(self.path, isolation_level=None)
        last = 'SELECT "offset", key, value, ts FROM log ORDER BY "offset" DESC LIMIT 1'
        _offset, _key, _value, _ts = conn.execute(last).fetchone()
        return conn.close


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
            "(length from bytes 8..12) and iterated with `DefaultRecordBatch` (no CRC check); "
            "no reopen (a codec, not a store)"
        )

    @property
    def path(self) -> str:
        return os.path.join(self.directory, "batches.bin")

    def prepare(self, batches: list[Batch]) -> list[Batch]:
        return batches

    def append(self, prepared: list[Batch]) -> None:
        self._write(prepared)

    def append_loop(self, data: Columns) -> None:
        self._write(zip(keys, values) for keys, values in data.batches())

    def _write(self, batches: Iterable[Iterable[tuple[bytes, bytes]]]) -> None:
        """One builder per batch, one ``append`` per record (both ways alike)."""
        from kafka.record.default_records import DefaultRecordBatchBuilder

        now: Callable[[], float] = time.time
        base_offset = 0
        fsync = self.settings.fsync
        with open(self.path, "wb", buffering=0) as f:
            for batch in batches:
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
                count = 0
                for delta, (key, value) in enumerate(batch):
                    if append(delta, timestamp=ts, key=key, value=value, headers=[]) is None:
                        raise RuntimeError("kafka-python builder refused a record")
                    count += 1
                buf = builder.build()
                struct.pack_into(">q", buf, 0, base_offset)
                base_offset += count
                f.write(buf)
                if fsync:
                    os.fsync(f.fileno())

    def scan(self) -> tuple[int, int]:
        count = total = 0
        for batch in self._batches():
            for record in batch:
                count += 1
                total += len(record.key) + len(record.value)
        return count, total

    def scan_fields(self) -> tuple[int, int]:
        count = total = 0
        for batch in self._batches():
            for record in batch:
                _offset, _timestamp = record.offset, record.timestamp
                key, value, _headers = record.key, record.value, record.headers
                count += 1
                total += len(key) + len(value)
        return count, total

    def _batches(self) -> Iterator[Any]:
        """Every stored batch as a ``DefaultRecordBatch``."""
        from kafka.record.default_records import DefaultRecordBatch

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
                yield DefaultRecordBatch(head + body)


@register
class LmdbEngine(Engine[list[list[tuple[bytes, bytes]]]]):
    """LMDB: key = 8-byte big-endian offset, value = ``pack_record(key, value)``."""

    name = "lmdb"
    label = "lmdb"
    map_size = 1 << 36  # address space only: the file grows as pages are written
    fsync_note = "`sync=True` (the default): each batch's write transaction is synced at commit"

    @classmethod
    def describe(cls, settings: Settings) -> str:
        import lmdb

        version = ".".join(map(str, lmdb.version()))
        return (
            f"lmdb {lmdb.__version__} (LMDB {version}): `lmdb.open(dir, sync=False)` "
            "(`sync=True`, the default, in the fsync workload), one write transaction per batch "
            "of `txn.put(offset, record, append=True)` (the 8-byte offset and the record, a "
            "2-byte key length + key + value, packed per record in the loop; codec only: before "
            "timing); scan iterates `txn.cursor()` in a read transaction and splits each value "
            "into key and value (every field: the offset key too, as bytes); reopen is "
            "`lmdb.open` + `cursor.last()` for the next offset, open + last record the same "
            "reading the last value and splitting it"
        )

    def _open(self, readonly: bool = False) -> lmdb.Environment:
        import lmdb

        return lmdb.open(
            self.directory, map_size=self.map_size, sync=self.settings.fsync, readonly=readonly
        )

    def prepare(self, batches: list[Batch]) -> list[list[tuple[bytes, bytes]]]:
        out: list[list[tuple[bytes, bytes]]] = []
        offset = 0
        for batch in batches:
            out.append(
                [
                    ((offset + i).to_bytes(8, "big"), pack_record(k, v))
                    for i, (k, v) in enumerate(batch)
                ]
            )
            offset += len(batch)
        return out

    def append(self, prepared: list[list[tuple[bytes, bytes]]]) -> None:
        env = self._open()
        try:
            for items in prepared:
                with env.begin(write=True) as txn:
                    put = txn.put
                    for key, blob in items:
                        put(key, blob, append=True)
        finally:
            env.close()

    def append_loop(self, data: Columns) -> None:
        pack_offset, pack_length = _OFFSET.pack, _KEY_LENGTH.pack
        env = self._open()
        try:
            offset = 0
            for keys, values in data.batches():
                with env.begin(write=True) as txn:
                    put = txn.put
                    for k, v in zip(keys, values):
                        put(pack_offset(offset), pack_length(len(k)) + k + v, append=True)
                        offset += 1
        finally:
            env.close()

    def scan(self) -> tuple[int, int]:
        env = self._open(readonly=True)
        try:
            with env.begin() as txn:
                return count_records(txn.cursor().iternext(keys=False, values=True))
        finally:
            env.close()

    def scan_fields(self) -> tuple[int, int]:
        count = total = 0
        env = self._open(readonly=True)
        try:
            with env.begin() as txn:
                for _offset, blob in txn.cursor():
                    split = 2 + (blob[0] << 8 | blob[1])
                    key, value = blob[2:split], blob[split:]
                    count += 1
                    total += len(key) + len(value)
        finally:
            env.close()
        return count, total

    def open(self) -> Callable[[], None]:
        env = self._open()
        with env.begin() as txn:
            cursor = txn.cursor()
            if cursor.last():
                int.from_bytes(cursor.key(), "big")  # the last offset; the next is one more
        return env.close

    def open_last(self) -> Callable[[], None]:
        env = self._open()
        with env.begin() as txn:
            cursor = txn.cursor()
            if not cursor.last():
                raise RuntimeError(f"no records in {self.directory}")
            _offset = int.from_bytes(cursor.key(), "big")
            _key, _value = split_record(cursor.value())
        return env.close


@register
class DiskcacheEngine(Engine[list[list[bytes]]]):
    """``diskcache.Deque`` (SQLite underneath), with its default settings."""

    name = "diskcache"
    label = "diskcache.Deque"
    max_records = 30_000
    fsync_note = (
        "as it comes: `sqlite_synchronous=1` (NORMAL) in WAL mode, so no fsync at commit "
        "(only at WAL checkpoints)"
    )

    @classmethod
    def describe(cls, settings: Settings) -> str:
        from importlib.metadata import version

        return (
            f"diskcache {version('diskcache')}: `Deque(directory=dir)` with the default settings "
            "(SQLite WAL, `synchronous=NORMAL`), `extend(records)` inside `deque.transact()` "
            "per batch; scan iterates the deque; reopen is `Deque(directory=dir)` + `len()`. "
            f"Capped at {cls.max_records:,} records per workload (slow)"
        )

    def prepare(self, batches: list[Batch]) -> list[list[bytes]]:
        return blob_batches(batches)

    def _deque(self) -> Any:
        from diskcache import Deque  # type: ignore[import-untyped]

        return Deque(directory=self.directory)

    def append(self, prepared: list[list[bytes]]) -> None:
        self._extend(prepared)

    def append_loop(self, data: Columns) -> None:
        pack = pack_record
        self._extend([pack(k, v) for k, v in zip(keys, values)] for keys, values in data.batches())

    def _extend(self, batches: Iterable[list[bytes]]) -> None:
        deque = self._deque()
        try:
            for blobs in batches:
                with deque.transact():
                    deque.extend(blobs)
        finally:
            deque.cache.close()

    def scan(self) -> tuple[int, int]:
        deque = self._deque()
        try:
            return count_records(deque)
        finally:
            deque.cache.close()

    def open(self) -> Callable[[], None]:
        deque = self._deque()
        len(deque)
        close: Callable[[], None] = deque.cache.close
        return close


@register
class PersistQueueEngine(Engine[list[list[bytes]]]):
    """persist-queue's file-based ``Queue``: append-only chunk files of pickled items."""

    name = "persist-queue"
    label = "persist-queue Queue"
    max_records = 2_000
    fsync_note = (
        "as it comes: each `put` flushes and atomically replaces the `info` file (no fsync); "
        "a chunk file is fsynced when it fills (`chunksize=100` records)"
    )

    @classmethod
    def describe(cls, settings: Settings) -> str:
        from importlib.metadata import version

        return (
            f"persist-queue {version('persist-queue')}: the file-based `persistqueue.Queue(path, "
            "tempdir=dir)` (defaults otherwise: `chunksize=100`, pickle, `autosave=False`), one "
            "`put` per record (it has no batch put); scan `get`s every item without "
            "`task_done`, so the queue on disk is left as it was; reopen is `Queue(...)` + "
            f"`qsize()`. Capped at {cls.max_records:,} records per workload (slow). Chosen over "
            "its `SQLiteQueue`, a table that commits every `put` as well"
        )

    def prepare(self, batches: list[Batch]) -> list[list[bytes]]:
        return blob_batches(batches)

    def _queue(self) -> persistqueue.Queue:
        from persistqueue import Queue

        # tempdir on the same disk, as the documentation asks, for atomic renames
        return Queue(os.path.join(self.directory, "queue"), tempdir=self.directory)

    def append(self, prepared: list[list[bytes]]) -> None:
        put = self._queue().put
        for blobs in prepared:
            for blob in blobs:
                put(blob)

    def append_loop(self, data: Columns) -> None:
        put, pack = self._queue().put, pack_record
        for keys, values in data.batches():
            for k, v in zip(keys, values):
                put(pack(k, v))

    def scan(self) -> tuple[int, int]:
        queue = self._queue()
        get = queue.get_nowait
        return count_records(get() for _ in range(queue.qsize()))

    def open(self) -> Callable[[], None]:
        queue = self._queue()
        queue.qsize()
        return lambda: None  # it has no close(): its files close when it is collected
