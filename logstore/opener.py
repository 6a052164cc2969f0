"""Taking a partition directory for a ``Log``: its kind, its creation, its lock, its loading.

``open_dir`` is what ``Log.open`` does before a ``Log`` exists: refuse a
broker root or a file, create the directory durably, lock it, run
``loader.load`` and record the config. ``recover`` is the same for
``Log.recover`` (recovery forced, a dry run, damage below the recovery
point only reported, indexes rebuilt on request), closing what it opened.
On any failure the lock is released again.

Knows directories, the lock, the loader and the ``LocalLog``; not the ``Log``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable

from ._dirkind import refuse_other_kind
from ._fs import DirectoryLock, make_dirs
from .checkpoints import has_clean_shutdown
from .config import LogConfig
from .configrecord import write_config_record
from .errors import ConfigError, WrongTypeError
from .loader import (
    FlushedDamageError,
    LoadResult,
    RecoveryAction,
    RecoveryActionKind,
    load,
)
from .local import LocalLog
from .segments import Segments


def check_options(config: object, max_open_files: object, maintenance_interval_ms: object) -> None:
    """Raise ``TypeError`` or ``ConfigError`` for the options of ``Log.open`` out of range."""
    if not isinstance(config, LogConfig):
        raise WrongTypeError(f"config must be a LogConfig, not {type(config).__name__}")
    if type(max_open_files) is not int or max_open_files < 1:
        raise ConfigError(f"max_open_files must be an integer >= 1, got {max_open_files!r}")
    if maintenance_interval_ms is not None and (
        type(maintenance_interval_ms) is not int or maintenance_interval_ms < 0
    ):
        raise ConfigError(
            "maintenance_interval_ms must be an integer >= 0 (0 or None: no periodic "
            f"maintenance pass), got {maintenance_interval_ms!r}"
        )


def open_dir(
    path: str | os.PathLike[str], config: LogConfig, *, record_config: bool
) -> tuple[str, DirectoryLock, LoadResult]:
    """Create (durably) and lock the directory, load it, record ``config`` if asked to.

    Returns the directory, its lock (the caller releases it if it fails later) and what
    ``load`` found.
    """
    directory = os.fspath(path)
    refuse_other_kind(directory, "log")
    if not has_clean_shutdown(directory):
        # Durable: fsyncs each new entry's parent. A directory holding a clean-shutdown
        # marker was made durable by the open (or recover) that preceded that close.
        make_dirs(directory)
    lock = DirectoryLock(directory)
    try:
        loaded = load(directory, config)
        if record_config:
            write_config_record(directory, config)
    except BaseException:
        lock.release()
        raise
    return directory, lock, loaded


def recover(
    path: str | os.PathLike[str],
    config: LogConfig | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
    rebuild_indexes: Iterable[int] = (),
    clock: Callable[[], int] | None = None,
) -> list[RecoveryAction]:
    """Run crash recovery on a closed log now; return what it changed (or would change).

    ``Log.recover``. The same recovery as an unclean open: validate every
    batch from the recovery point, quarantine and cut a bad tail, rebuild
    indexes. Damage below the recovery point is only reported, unless
    ``force``, which validates from the first segment and cuts at the first
    bad byte (quarantining everything cut). ``dry_run`` changes nothing.
    ``rebuild_indexes`` names segments (by base offset) whose indexes were
    found wrong (``diagnostics.check_indexes``): they are rebuilt from the
    ``.log`` even below the recovery point, where recovery does not look.
    Otherwise the loaded segments are taken over by a ``LocalLog`` and closed
    cleanly (checkpoints, the clean-shutdown marker) before the lock is released.

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
    make_dirs(directory)  # its entry in the parent made durable: the close below leaves a marker
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
            return damage.actions  # nothing of the damaged segment changed: report it only
        if dry_run:
            for seg in loaded.segments:
                seg.close_file()
            return loaded.actions
        # Nothing is appended or truncated here, so nothing can need abandoning.
        local = LocalLog(
            directory, config, loaded, handles=None, clock=clock or _wall_clock_ms, abandon=_never
        )
        try:
            actions = loaded.actions + _rebuild_indexes(local.segments, rebuild_indexes)
        finally:
            local.close()
        return actions
    finally:
        lock.release()


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _never() -> None:
    raise AssertionError("unreachable: recovery neither appends nor truncates")


def _rebuild_indexes(segments: Segments, bases: Iterable[int]) -> list[RecoveryAction]:
    """Rebuild the indexes of the segments at ``bases`` from their ``.log``s; say so per segment."""
    actions = []
    for base in bases:
        wrong = segments.get(base)
        if wrong is not None:
            wrong.rebuild_indexes()
            reason = "entries did not match the log"
            actions.append(
                RecoveryAction(wrong.index_path, RecoveryActionKind.REBUILD_INDEX, reason)
            )
    return actions
