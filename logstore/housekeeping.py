"""A partition's housekeeping: its retention and compaction passes, and its tasks on a scheduler.

Owns what one log keeps for housekeeping: the cleaner lock (one compaction
at a time), the retention lock (one archiving pass at a time, so none
archives a segment twice), and the tasks it hands to its ``Maintenance``:
the pass a roll made due (``soon``), the periodic pass and the interval
fsync (``every``). Every pass takes the log's lock only for its short
steps, through ``cleaner.compact`` and ``retention.apply``; none runs in an
appending thread, so an archive script stalls only the maintenance thread.
Also the repair of an index a read found wrong (in the reading thread).

Knows the ``LocalLog``, the passes and the scheduler; not the ``Log``'s
public methods, argument checks or open/close.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from . import cleaner, retention
from .errors import ConfigError, LogClosedError
from .local import LocalLog
from .maintenance import Maintenance
from .model import CompactionResult, RetentionResult
from .segment import Segment

logger = logging.getLogger(__name__)


class Housekeeping:
    """One log's retention and compaction, and its tasks on a ``Maintenance``."""

    def __init__(
        self,
        local: LocalLog,
        lock: AbstractContextManager[object],
        maintenance: Maintenance | None,
        *,
        interval_ms: int | None,
    ) -> None:
        """Schedule the log's periodic tasks on ``maintenance`` (a new one of its own if ``None``).

        ``interval_ms`` (``None`` or 0: none) is the periodic pass; with
        ``fsync="interval"`` the interval fsync is scheduled too. The thread
        starts with the first task, so a log with nothing that can become due has none.
        """
        self._local = local
        self._lock = lock
        config = local.config
        self._cleaner_lock = threading.Lock()
        self._retention_lock = threading.Lock()
        #: What a roll makes due: retention (a limit is set) and compaction (a compacting policy).
        self._retains = config.deletes and (
            config.retention_bytes is not None
            or config.retention_messages is not None
            or config.retention_ms is not None
        )
        #: Periodic passes so far; ``passed`` is notified after each (tests wait on it).
        self.passes = 0
        self.passed = threading.Condition()
        self._owns_maintenance = maintenance is None
        self.maintenance = maintenance or Maintenance(f"logstore-maintenance-{local.path}")
        if config.fsync == "interval":
            self.maintenance.every(config.fsync_interval_ms, self._interval_flush, owner=self)
        if interval_ms:
            self.maintenance.every(interval_ms, self._periodic_pass, owner=self)

    # ------------------------------------------------------------ the passes

    def compact(self, *, dry_run: bool, progress: Callable[[int], None] | None) -> CompactionResult:
        """``Log.compact``: one compaction at a time.

        Raises:
            ConfigError: the log's ``cleanup_policy`` does not include ``compact``.
        """
        config = self._local.config
        if not config.compacted:
            raise ConfigError(
                f"compact() needs cleanup_policy 'compact' or 'compact,delete'; "
                f"{self._local.path} has {config.cleanup_policy!r}"
            )
        with self._cleaner_lock:
            return cleaner.compact(self._local, self._lock, dry_run=dry_run, progress=progress)

    def apply_retention(self, *, dry_run: bool) -> RetentionResult:
        if dry_run or self._local.config.archive is None:
            return retention.apply(self._local, self._lock, dry_run=dry_run)
        with self._retention_lock:  # one archiving pass at a time: none archives twice
            return retention.apply(self._local, self._lock)

    def run_pass(self) -> None:
        """Retention, then compaction where the dirty ratio passes its threshold."""
        local = self._local
        if local.config.deletes or local.start_offset > 0:
            self._warn_kept(self.apply_retention(dry_run=False))
        if self._compaction_due():
            self.compact(dry_run=False, progress=None)

    def dirty_ratio(self) -> float:
        """``cleaner.log_dirty_ratio`` of the log (raises ``LogClosedError`` once closed)."""
        return cleaner.log_dirty_ratio(self._local, self._lock)

    def _compaction_due(self) -> bool:
        config = self._local.config
        return config.compacted and self.dirty_ratio() > config.min_cleanable_dirty_ratio

    def _warn_kept(self, result: RetentionResult) -> None:
        for error in result.errors:
            logger.warning("%s: retention kept a segment: %s", self._local.path, error)

    # ------------------------------------------------------------ the tasks

    def rolled(self) -> None:
        """A roll happened: hand what it made due to the maintenance thread (``_after_roll``)."""
        if self._retains or self._local.config.compacted:
            self.maintenance.soon(self._after_roll, owner=self)

    def _after_roll(self) -> None:
        """The housekeeping a roll made due, on the maintenance thread.

        Retention judges the sealed segments (the records just appended stay);
        skipped while another pass holds the retention lock (an archive hook
        running: that pass or the next deletes). Then compaction, when the dirty
        ratio is over ``min_cleanable_dirty_ratio`` and no compaction is running.
        A no-op once the log is closed.
        """
        try:
            if self._retains and self._retention_lock.acquire(blocking=False):
                try:
                    result = retention.apply(self._local, self._lock, sealed_only=True)
                finally:
                    self._retention_lock.release()
                self._warn_kept(result)
            if not self._cleaner_lock.locked() and self._compaction_due():
                self.compact(dry_run=False, progress=None)
        except LogClosedError:
            return  # closed meanwhile: nothing is due any more

    def _periodic_pass(self) -> None:
        """Every ``maintenance_interval_ms``: ``run_pass``, then notify ``passed``."""
        try:
            self.run_pass()
        except LogClosedError:
            return
        finally:
            with self.passed:
                self.passes += 1
                self.passed.notify_all()

    def _interval_flush(self) -> None:
        """With ``fsync="interval"``: fsync what is not yet synced."""
        local = self._local
        with self._lock:
            if local.closed or local.flushed_offset >= local.end_offset:
                return
            try:
                local.flush()
            except OSError:  # the next append (or flush) raises it to a caller
                logger.exception("%s: interval fsync failed", local.path)

    def repair_indexes(self, seg: Segment) -> None:
        """Rebuild the indexes of a segment a read found wrong, if it is still the log's.

        Under the lock, in the reading thread: appends change the active
        segment's indexes, and a segment replaced or deleted meanwhile is left alone.
        """
        with self._lock:
            error = self._local.repair_indexes(seg)
        if error is not None:
            logger.warning("%s: index not rewritten, the log is damaged: %s", seg.index_path, error)

    def stop(self, *, timeout: float) -> None:
        """Drop the log's tasks; wait (bounded) for one in progress, outside the log's lock.

        The log's own thread is stopped and joined; a shared one keeps running.
        """
        if self._owns_maintenance:
            self.maintenance.close(timeout=timeout)
        else:
            self.maintenance.cancel(self, timeout=timeout)
