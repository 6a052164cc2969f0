"""``Log``: one partition: the lock, open/close, the public methods; the work is delegated.

Kafka's ``UnifiedLog``, thin: owns the one lock that orders changes to the
partition, and the closed state. Delegates: taking the directory to ``opener``,
input checks and batch planning to ``validator``, segments, offsets and
checkpoints to its ``LocalLog``, reads to ``reader`` over a snapshot taken
under the lock (bytes below a snapshot's end never change in place), and
retention, compaction and their scheduling to its ``Housekeeping``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from . import model, opener, reader, validator
from ._fs import Closing, DirectoryLock, HandleCache
from .config import LogConfig
from .configrecord import recorded_config
from .errors import InvalidRecordError, RecordTooLarge
from .fileranges import FileRanges
from .housekeeping import Housekeeping
from .loader import LoadResult, RecoveryAction
from .local import LocalLog
from .maintenance import Maintenance
from .model import CompactionResult, Header, Message, Record, RetentionResult, SegmentInfo
from .producer import Producing
from .transactions import Isolation, Markers, check_isolation

Clock = Callable[[], int]
#: The same defaults as ``Broker.open``: a standalone log is bounded as a broker's are.
DEFAULT_MAX_OPEN_FILES = 1024
DEFAULT_MAINTENANCE_INTERVAL_MS = 60_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Log(Closing, Producing):
    """An append-only, segmented partition log in Kafka's on-disk format.

    Safe to use from several threads. One process at a time may open a
    directory (``LogLockedError`` otherwise). Use ``Log.open``; ``producer``
    (``Producing``) batches records sent from many threads.
    """

    def __init__(
        self,
        path: str,
        config: LogConfig,
        loaded: LoadResult,
        lock: DirectoryLock,
        clock: Clock,
        handles: HandleCache | None = None,
        *,
        maintenance_interval_ms: int | None = None,
        maintenance: Maintenance | None = None,
    ) -> None:
        self._path = path
        self._config = config
        self._dir_lock = lock
        self._lock = threading.RLock()
        self._closed = False
        self._local = LocalLog(
            path, config, loaded, handles=handles, clock=clock, abandon=self._abandon
        )
        self.recovery_actions: tuple[RecoveryAction, ...] = tuple(loaded.actions)
        self._housekeeping = Housekeeping(
            self._local, self._lock, maintenance, interval_ms=maintenance_interval_ms
        )
        self._read_options = reader.ReadOptions(
            config.verify_crc_on_read,
            self._local.contiguous,
            self._housekeeping.repair_indexes,
            Markers(),
        )

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        config: LogConfig | None = None,
        *,
        clock: Clock | None = None,
        handles: HandleCache | None = None,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
        maintenance_interval_ms: int | None = DEFAULT_MAINTENANCE_INTERVAL_MS,
        maintenance: Maintenance | None = None,
        record_config: bool = True,
    ) -> Log:
        """Open (creating if needed) the log in directory ``path``.

        ``max_open_files`` bounds the open ``.log`` handles of its segments,
        active one included (least recently used closed first, reopened on next
        use; one whose data waits for an fsync stays open until then); the lock
        file is held besides. ``handles`` (a ``Broker``'s, shared by its logs)
        replaces that bound.

        A maintenance thread applies retention and, where due, compaction every
        ``maintenance_interval_ms`` (``None`` or 0: no periodic pass), so an idle
        log still honours its limits. It also runs what a roll makes due
        (retention of the sealed segments, compaction past
        ``min_cleanable_dirty_ratio``) soon after the roll, never inside the
        append, and the ``fsync="interval"`` fsyncs. It starts when first
        needed; ``close`` stops and joins it. It is the log's own unless
        ``maintenance`` (one shared by several logs, as a ``Broker``'s) is passed.

        ``config`` is recorded in the directory (``recorded_config``) when it
        changed, unless ``record_config`` is false (a tool borrowing the settings).
        After an unclean shutdown every batch after the recovery point is
        validated: with ``recovery="truncate"`` an invalid tail is moved to a
        ``.corrupt-<position>`` file and cut; with ``"fail"`` ``CorruptLogError``
        is raised and nothing changes.

        Raises:
            LogLockedError: another ``Log`` holds the directory.
            CorruptLogError: recovery failed, or the data is in a legacy format.
            ConfigError: ``max_open_files`` or ``maintenance_interval_ms`` is out of range.
            NotALogError: ``path`` is a file or a broker root.
        """
        config = LogConfig() if config is None else config
        opener.check_options(config, max_open_files, maintenance_interval_ms)
        directory, lock, loaded = opener.open_dir(path, config, record_config=record_config)
        try:
            return cls(
                directory,
                config,
                loaded,
                lock,
                clock or wall_clock_ms,
                HandleCache(max_open_files) if handles is None else handles,
                maintenance_interval_ms=maintenance_interval_ms,
                maintenance=maintenance,
            )
        except BaseException:
            lock.release()
            raise

    #: ``configrecord.recorded_config``: the config the log in a path was last opened with.
    recorded_config = staticmethod(recorded_config)

    #: ``opener.recover``: crash recovery on a closed log, now (``logstore recover``).
    recover = staticmethod(opener.recover)

    def __repr__(self) -> str:
        local = self._local
        state = "closed" if self._closed else f"[{local.start_offset}, {local.end_offset})"
        return f"<logstore.Log {self._path} {state}>"

    # ------------------------------------------------------------ properties

    @property
    def path(self) -> str:
        return self._path

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def start_offset(self) -> int:
        """First offset still held."""
        return self._local.start_offset

    @property
    def end_offset(self) -> int:
        """Next offset to be assigned."""
        return self._local.end_offset

    @property
    def flushed_offset(self) -> int:
        """Every record below this offset is on stable storage."""
        return self._local.flushed_offset

    @property
    def size_bytes(self) -> int:
        """Bytes of all ``.log`` segment files."""
        with self._lock:
            return sum(s.size for s in self._local.segments)

    @property
    def segments(self) -> list[SegmentInfo]:
        """One ``SegmentInfo`` per segment, oldest first (reads headers of sealed segments once)."""
        with self._lock:
            self._check_open()
            return self._local.infos()

    def _closed_message(self) -> str:
        return f"log {self._path} is closed"

    # ------------------------------------------------------------ appending

    def append(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[Header] = (),
        timestamp: int | None = None,
    ) -> int:
        """Append one record; return its offset. Durable on return with ``fsync="always"``."""
        return self.append_many((Message(value, key, tuple(headers), timestamp),)).start

    def append_many(self, messages: Iterable[model.AppendItem]) -> range:
        """Append ``bytes`` values, ``Message``s, ``(value, key)`` pairs with consecutive offsets.

        A pair (no headers, the log's clock) needs no ``Message``. Records go into as
        few batches as ``max_message_bytes`` (and ``segment_messages``) allow; each batch
        is all-or-nothing on disk. With ``fsync="always"`` everything is on stable
        storage when this returns.

        Raises:
            TypeError: an item or field of the wrong type (for a pair: naming its index).
            RecordTooLarge: a single record's batch exceeds ``max_message_bytes``.
            InvalidRecordError: a record without a key in a compacted log.
            OSError: the write failed; nothing of the failed batch is kept.
        """
        now = self._local.clock()
        try:
            entries = validator.prepare(messages, compacted=self._config.compacted)
            return self._append(lambda local: local.append_entries(entries, now))
        except (RecordTooLarge, InvalidRecordError) as exc:
            raise self._local.named(exc) from None

    def _append_groups(self, groups: list[list[bytes | Message]]) -> list[range | Exception]:
        """Group commit for a producer's writer: ``LocalLog.append_groups`` under the lock."""
        prepared = validator.prepare_each(groups, compacted=self._config.compacted)
        now, results = self._local.clock(), list[range | Exception]()
        self._append(lambda local: results.extend(local.append_groups(prepared, now)))
        return results

    def _append(self, write: Callable[[LocalLog], None]) -> range:
        """Run ``write`` under the lock; hand a roll it made to housekeeping once unlocked."""
        local = self._local
        with self._lock:
            self._check_open()
            rolls, base = local.rolls, local.end_offset
            write(local)
            end = local.end_offset
        if local.rolls != rolls:
            self._housekeeping.rolled()
        return range(base, end)

    def append_batches(self, buf: bytes | bytearray | memoryview) -> range:
        """Append already-encoded v2 batches, assigning offsets; return the offsets used.

        Each batch is validated (header, CRC, records) and its base offset is
        rewritten to the log's end offset; the base offset is outside the CRC,
        so nothing is re-checksummed. Batches are written as they are otherwise
        (codec, producer fields, attributes kept).

        Raises:
            CorruptLogError: a batch is invalid (position relative to ``buf``).
            RecordTooLarge: a batch exceeds ``max_message_bytes``.
        """
        data = bytearray(buf)
        try:
            headers = validator.check_batches(data, self._config)
        except (RecordTooLarge, InvalidRecordError) as exc:
            raise self._local.named(exc) from None
        return self._append(lambda local: local.append_stored(data, headers))

    def roll(self) -> None:
        """Start a new active segment now (no-op if the active one is empty)."""
        with self._lock:
            self._check_open()
            if not self._local.segments.active.size:
                return
            self._local.roll()
        self._housekeeping.rolled()

    # ------------------------------------------------------------ housekeeping

    def compact(
        self,
        *,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> CompactionResult:
        """Compact now, whatever the dirty ratio: keep the newest record of each key.

        Never touches the active segment or anything younger than
        ``min_compaction_lag_ms``; offsets and timestamps never change.
        Tombstones stay ``delete_retention_ms`` after the compaction that first
        kept them, then go. Appends and reads go on meanwhile: the rewritten
        segments are swapped in crash-safely under the lock (readers inside a
        replaced one finish reading it). Rounds repeat while the dirty part has
        more keys than ``compaction_memory_bytes`` maps at once. ``progress`` is
        called with 1 per segment rewritten. ``dry_run`` changes nothing and
        says what the first round would remove.

        Raises:
            ConfigError: the log's ``cleanup_policy`` does not include ``compact``.
        """
        return self._housekeeping.compact(dry_run=dry_run, progress=progress)

    def dirty_ratio(self) -> float:
        """The share of the log's bytes not yet compacted (what auto-compaction compares)."""
        return self._housekeeping.dirty_ratio()

    def apply_retention(self, *, dry_run: bool = False) -> RetentionResult:
        """Delete the oldest segments that the retention limits allow; say what went and why.

        The active segment is judged as a sealed one is: when every segment is
        due, it is rolled first and deleted too (Kafka's rule), leaving one empty
        segment, ``start_offset == end_offset`` (offsets never go back; ``rolled``
        says so). The ``archive`` hook gets each segment first, outside the lock
        (appends and reads go on); if it fails, that segment and every later one
        stay (only a prefix ever goes) and the failure is in ``errors``. A segment
        a truncation or compaction changed while the hook ran stays until the next
        pass. ``dry_run`` changes nothing (nothing is rolled) and says what would
        go under which rule. Files are renamed to ``.deleted`` (removed by the
        next open after a crash), then unlinked.
        """
        return self._housekeeping.apply_retention(dry_run=dry_run)

    def flush(self) -> None:
        """fsync everything appended so far; ``flushed_offset`` becomes ``end_offset``."""
        with self._lock:
            self._check_open()
            self._local.flush()
            self._local.write_recovery_point()

    def run_maintenance(self) -> None:
        """Apply retention and, where due, compaction now: what the periodic pass does.

        Archive-hook failures are logged as warnings (and keep their segments).
        """
        self._housekeeping.run_pass()

    # ------------------------------------------------------------ reading

    def read(
        self,
        offset: int,
        *,
        max_records: int | None = None,
        max_bytes: int | None = None,
        isolation: Isolation = "read_committed",
    ) -> list[Record]:
        """Records from ``offset`` on, at most ``max_records`` and about ``max_bytes``.

        ``max_bytes`` bounds the encoded size of the batches read, but at least
        one record is returned when any exists. Reading at ``end_offset`` gives ``[]``.
        ``isolation`` matters only for transactional data a Kafka producer wrote
        (``transactions``): ``"read_committed"`` serves what Kafka's
        ``read_committed`` consumer would, ``"read_uncommitted"`` also the
        records of aborted and unended transactions. Control batches never.

        Raises:
            OffsetOutOfRange: ``offset`` is below ``start_offset`` or above ``end_offset``.
            CorruptLogError: a batch on the way failed its checks (file and position named).
        """
        validator.check_int("offset", offset)
        validator.check_limit("max_records", max_records)
        validator.check_limit("max_bytes", max_bytes)
        check_isolation(isolation)
        with self._lock:
            self._check_open()
            snapshot, end_offset = self._local.read_snapshot(offset), self._local.end_offset
        if not snapshot or max_records == 0:
            return []
        return reader.read(
            snapshot,
            offset,
            end_offset,
            self._read_options,
            max_records=max_records,
            max_bytes=max_bytes,
            isolation=isolation,
        )

    def read_batches(self, offset: int, max_bytes: int = 1 << 20) -> bytes:
        """Whole batches, as stored, from the batch holding ``offset``: a broker's fetch.

        Consecutive v2 batches (possibly of several segments), not decoded,
        ready to send on a socket. The first may start before ``offset``
        (batches are not split: the receiver skips the records it did not ask
        for, as Kafka consumers do), and may hold records compaction removed.
        At least one batch is returned when any exists, even one larger than
        ``max_bytes``; then batches while the total stays within it. CRCs are
        checked when ``verify_crc_on_read`` is set. At ``end_offset``: ``b""``.

        Raises:
            OffsetOutOfRange: ``offset`` is below ``start_offset`` or above ``end_offset``.
            CorruptLogError: a batch on the way failed its checks.
        """
        return reader.read_batches(*self._fetch(offset, max_bytes))

    def batch_ranges(self, offset: int, max_bytes: int = 1 << 20) -> FileRanges:
        """``read_batches``' batches, checked and raising as it does, as ``FileRanges``."""
        return reader.batch_ranges(*self._fetch(offset, max_bytes))

    def _fetch(
        self, offset: int, max_bytes: int
    ) -> tuple[reader.Snapshot, int, int, reader.ReadOptions]:
        validator.check_int("offset", offset)
        validator.check_limit("max_bytes", max_bytes, optional=False)
        with self._lock:
            self._check_open()
            return self._local.read_snapshot(offset), offset, max_bytes, self._read_options

    def scan(
        self,
        start_offset: int | None = None,
        end_offset: int | None = None,
        *,
        isolation: Isolation = "read_committed",
    ) -> Iterator[Record]:
        """Iterate records in ``[start_offset, end_offset)``, batch by batch.

        Memory stays flat however large the log is. The range is fixed when
        iteration starts: records appended later are not included.
        ``isolation`` as for ``read``.
        """
        check_isolation(isolation)
        with self._lock:
            self._check_open()
            snapshot, start, end = self._local.scan_snapshot(start_offset, end_offset)
        return reader.scan(snapshot, start, end, self._read_options, isolation)

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """First offset whose record timestamp is >= ``timestamp_ms``; ``None`` if there is none.

        The time index (no checksum) only says where to start: its entry is
        confirmed against the log, and when the log says otherwise the segment
        is searched from its start (and the index rebuilt), so the answer never
        depends on the index being right.
        """
        validator.check_int("timestamp_ms", timestamp_ms)
        with self._lock:
            self._check_open()
            start, end = self._local.start_offset, self._local.end_offset
            snapshot = self._local.snapshot(start)
        return reader.offset_for_timestamp(snapshot, timestamp_ms, start, end, self._read_options)

    def truncate(self, offset: int) -> None:
        """Drop every record with offset >= ``offset`` (no-op at or past ``end_offset``).

        A batch holding ``offset`` is rewritten with only its records below it.

        Raises:
            OffsetOutOfRange: ``offset`` is below ``start_offset``.
        """
        validator.check_int("offset", offset)
        with self._lock:
            self._check_open()
            self._local.truncate(offset)
            self._read_options.markers.forget()  # a segment was cut in place

    def delete_before(self, offset: int) -> None:
        """Advance ``start_offset`` to ``offset``; whole segments below it are deleted.

        Raises:
            OffsetOutOfRange: ``offset`` is above ``end_offset``.
        """
        validator.check_int("offset", offset)
        with self._lock:
            self._check_open()
            self._local.delete_before(offset)

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Flush, seal the active segment, write checkpoints and the clean-shutdown marker.

        Idempotent. The log's maintenance tasks are dropped first, and one in
        progress is waited for (outside the lock, which it needs to finish):
        its own thread is stopped and joined, a shared one keeps running. The
        marker is written last, so a crash during close counts as unclean.
        Open producers are closed first: every record they were sent is written.
        """
        self._close_producers()
        self._housekeeping.stop(timeout=60)  # bounded: a hung archive hook must not hang close
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._local.close()
            finally:
                self._dir_lock.release()

    def _abandon(self) -> None:
        """Close without the clean-shutdown marker (after a write that could not be undone)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._housekeeping.stop(timeout=0)  # its tasks see the log closed; stop, not join
            self._local.close_files()
            self._dir_lock.release()
