"""A partition's small files: offset checkpoints, the clean-shutdown marker, its name.

Owns what the files beside the segments mean (Kafka's layout): the recovery
point, log start and cleaner offset checkpoints (one ``topic partition offset``
entry each), the ``.kafka_cleanshutdown`` marker, the ``topic-N`` rule that
names a partition directory, and the contiguity rule (a log never compacted
has no gaps in its offsets). The file names themselves live in ``_fs``.

Knows directories and file names, not segments, records or the ``Log``.
"""

from __future__ import annotations

import os
import threading

from ._fs import (
    CLEAN_SHUTDOWN_FILE,
    CLEANER_CHECKPOINT_FILE,
    atomic_write,
    fsync_dir,
    read_checkpoint,
    write_checkpoint,
)

#: What Kafka writes into its clean-shutdown marker; only the file's presence counts.
_CLEAN_SHUTDOWN_DATA = b'{"version":0,"brokerEpoch":-1}'


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """``(topic, partition)`` of a directory named ``topic-N``; ``None`` for any other name.

    The topic is everything before the last ``-`` (topics may hold ``-``); ``N``
    is ASCII digits only (``str.isdigit`` alone would take ``²``, which ``int`` refuses).
    """
    topic, sep, number = name.rpartition("-")
    if sep and topic and number.isascii() and number.isdigit():
        return topic, int(number)
    return None


def partition_dir_name(topic: str, partition: int) -> str:
    """The directory name of ``topic``'s partition ``partition``: ``topic-N``."""
    return f"{topic}-{partition}"


def partition_name(directory: str) -> tuple[str, int]:
    """``(topic, partition)`` for checkpoint entries: from ``topic-N``, else ``(name, 0)``."""
    name = os.path.basename(os.path.normpath(directory))
    return parse_partition_dir(name) or (name or "log", 0)


def never_compacted(directory: str, *, compacted_policy: bool = False) -> bool:
    """Whether the partition's offsets must be contiguous: the one rule every check uses.

    Offsets of a log that was never compacted have no gaps, which exposes a
    damaged base offset (it lies outside the CRC); compaction leaves legal
    gaps. A log was compacted if a cleaner checkpoint names it, in its own
    directory (logstore writes it before its first swap) or in the broker root
    above it (Kafka's layout); ``compacted_policy`` (a compacting cleanup
    policy) counts as compacted too, since such a log may be at any time.
    """
    if compacted_policy or os.path.exists(os.path.join(directory, CLEANER_CHECKPOINT_FILE)):
        return False
    root_checkpoint = read_checkpoint(
        os.path.join(os.path.dirname(os.path.normpath(directory)), CLEANER_CHECKPOINT_FILE)
    )
    topic, partition = partition_name(directory)
    return not any(t == topic and p == partition for t, p, _ in root_checkpoint or ())


def read_offset_checkpoint(directory: str, file_name: str) -> int | None:
    """The offset in the partition's checkpoint ``file_name``; ``None`` if missing or unreadable."""
    entries = read_checkpoint(os.path.join(directory, file_name))
    if not entries:
        return None
    return entries[0][2]


def write_offset_checkpoint(
    directory: str, file_name: str, offset: int, *, topic_partition: tuple[str, int] | None = None
) -> None:
    """Write the partition's checkpoint ``file_name`` (Kafka's file, one entry), durably.

    ``topic_partition`` is the entry's ``(topic, partition)`` (``partition_name``
    of the directory when not given; a caller writing often passes it once computed).
    """
    topic, partition = topic_partition or partition_name(directory)
    write_checkpoint(os.path.join(directory, file_name), [(topic, partition, offset)])


def take_clean_shutdown(directory: str, *, dry_run: bool = False) -> bool:
    """Whether the last close was clean; unless ``dry_run``, delete the marker (durably).

    Deleted before the first change an open makes, so a crash while loading
    counts as unclean.
    """
    marker = os.path.join(directory, CLEAN_SHUTDOWN_FILE)
    clean = os.path.exists(marker)
    if not dry_run and clean:
        os.unlink(marker)
        fsync_dir(directory)
    return clean


def has_clean_shutdown(directory: str) -> bool:
    """Whether the clean-shutdown marker is there (nothing is changed)."""
    return os.path.exists(os.path.join(directory, CLEAN_SHUTDOWN_FILE))


class CleanMarker:
    """A clean-shutdown marker an open left in place: dropped before the first change.

    FORMAT.md 10.3: the marker is deleted, with a directory fsync, before the
    first change to the directory. An open that changes nothing (no leftovers
    to resolve, no index to rebuild) keeps it, so a crash while the log is
    open but untouched still finds the files as the last close left them,
    and a close with nothing changed has nothing to write. Whoever is about
    to change a file calls ``drop`` first; it deletes the marker (durably)
    once, and ``kept`` says whether it is still there.
    """

    def __init__(self, directory: str, *, kept: bool) -> None:
        self.directory = directory
        self.kept = kept
        self._lock = threading.Lock()  # lazily loaded indexes may be rebuilt by two readers

    def drop(self) -> None:
        """Delete the marker (durably) if it is still there: the directory is about to change."""
        if not self.kept:
            return
        with self._lock:
            if self.kept:
                take_clean_shutdown(self.directory)
                self.kept = False


def write_clean_shutdown(directory: str) -> None:
    """Write the clean-shutdown marker: the last step of a close (a crash before it is unclean)."""
    atomic_write(os.path.join(directory, CLEAN_SHUTDOWN_FILE), _CLEAN_SHUTDOWN_DATA)
