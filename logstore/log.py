"""``Log``: one partition: the lock, open/close, the public methods; the work is delegated.

Owns the one lock that orders changes to the partition, offset assignment and
the offsets it keeps (start, end, flushed, cleaner). Delegates: input checks and
batch planning to ``validator``, the segment map (roll, remove, replace,
truncate) to ``segments``, reads to ``reader`` over a snapshot taken under the
lock (bytes below a snapshot's end never change in place), compaction rounds to
``cleaner``, retention passes to ``retention``, checkpoint and marker files to
``checkpoints``, loading to ``loader``, and scheduling to ``maintenance``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from . import batch, cleaner, compression, reader, retention, validator
from ._dirkind import refuse_other_kind
from ._fs import (
    CLEANER_CHECKPOINT_FILE,
    LOG_START_FILE,
    RECOVERY_POINT_FILE,
    Closing,
    DirectoryLock,
    HandleCache,
    make_dirs,
)
from .batch import BatchSpan, Entry
from .checkpoints import partition_name, write_clean_shutdown, write_offset_checkpoint
from .config import LogConfig
from .configrecord import read_config_record, write_config_record
from .errors import (
    ConfigError,
    InvalidRecordError,
    LogClosedError,
    LogStoreError,
    OffsetOutOfRange,
    RecordTooLarge,
    WrongTypeError,
)
from .loader import (
    FlushedDamageError,
    LoadResult,
    RecoveryAction,
    RecoveryActionKind,
    load,
)
from .maintenance import Maintenance
from .model import (
    CompactionResult,
    Header,
    Message,
    Record,
    RetentionResult,
    SegmentInfo,
)
from .segment import Segment, SegmentSettings
from .segments import Segments

Clock = Callable[[], int]
logger = logging.getLogger(__name__)
#: The same defaults as ``Broker.open``: a standalone log is bounded as a broker's are.
DEFAULT_MAX_OPEN_FILES = 1024
DEFAULT_MAINTENANCE_INTERVAL_MS = 60_000


def _check_open_options(max_open_files: object, maintenance_interval_ms: object) -> None:
    if type(max_open_files) is not int or max_open_files < 1:
        raise ConfigError(f"max_open_files must be an integer >= 1, got {max_open_files!r}")
    if maintenance_interval_ms is not None and (
        type(maintenance_interval_ms) is not int or maintenance_interval_ms < 0
    ):
        raise ConfigError(
            "maintenance_interval_ms must be an integer >= 0 (0 or None: no maintenance "
            f"thread), got {maintenance_interval_ms!r}"
        )


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Log(Closing):
    """An append-only, segmented partition log in Kafka's on-disk format.

    Safe to use from several threads. One process at a time may open a
    directory (``LogLockedError`` otherwise). Use ``Log.open``.
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
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        self._codec = compression.CODEC_IDS[config.compression]
        # Never compacted: batches follow each other with no gap (reads check it).
        self._contiguous = loaded.contiguous
        self._read_options = reader.ReadOptions(
            config.verify_crc_on_read, self._contiguous, self._repair_indexes
        )
        self._handles = handles
        self._segments = Segments(
            path,
            loaded.segments,
            settings=SegmentSettings.of(config),
            fsync=config.fsync != "never",
            handles=handles,
            contiguous=self._contiguous,
        )
        self._start_offset = loaded.start_offset
        self._end_offset = self._segments.active.next_offset
        if self._end_offset < self._start_offset:
            # Recovery cut below the start (records were deleted, then a crash lost the
            # tail): as Kafka does, start over empty at the start offset.
            logger.info(
                "%s: recovery ended below the log start: empty from offset %d",
                path,
                self._start_offset,
            )
            self._segments.reset(self._start_offset)
            self._end_offset = self._start_offset
        self._flushed_offset = min(max(loaded.recovery_point, self._start_offset), self._end_offset)
        if loaded.clean:
            self._flushed_offset = self._end_offset
        self._unflushed_messages = 0
        self._cleaner_lock = threading.Lock()
        self._retention_lock = threading.Lock()
        self._cleaner_offset = loaded.cleaner_offset
        self._truncations = 0
        self._last_flush_ms = clock()
        self._topic_partition = partition_name(path)
        self.recovery_actions: tuple[RecoveryAction, ...] = tuple(loaded.actions)
        #: Rolls so far: an append that rolled runs the housekeeping due after releasing the lock.
        self._rolls = 0
        #: Passes of the background maintenance so far; ``_maintained`` is notified after each.
        self._maintenance_passes = 0
        self._maintained = threading.Condition()
        interval_ms = maintenance_interval_ms or None
        self._maintenance: Maintenance | None = None
        self._owns_maintenance = False
        if config.fsync == "interval" or interval_ms is not None:
            self._owns_maintenance = maintenance is None
            self._maintenance = maintenance or Maintenance(f"logstore-maintenance-{path}")
            if config.fsync == "interval":
                self._maintenance.every(config.fsync_interval_ms, self._interval_flush, owner=self)
            if interval_ms is not None:
                self._maintenance.every(interval_ms, self._maintenance_pass, owner=self)

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

        ``max_open_files`` bounds the open ``.log`` handles of the log's
        segments, active one included (least recently used closed first and
        reopened on next use; a handle whose data waits for an fsync stays open
        until then); the lock file is held open besides. ``handles`` (a
        ``HandleCache``, shared by a ``Broker`` across its logs) replaces that
        bound with a shared one.

        A background thread applies retention and, where due, compaction every
        ``maintenance_interval_ms`` (``None`` or 0: no thread), so an idle log
        still honours its limits; it is stopped and joined by ``close``. With
        ``fsync="interval"`` the same thread does the interval fsyncs. The
        thread is a ``Maintenance`` of the log's own unless ``maintenance`` (one
        shared by several logs, as a ``Broker`` does) is passed.

        ``config`` is recorded in the directory (see ``recorded_config``) when it
        changed, unless ``record_config`` is false (a tool borrowing the log's settings).

        After an unclean shutdown every batch after the recovery point is
        validated; with ``recovery="truncate"`` an invalid tail is moved to a
        ``.corrupt-<position>`` file and cut, with ``"fail"`` ``CorruptLogError``
        is raised and nothing changes.

        Raises:
            LogLockedError: another ``Log`` holds the directory.
            CorruptLogError: recovery failed, or the data is in a legacy format.
            ConfigError: ``max_open_files`` or ``maintenance_interval_ms`` is out of range.
            NotALogError: ``path`` is a file or a broker root.
        """
        if config is None:
            config = LogConfig()
        elif not isinstance(config, LogConfig):
            raise WrongTypeError(f"config must be a LogConfig, not {type(config).__name__}")
        _check_open_options(max_open_files, maintenance_interval_ms)
        if handles is None:
            handles = HandleCache(max_open_files)
        directory = os.fspath(path)
        refuse_other_kind(directory, "log")
        make_dirs(directory)  # durable: fsyncs each new entry's parent
        lock = DirectoryLock(directory)
        try:
            loaded = load(directory, config)
            if record_config:
                write_config_record(directory, config)
            return cls(
                directory,
                config,
                loaded,
                lock,
                clock or wall_clock_ms,
                handles,
                maintenance_interval_ms=maintenance_interval_ms,
                maintenance=maintenance,
            )
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def recorded_config(path: str | os.PathLike[str]) -> LogConfig | None:
        """The config ``Log.open`` last opened the log in ``path`` with (``archive`` aside).

        Lets a tool that opens a log by its path (``logstore compact``) apply the
        log's own cleanup policy and compaction settings. ``None`` when nothing
        was recorded (a log written by an older version, or by Kafka). Fields a
        newer version recorded and this one does not know are ignored.

        Raises:
            ConfigError: the record is not readable JSON of valid settings.
        """
        return read_config_record(os.fspath(path))

    @classmethod
    def recover(
        cls,
        path: str | os.PathLike[str],
        config: LogConfig | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        rebuild_indexes: Iterable[int] = (),
    ) -> list[RecoveryAction]:
        """Run crash recovery on a closed log now; return what it changed (or would change).

        The same recovery as an unclean open: validate every batch from the
        recovery point, quarantine and cut a bad tail, rebuild indexes. Damage
        below the recovery point is only reported, unless ``force``, which
        validates from the first segment and cuts at the first bad byte
        (quarantining everything cut). ``dry_run`` changes nothing.
        ``rebuild_indexes`` names segments (by base offset) whose indexes were
        found wrong (``diagnostics.check_indexes``): they are rebuilt from the
        ``.log`` even below the recovery point, where recovery does not look.

        Raises:
            LogLockedError: the log is open elsewhere.
            CorruptLogError: the data is in a legacy format.
            NotALogError: ``path`` is a file or a broker root.
        """
        config = LogConfig() if config is None else config
        directory = os.fspath(path)
        if not os.path.isdir(directory):
            raise FileNotFoundError(2, "no such log directory", directory)
        refuse_other_kind(directory, "log")
        lock = DirectoryLock(directory)
        try:
            try:
                loaded = load(
                    directory,
                    dataclasses.replace(config, recovery="truncate"),
                    dry_run=dry_run,
                    assume_unclean=True,
                    force=force,
                )
            except FlushedDamageError as damage:
                lock.release()  # nothing of the damaged segment changed: report it only
                return damage.actions
            if dry_run:
                for seg in loaded.segments:
                    seg.close_file()
                lock.release()
                return loaded.actions
            log = cls(directory, config, loaded, lock, wall_clock_ms)
        except BaseException:
            lock.release()
            raise
        actions = list(loaded.actions)
        try:
            for base in rebuild_indexes:
                wrong = log._segments.get(base)
                if wrong is not None:
                    wrong.rebuild_indexes()
                    reason = "entries did not match the log"
                    actions.append(
                        RecoveryAction(wrong.index_path, RecoveryActionKind.REBUILD_INDEX, reason)
                    )
        finally:
            log.close()
        return actions

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"[{self._start_offset}, {self._end_offset})"
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
        return self._start_offset

    @property
    def end_offset(self) -> int:
        """Next offset to be assigned."""
        return self._end_offset

    @property
    def flushed_offset(self) -> int:
        """Every record below this offset is on stable storage."""
        return self._flushed_offset

    @property
    def size_bytes(self) -> int:
        """Bytes of all ``.log`` segment files."""
        with self._lock:
            return sum(s.size for s in self._segments)

    @property
    def segments(self) -> list[SegmentInfo]:
        """One ``SegmentInfo`` per segment, oldest first (reads headers of sealed segments once)."""
        with self._lock:
            self._check_open()
            segs = list(self._segments)
            return [
                SegmentInfo(
                    base_offset=s.base_offset,
                    next_offset=s.next_offset,
                    records=s.records,
                    size_bytes=s.size,
                    first_timestamp=s.first_timestamp if s.size else None,
                    max_timestamp=s.max_timestamp,
                    path=s.log_path,
                )
                for s in segs
            ]

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

    def append_many(self, messages: Iterable[bytes | Message]) -> range:
        """Append records (``bytes`` values or ``Message``s) with consecutive offsets.

        Records go into as few batches as ``max_message_bytes`` (and
        ``segment_messages``) allow; each batch is all-or-nothing on disk. With
        ``fsync="always"`` everything is on stable storage when this returns.

        Raises:
            TypeError: an item or field of the wrong type.
            RecordTooLarge: a single record's batch exceeds ``max_message_bytes``.
            InvalidRecordError: a record without a key in a compacted log.
            OSError: the write failed; nothing of the failed batch is kept.
        """
        now = self._clock()
        try:
            entries = validator.prepare(messages, compacted=self._config.compacted)
        except InvalidRecordError as exc:
            raise self._named(exc) from None
        with self._lock:
            self._check_open()
            rolls = self._rolls
            base = self._end_offset
            if not entries:
                return range(base, base)
            try:
                plan = self._plan(entries, now, 0)
            except (RecordTooLarge, InvalidRecordError) as exc:
                raise self._named(exc) from None
            done = 0
            for k in itertools.count():
                if k >= len(plan):
                    break
                data, count, max_ts = plan[k]
                last_offset = self._end_offset + count - 1
                before = self._segments.active
                segment = self._maybe_roll(len(data), max_ts, last_offset)
                self._write(segment, data, BatchSpan(len(data), last_offset, max_ts), count)
                self._end_offset = last_offset + 1
                done += count
                if segment is not before and self._config.segment_messages is not None:
                    # An unplanned roll (size, age, index) changes the room left under
                    # segment_messages: plan the rest again. Records that fit before
                    # still fit, so RecordTooLarge cannot arise here.
                    plan[k + 1 :] = self._plan(entries, now, done)
            end = self._end_offset
            self._after_append(end - base, now)
        if self._rolls != rolls:
            self._after_roll()
        return range(base, end)

    def _named(self, exc: RecordTooLarge | InvalidRecordError) -> LogStoreError:
        """The same refusal, naming this log (the validator knows no paths)."""
        return type(exc)(f"{self._path}: {exc}")

    def _plan(self, entries: list[Entry], now: int, start: int) -> list[validator.Planned]:
        """Under the lock: ``validator.plan`` from the log's end and active segment."""
        return validator.plan(
            entries,
            config=self._config,
            codec=self._codec,
            now=now,
            start=start,
            base_offset=self._end_offset,
            active_records=self._segments.active.records,
        )

    def _write(self, segment: Segment, data: bytes, span: BatchSpan, record_count: int) -> None:
        """Write one batch; if the segment could not be cut back after a failure, close."""
        try:
            segment.append(data, (span,), record_count=record_count)
        except OSError:
            if segment.broken:
                self._abandon()
            raise

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
            raise self._named(exc) from None
        with self._lock:
            self._check_open()
            rolls = self._rolls
            base = self._end_offset
            for pos, header in headers:
                batch.set_base_offset(data, pos, self._end_offset)
                last_offset = self._end_offset + header.last_offset_delta
                piece = bytes(data[pos : pos + header.size])
                segment = self._maybe_roll(header.size, header.max_timestamp, last_offset)
                span = BatchSpan(header.size, last_offset, header.max_timestamp)
                self._write(segment, piece, span, header.record_count)
                self._end_offset = last_offset + 1
            self._after_append(self._end_offset - base, self._clock())
            end = self._end_offset
        if self._rolls != rolls:
            self._after_roll()
        return range(base, end)

    def _after_append(self, count: int, now: int) -> None:
        mode = self._config.fsync
        if mode == "always":
            self._flush_locked()
        elif mode == "interval":
            self._unflushed_messages += count
            every = self._config.fsync_interval_messages
            if (every is not None and self._unflushed_messages >= every) or (
                now - self._last_flush_ms >= self._config.fsync_interval_ms
            ):
                self._flush_locked()

    # ------------------------------------------------------------ rolling

    def _maybe_roll(self, size: int, max_timestamp: int, last_offset: int) -> Segment:
        """Return the segment the next batch goes to, rolling first if a limit says so."""
        seg = self._segments.active
        config = self._config
        reason = seg.should_roll(
            size,
            max_timestamp,
            last_offset,
            segment_bytes=config.segment_bytes,
            segment_ms=config.segment_ms,
            segment_messages=config.segment_messages,
        )
        if reason is None:
            return seg
        return self._roll()

    def roll(self) -> None:
        """Start a new active segment now (no-op if the active one is empty)."""
        with self._lock:
            self._check_open()
            if not self._segments.active.size:
                return
            self._roll()
        self._after_roll()

    def _roll(self) -> Segment:
        """Roll only (``_roll_segment``); the caller runs ``_after_roll`` once unlocked."""
        self._rolls += 1
        return self._roll_segment()

    def _after_roll(self) -> None:
        """The housekeeping a roll makes due, in the caller's thread, the log's lock released.

        Retention judges the sealed segments (the records just appended stay);
        skipped while another pass holds the retention lock (an archive hook
        running: that pass or the next deletes). Then compaction, when the dirty
        ratio is over ``min_cleanable_dirty_ratio``. An archive hook runs here
        without the log's lock: other appends and reads go on meanwhile.
        """
        config = self._config
        if (
            config.deletes
            and (
                config.retention_bytes is not None
                or config.retention_messages is not None
                or config.retention_ms is not None
            )
            and self._retention_lock.acquire(blocking=False)
        ):
            try:
                result = self._retention_pass(sealed_only=True)
            except LogClosedError:
                return  # closed meanwhile: the records appended are in, nothing else is due
            finally:
                self._retention_lock.release()
            for error in result.errors:
                logger.warning("%s: retention kept a segment: %s", self._path, error)
        if config.compacted:
            self._maybe_compact()

    def _roll_segment(self) -> Segment:
        """Roll (``Segments.roll``); the recovery point passes the sealed segment."""
        new = self._segments.roll(self._end_offset)
        if self._config.fsync != "never":
            self._flushed_offset = max(self._flushed_offset, new.base_offset)
            self._checkpoint(RECOVERY_POINT_FILE, self._flushed_offset)
        return new

    # ------------------------------------------------------------ compaction

    def compact(
        self,
        *,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> CompactionResult:
        """Compact now, whatever the dirty ratio: keep the newest record of each key.

        Never touches the active segment or anything younger than
        ``min_compaction_lag_ms``. Offsets and timestamps never change.
        Tombstones stay ``delete_retention_ms`` after the compaction that first
        kept them, then go. Appends and reads go on meanwhile: the rewritten
        segments are swapped in crash-safely under the lock, and readers already
        inside a replaced segment finish reading it. Rounds repeat while the
        dirty part has more keys than ``compaction_memory_bytes`` maps at once.
        ``progress`` is called with 1 per segment rewritten. With ``dry_run``
        nothing changes and the result says what the first round would remove.

        Raises:
            ConfigError: the log's ``cleanup_policy`` does not include ``compact``.
        """
        if not self._config.compacted:
            raise ConfigError(
                f"compact() needs cleanup_policy 'compact' or 'compact,delete'; "
                f"{self._path} has {self._config.cleanup_policy!r}"
            )
        with self._cleaner_lock:
            return cleaner.compact(
                self._path,
                self._config,
                snapshot=self._round_snapshot,
                commit=self._commit_round,
                dry_run=dry_run,
                progress=progress,
            )

    def _round_snapshot(self) -> cleaner.CleanableSnapshot:
        with self._lock:
            sealed, first_dirty, now = self._cleanable_snapshot()
            return cleaner.CleanableSnapshot(sealed, first_dirty, now, self._truncations)

    def _commit_round(self, taken: cleaner.CleanableSnapshot, done: cleaner.Round) -> bool:
        """Under the lock: swap a round's outputs in, unless its inputs changed meanwhile."""
        with self._lock:
            inputs = done.inputs
            if (
                self._closed
                or self._truncations != taken.token
                or any(s is self._segments.active for s in inputs)
                or not all(self._segments.holds(s) for s in inputs)
            ):
                return False
            if not os.path.exists(os.path.join(self._path, CLEANER_CHECKPOINT_FILE)):
                # Before the first swap leaves gaps in the offsets, say so durably:
                # the checkpoint marks the log as compacted for every later open.
                self._checkpoint(CLEANER_CHECKPOINT_FILE, self._cleaner_offset)
            self._segments.replace(inputs, done.outputs)
            self._cleaner_offset = done.end_offset
            self._checkpoint(CLEANER_CHECKPOINT_FILE, self._cleaner_offset)
            return True

    def dirty_ratio(self) -> float:
        """The share of the log's bytes not yet compacted (what auto-compaction compares)."""
        with self._lock:
            sealed, first_dirty, now = self._cleanable_snapshot()
        clean, dirty = cleaner.sections(
            sealed, first_dirty, now_ms=now, min_lag_ms=self._config.min_compaction_lag_ms
        )
        return cleaner.dirty_ratio(clean, dirty)

    def _cleanable_snapshot(self) -> tuple[list[Segment], int, int]:
        """Under the lock: the sealed segments, the first dirty offset and the time now.

        The cleaner checkpoint is reset to the log start when it lies outside
        the log (Kafka's rule).
        """
        self._check_open()
        first_dirty = self._cleaner_offset
        if not self._start_offset <= first_dirty <= self._end_offset:
            first_dirty = self._start_offset
        return self._segments.sealed(), first_dirty, self._clock()

    def _maybe_compact(self) -> None:
        """After a roll in a compacted log: compact if the dirty share is over the limit."""
        if self._closed or self._cleaner_lock.locked():
            return
        if self.dirty_ratio() > self._config.min_cleanable_dirty_ratio:
            self.compact()

    # ------------------------------------------------------------ retention

    def apply_retention(self, *, dry_run: bool = False) -> RetentionResult:
        """Delete the oldest segments that the retention limits allow; say what went and why.

        The active segment is judged as a sealed one is: when every segment is
        due, the active one is rolled first and deleted too (Kafka's rule), so the
        log is left as one empty segment, ``start_offset == end_offset``, and the
        next append gets ``end_offset`` (offsets never go back); ``rolled`` says so.
        Each segment is handed to the ``archive`` hook first, outside the log's
        lock (appends and reads go on meanwhile); if the hook fails, that segment
        and every later one stay (only a prefix of the log is ever removed) and
        the failure is in ``errors``. A segment that a truncation or compaction
        changed while the hook ran stays too, until the next pass. With
        ``dry_run`` nothing changes (nothing is rolled) and the result says what
        would be removed under which rule. Deletion is crash-safe: files are
        renamed to ``.deleted`` (removed on the next open if a crash intervenes),
        then unlinked.
        """
        if dry_run or self._config.archive is None:
            return self._retention_pass(dry_run=dry_run)
        with self._retention_lock:  # one archiving pass at a time: none archives twice
            return self._retention_pass()

    def _retention_pass(
        self, *, dry_run: bool = False, sealed_only: bool = False
    ) -> RetentionResult:
        """One ``retention.apply`` pass; with an archive hook the retention lock is held.

        Raises:
            LogClosedError: the log is (or was meanwhile) closed.
        """

        def plan_locked() -> tuple[retention.Planned, bool, object]:
            self._check_open()
            planned, rolled = self._plan_retention(dry_run=dry_run, sealed_only=sealed_only)
            return planned, rolled, self._truncations

        def remove_locked(
            going: retention.Planned, truncations: object
        ) -> tuple[retention.Planned, int]:
            self._check_open()
            if self._truncations != truncations:
                going = []  # a truncation voids the plan; the next pass plans again
            return going, self._remove_planned(going, dry_run=dry_run)

        return retention.apply(
            self._config.archive,
            self._lock,
            plan_locked=plan_locked,
            remove_locked=remove_locked,
            current=lambda: (self._segments, self._segments.active),
            dry_run=dry_run,
        )

    def _plan_retention(
        self, *, dry_run: bool, sealed_only: bool = False
    ) -> tuple[retention.Planned, bool]:
        """Under the lock: the segments retention takes, oldest first, and whether it rolled.

        When the active segment is among them it is rolled now (not in a dry run):
        the log keeps one segment, so the doomed one is sealed (and whole for the
        archive hook) before it goes. A crash after the roll leaves a sealed
        segment and an empty active one; the next pass deletes it.
        """
        planned, rolled = retention.plan_removal(
            list(self._segments),
            start_offset=self._start_offset,
            end_offset=self._end_offset,
            config=self._config,
            now_ms=self._clock(),
        )
        if rolled and sealed_only:
            return planned[:-1], False  # after an append: the records it wrote stay
        if rolled and not dry_run:
            self._roll_segment()
        return planned, rolled

    def _remove_planned(self, going: retention.Planned, *, dry_run: bool) -> int:
        """Under the lock: delete ``going`` (a prefix of the log); return the new start offset."""
        start = self._start_offset
        if going:  # the first segment that stays starts the log
            start = max(start, going[-1][1].next_offset)
        if not dry_run and going:
            self._segments.remove([seg for seg, _ in going])
            if start > self._start_offset:
                self._start_offset = start
                self._checkpoint(LOG_START_FILE, self._start_offset)
        return start

    # ------------------------------------------------------------ flushing

    def flush(self) -> None:
        """fsync everything appended so far; ``flushed_offset`` becomes ``end_offset``."""
        with self._lock:
            self._check_open()
            self._flush_locked()
            self._checkpoint(RECOVERY_POINT_FILE, self._flushed_offset)

    def _flush_locked(self) -> None:
        for seg in self._segments:  # rolled with fsync="never": not yet synced
            if seg.unflushed and seg is not self._segments.active:
                seg.flush()
        self._segments.active.flush()
        self._flushed_offset = self._end_offset
        self._unflushed_messages = 0
        self._last_flush_ms = self._clock()

    # ------------------------------------------------------------ background work

    def run_maintenance(self) -> None:
        """Apply retention and, where due, compaction now: what the maintenance thread does.

        Archive-hook failures are logged as warnings (and keep their segments).
        """
        config = self._config
        if config.deletes or self.start_offset > 0:
            result = self.apply_retention()
            for error in result.errors:
                logger.warning("%s: retention kept a segment: %s", self._path, error)
        if config.compacted and self.dirty_ratio() > config.min_cleanable_dirty_ratio:
            self.compact()

    def _maintenance_pass(self) -> None:
        """A ``Maintenance`` task: ``run_maintenance``, then notify ``_maintained`` (tests wait)."""
        try:
            self.run_maintenance()
        except LogClosedError:
            return
        finally:
            with self._maintained:
                self._maintenance_passes += 1
                self._maintained.notify_all()

    def _interval_flush(self) -> None:
        """A ``Maintenance`` task with ``fsync="interval"``: fsync what is not yet synced."""
        with self._lock:
            if self._closed or self._flushed_offset >= self._end_offset:
                return
            try:
                self._flush_locked()
            except OSError:  # the next append (or flush) raises it to a caller
                logger.exception("%s: interval fsync failed", self._path)

    def _checkpoint(self, name: str, offset: int) -> None:
        """Write one of the partition's offset checkpoints (Kafka's file, one entry)."""
        write_offset_checkpoint(self._path, name, offset, topic_partition=self._topic_partition)

    # ------------------------------------------------------------ reading

    def _check_in_range(self, offset: int) -> None:
        """Raise ``OffsetOutOfRange`` unless ``start_offset <= offset <= end_offset``."""
        if not self._start_offset <= offset <= self._end_offset:
            raise OffsetOutOfRange(
                f"{self._path}: offset {offset} is outside the log's range "
                f"[{self._start_offset}, {self._end_offset}]"
            )

    def _snapshot(self, offset: int) -> reader.Snapshot:
        """Segments from the one holding ``offset``, each with its end position now.

        And with the offset its batches must stay below: the next segment's
        base offset, or the log's end offset for the last one.
        """
        return self._segments.snapshot(offset, self._end_offset)

    def read(
        self, offset: int, *, max_records: int | None = None, max_bytes: int | None = None
    ) -> list[Record]:
        """Records from ``offset`` on, at most ``max_records`` and about ``max_bytes``.

        ``max_bytes`` bounds the encoded size of the batches read, but at least
        one record is returned when any exists. Reading at ``end_offset`` gives ``[]``.

        Raises:
            OffsetOutOfRange: ``offset`` is below ``start_offset`` or above ``end_offset``.
            CorruptLogError: a batch on the way failed its checks (file and position named).
        """
        if type(offset) is not int:
            raise WrongTypeError(f"offset must be an int, not {type(offset).__name__}")
        for name, limit in (("max_records", max_records), ("max_bytes", max_bytes)):
            if limit is not None and (type(limit) is not int or limit < 0):
                raise WrongTypeError(f"{name} must be a non-negative int or None, got {limit!r}")
        with self._lock:
            self._check_open()
            self._check_in_range(offset)
            end_offset = self._end_offset
            if offset == end_offset or max_records == 0:
                return []
            snapshot = self._snapshot(offset)
        return reader.read(
            snapshot,
            offset,
            end_offset,
            self._read_options,
            max_records=max_records,
            max_bytes=max_bytes,
        )

    def read_batches(self, offset: int, max_bytes: int = 1 << 20) -> bytes:
        """Whole batches, as stored, from the batch holding ``offset``: a broker's fetch.

        Returns the bytes of consecutive v2 batches (possibly from several
        segments), without decoding records, ready to send on a socket. The
        first batch may start before ``offset`` (batches are not split: the
        receiver skips the records it did not ask for, as Kafka consumers do),
        and may hold records compaction removed. At least one batch is returned
        when any exists, even one larger than ``max_bytes``; after it, batches
        are added while the total stays within ``max_bytes``. CRCs are checked
        when ``verify_crc_on_read`` is set. Reading at ``end_offset`` gives ``b""``.

        Raises:
            OffsetOutOfRange: ``offset`` is below ``start_offset`` or above ``end_offset``.
            CorruptLogError: a batch on the way failed its checks.
        """
        if type(offset) is not int:
            raise WrongTypeError(f"offset must be an int, not {type(offset).__name__}")
        if type(max_bytes) is not int or max_bytes < 0:
            raise WrongTypeError(f"max_bytes must be a non-negative int, got {max_bytes!r}")
        with self._lock:
            self._check_open()
            self._check_in_range(offset)
            if offset == self._end_offset:
                return b""
            snapshot = self._snapshot(offset)
        return reader.read_batches(snapshot, offset, max_bytes, self._read_options)

    def scan(
        self, start_offset: int | None = None, end_offset: int | None = None
    ) -> Iterator[Record]:
        """Iterate records in ``[start_offset, end_offset)``, batch by batch.

        Memory stays flat however large the log is. The range is fixed when
        iteration starts: records appended later are not included.
        """
        with self._lock:
            self._check_open()
            start = self._start_offset if start_offset is None else start_offset
            end = self._end_offset if end_offset is None else min(end_offset, self._end_offset)
            self._check_in_range(start)
            snapshot = self._snapshot(start) if start < end else []
        return reader.scan(snapshot, start, end, self._read_options)

    def _repair_indexes(self, seg: Segment) -> None:
        """Rebuild the indexes of a segment a read found wrong, if it is still ours.

        Under the lock: appends change the active segment's indexes, and a
        segment that was replaced or deleted meanwhile is left alone.
        """
        with self._lock:
            if self._closed or not self._segments.holds(seg):
                return
            bound = self._segments.bound(seg, self._end_offset)
            error = seg.repair_indexes(end_offset=bound)
        if error is not None:
            logger.warning("%s: index not rewritten, the log is damaged: %s", seg.index_path, error)

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """First offset whose record timestamp is >= ``timestamp_ms``; ``None`` if there is none.

        The time index (no checksum) only says where to start: its entry is
        confirmed against the log, and when the log says otherwise the segment
        is searched from its start (and the index rebuilt), so the answer never
        depends on the index being right.
        """
        if type(timestamp_ms) is not int:
            raise WrongTypeError(f"timestamp_ms must be an int, not {type(timestamp_ms).__name__}")
        with self._lock:
            self._check_open()
            start = self._start_offset
            snapshot = self._snapshot(start)
            end_offset = self._end_offset
        return reader.offset_for_timestamp(
            snapshot, timestamp_ms, start, end_offset, self._read_options
        )

    # ------------------------------------------------------------ truncation

    def truncate(self, offset: int) -> None:
        """Drop every record with offset >= ``offset`` (no-op at or past ``end_offset``).

        A batch holding ``offset`` is rewritten with only its records below it.

        Raises:
            OffsetOutOfRange: ``offset`` is below ``start_offset``.
        """
        if type(offset) is not int:
            raise WrongTypeError(f"offset must be an int, not {type(offset).__name__}")
        with self._lock:
            self._check_open()
            if offset >= self._end_offset:
                return
            if offset < self._start_offset:
                raise OffsetOutOfRange(
                    f"{self._path}: cannot truncate to {offset}, "
                    f"below the start offset {self._start_offset}"
                )
            # 0. Lower the recovery point to the base of the segment that will be cut,
            #    durably, before any byte changes: a crash part-way leaves a rewritten
            #    batch, or the old batch's remains, above it, which the next open
            #    judges as a torn tail (cut) rather than as flushed damage (refused).
            flushed = self._flushed_offset
            holder = max(s.base_offset for s in self._segments if s.base_offset <= offset)
            if flushed > holder:
                self._checkpoint(RECOVERY_POINT_FILE, holder)
            try:
                self._segments.truncate(offset, compression_level=self._config.compression_level)
            except OSError:
                # Files are partly cut: the state in memory no longer matches them.
                # Close without the clean marker; the next open recovers from the files.
                self._abandon()
                raise
            self._end_offset = offset
            self._truncations += 1  # a compaction round started before this is void
            self._flushed_offset = min(flushed, offset)
            self._segments.active.flush()
            self._checkpoint(RECOVERY_POINT_FILE, self._flushed_offset)
            if self._cleaner_offset > offset:  # re-appended records are dirty again
                self._cleaner_offset = offset
                self._checkpoint(CLEANER_CHECKPOINT_FILE, self._cleaner_offset)

    def delete_before(self, offset: int) -> None:
        """Advance ``start_offset`` to ``offset``; whole segments below it are deleted.

        Raises:
            OffsetOutOfRange: ``offset`` is above ``end_offset``.
        """
        if type(offset) is not int:
            raise WrongTypeError(f"offset must be an int, not {type(offset).__name__}")
        with self._lock:
            self._check_open()
            if offset > self._end_offset:
                raise OffsetOutOfRange(
                    f"{self._path}: cannot delete before {offset}, "
                    f"past the end offset {self._end_offset}"
                )
            if offset <= self._start_offset:
                return
            self._start_offset = offset
            self._checkpoint(LOG_START_FILE, self._start_offset)
            segs = list(self._segments)
            doomed = [s for s, nxt in itertools.pairwise(segs) if nxt.base_offset <= offset]
            self._segments.remove(doomed)

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Flush, seal the active segment, write checkpoints and the clean-shutdown marker.

        Idempotent. The background thread is stopped and joined first (outside
        the lock, which a pass in progress needs to finish). The marker is
        written last, so a crash during close counts as unclean.
        """
        maintenance = self._maintenance
        if maintenance is not None:  # bounded: a hung archive hook must not hang close
            if self._owns_maintenance:
                maintenance.close(timeout=60)
            else:
                maintenance.cancel(self, timeout=60)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._flush_locked()
                for seg in self._segments:
                    seg.close()  # the active one is sealed: indexes written and fsynced
                self._checkpoint(RECOVERY_POINT_FILE, self._flushed_offset)
                self._checkpoint(LOG_START_FILE, self._start_offset)
                write_clean_shutdown(self._path)
            finally:
                self._dir_lock.release()

    def _abandon(self) -> None:
        """Close without the clean-shutdown marker (after a write that could not be undone)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._maintenance is not None:  # its tasks see the log closed; stop, not join
                if self._owns_maintenance:
                    self._maintenance.close(timeout=0)
                else:
                    self._maintenance.cancel(self, timeout=0)
            for seg in self._segments:
                seg.close_file()
            self._dir_lock.release()
