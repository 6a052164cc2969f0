"""What kind of directory a path is: a log (one partition), a broker root, or neither.

The one place that answers it, so that ``Log.open``, ``Broker.open`` and every
CLI command agree. Judges by file names only (never reads a file), so it is
cheap and safe on a directory a live process is writing. Knows nothing of
what the files contain.

    log     segment files (``<20 digits>.log``/``.index``/``.timeindex``, also
            ``.deleted``/``.swap``/``.cleaned``/``.corrupt-N`` leftovers) or a
            partition's checkpoint files / clean-shutdown marker
    broker  ``logstore-topics.json``, or ``topic-N`` subdirectories that are logs
    empty   a directory with nothing in it but, at most, a ``.lock``
    foreign any other directory (``/etc``)
"""

from __future__ import annotations

import os
from typing import Literal

from ._fs import (
    ATOMIC_TMP_SUFFIX as _TMP_SUFFIX,
)
from ._fs import (
    CLEAN_SHUTDOWN_FILE,
    CLEANER_CHECKPOINT_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    LOG_START_FILE,
    RECOVERY_POINT_FILE,
    SEGMENT_SUFFIXES,
    parse_base_offset,
)
from .checkpoints import parse_partition_dir
from .errors import NotALogError

#: A broker root's topic metadata (owned by ``broker``; named here so the kind is known below it).
METADATA_FILE = "logstore-topics.json"

DirectoryKind = Literal["missing", "file", "empty", "log", "broker", "foreign"]

_LOG_FILES = frozenset(
    (CLEAN_SHUTDOWN_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, CLEANER_CHECKPOINT_FILE, CONFIG_FILE)
)


def _has_log_files(directory: str, names: list[str]) -> bool:
    """Whether ``names`` include a segment file or a partition's checkpoint or marker.

    A segment file is ``<20 digits>`` then a segment suffix; a broker's topic
    may have such a name too (``00000000000000000001.log-0``), but that is a
    directory.
    """
    for n in names:
        if n in _LOG_FILES:
            return True
        if (
            parse_base_offset(n) is not None
            and n[20:].startswith(SEGMENT_SUFFIXES)
            and not os.path.isdir(os.path.join(directory, n))
        ):
            return True
    return False


def directory_kind(path: str | os.PathLike[str]) -> DirectoryKind:
    """Classify ``path`` by the names it holds (see the module docstring).

    A directory holding both a log's files and a broker's is a log: that is a
    partition in which an older version created a broker by mistake.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return "missing"
    if not os.path.isdir(path):
        return "file"
    # A name with the ``.tmp`` of an interrupted ``atomic_write`` counts as the file it
    # was to become (a broker root whose first metadata write a crash cut short).
    names = [n.removesuffix(_TMP_SUFFIX) for n in os.listdir(path)]
    if _has_log_files(path, names):
        return "log"
    if METADATA_FILE in names:
        return "broker"
    for name in names:
        full = os.path.join(path, name)
        if parse_partition_dir(name) is not None and os.path.isdir(full):
            try:
                if _has_log_files(full, os.listdir(full)):
                    return "broker"
            except OSError:  # unreadable: not evidence either way
                continue
    if all(n == LOCK_FILE for n in names):
        return "empty"
    return "foreign"


def describe(path: str, kind: DirectoryKind) -> str:
    """One line saying what ``path`` is, for a refusal."""
    if kind == "missing":
        return f"{path}: no such file or directory"
    if kind == "file":
        return f"{path} is a file, not a log directory or broker root"
    if kind == "empty":
        return f"{path} is an empty directory, not a log directory or broker root"
    if kind == "log":
        return f"{path} is a log (partition) directory: it holds segment or checkpoint files"
    if kind == "broker":
        return f"{path} is a broker root: it holds {METADATA_FILE} or topic-N partition directories"
    return (
        f"{path} is not a log directory or broker root "
        f"(no segment files, no {METADATA_FILE}, no topic-N partition directories)"
    )


def refuse_other_kind(path: str, wanted: Literal["log", "broker"]) -> None:
    """Raise ``NotALogError`` unless ``path`` is missing, empty, or a ``wanted`` directory.

    A missing or empty directory is accepted: opening creates a new log (or
    broker) there. A file, the other kind of directory, or a directory of other
    things (``/etc``) is refused before anything is written into it.
    """
    kind = directory_kind(path)
    if kind in ("missing", "empty", wanted):
        return
    if kind == "foreign":
        raise NotALogError(
            describe(path, kind) + "; refusing to create one among other files", path, kind
        )
    opener = "Log.open" if kind == "log" else "Broker.open"
    hint = "" if kind == "file" else f"; open it with {opener}"
    raise NotALogError(describe(path, kind) + hint, path, kind)
