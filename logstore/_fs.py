"""File names, suffixes, durable file operations, the directory lock, closing.

The only module that knows file suffixes and how to make a create, rename or
replacement durable. Knows nothing of what the files contain.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Protocol, TypeVar

from .errors import ConfigError, LogClosedError, LogLockedError

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX)
DELETED_SUFFIX = ".deleted"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
#: Quarantined bytes: ``<segment>.log.corrupt-<position>``; Kafka's loader ignores the name.
CORRUPT_INFIX = ".corrupt-"

LOCK_FILE = ".lock"
#: ``atomic_write``'s temporary name: ``<file>.tmp``, renamed over ``<file>`` once fsynced.
ATOMIC_TMP_SUFFIX = ".tmp"

_Self = TypeVar("_Self", bound="Closing")


class Closing:
    """``with`` for the objects that hold files and locks: the block's end closes them.

    Also the one closed flag and its check: ``close`` sets ``_closed`` (under
    the subclass's own lock), every public method that needs the object open
    starts with ``_check_open``, which names the object via ``_closed_message``.
    """

    _closed: bool = False

    def close(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (or, for a ``Log``, a write failure closed it)."""
        return self._closed

    def _closed_message(self) -> str:
        return f"{self!r} is closed"

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(self._closed_message())

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
CLEANER_CHECKPOINT_FILE = "cleaner-offset-checkpoint"
#: The config a ``Log`` was last opened with (JSON), so tools can tell its cleanup policy.
#: Kafka's loader ignores the name (no segment suffix, not one of its checkpoint files).
CONFIG_FILE = "logstore-config.json"


def segment_name(base_offset: int, suffix: str) -> str:
    """``00000000000000368769.log`` for base offset 368769."""
    return f"{base_offset:020d}{suffix}"


def parse_base_offset(name: str) -> int | None:
    """The base offset a segment file name starts with, or ``None`` if it is not one."""
    head = name.split(".", 1)[0]
    if len(head) != 20 or not head.isdigit():
        return None
    return int(head)


def fsync_dir(path: str) -> None:
    """Make creates, renames and deletes in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str) -> None:
    """Create ``path`` and any missing parents durably: fsync each parent after its mkdir.

    ``os.makedirs`` alone leaves the new entries in the page cache: a power loss
    can then take the whole directory (and every record acknowledged in it)
    with it, and the next open silently starts an empty log. When ``path``
    already exists its parent is fsynced anyway, because whoever created it
    may have died before doing so.
    """
    path = os.path.abspath(path)
    missing: list[str] = []
    at = path
    while not os.path.isdir(at):
        missing.append(at)
        parent = os.path.dirname(at)
        if parent == at:  # pragma: no cover - the filesystem root always exists
            break
        at = parent
    if not missing:
        try:
            fsync_dir(os.path.dirname(path) or path)
        except PermissionError:  # a parent we may not read was not made by us either
            pass
        return
    for directory in reversed(missing):  # top-most first: each parent exists when used
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
        fsync_dir(os.path.dirname(directory))


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range`` from the C library (``os`` has no binding); else ``None``."""
    if not sys.platform.startswith("linux"):
        return None  # pragma: no cover - other systems
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - a C library without it
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, position: int, size: int) -> None:
    """Ask the kernel to start writing ``size`` bytes from ``position`` to the device now.

    A hint, not a flush: it waits for nothing and makes nothing durable
    (``fsync_data`` does), so its errors are ignored. Written data would
    otherwise sit dirty in the page cache until the next ``fsync``, which then
    waits for all of it at once; started early, the device writes while the
    caller encodes the next batches (RocksDB's ``bytes_per_sync``). A no-op
    where ``sync_file_range`` is missing.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, position, size, _SYNC_FILE_RANGE_WRITE)


def fsync_data(fd: int) -> None:
    """Flush a file's data (and its size) to stable storage."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS
        os.fsync(fd)


#: What ``write_all`` writes: one buffer, or pieces written back to back (``pwritev``).
Writable = bytes | bytearray | memoryview | tuple[bytes | memoryview, ...]


def write_size(data: Writable) -> int:
    """How many bytes ``write_all(fd, data, ...)`` writes."""
    if isinstance(data, tuple):
        return sum(memoryview(piece).nbytes for piece in data)
    return memoryview(data).nbytes


def write_all(fd: int, data: Writable, position: int) -> None:
    """``pwrite`` all of ``data`` at ``position``, looping over short writes.

    A tuple of pieces goes out with one ``pwritev`` (a batch's header and its
    records, never joined into one more copy); after a short write the rest
    is joined and written as one buffer (rare: the file system refused part).
    """
    if isinstance(data, tuple):
        total = write_size(data)
        written = os.pwritev(fd, data, position) if total else 0
        if written == total:
            return
        data, position = b"".join(data)[written:], position + written
    view = memoryview(data)
    while view.nbytes:
        written = os.pwrite(fd, view, position)
        if written == 0:  # pragma: no cover - a device refusing bytes without an error
            raise OSError(errno.EIO, "write made no progress")
        view = view[written:]
        position += written


def atomic_write(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: write a temp file, fsync, rename, fsync the directory.

    ``mode``: the new file's permissions (less the umask), set before any byte is written.
    """
    tmp = path + ATOMIC_TMP_SUFFIX
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover's permissions would survive O_CREAT
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def remove_files(paths: Iterable[str]) -> None:
    """Remove files that may already be gone."""
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def write_checkpoint(path: str, entries: Iterable[tuple[str, int, int]]) -> None:
    """Write a Kafka offset checkpoint file (version 0, ``topic partition offset`` lines)."""
    lines = [f"{topic} {partition} {offset}" for topic, partition, offset in entries]
    atomic_write(
        path, ("0\n" + f"{len(lines)}\n" + "".join(line + "\n" for line in lines)).encode()
    )


def read_checkpoint(path: str) -> list[tuple[str, int, int]] | None:
    """Read a Kafka offset checkpoint; ``None`` when missing or malformed (Kafka: unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY)  # read at every open: no io layer for a few bytes
    except FileNotFoundError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        text = b"".join(chunks).decode("utf-8")
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # as text mode
    except UnicodeDecodeError:
        return None
    try:
        if lines[0].strip() != "0":
            return None
        count = int(lines[1])
        entries = []
        for line in lines[2 : 2 + count]:
            topic, partition, offset = line.split()
            entries.append((topic, int(partition), int(offset)))
    except (ValueError, IndexError):
        return None
    if len(entries) != count or any(line.strip() for line in lines[2 + count :]):
        return None
    return entries


def is_locked(directory: str) -> bool:
    """Whether a live ``Log`` holds ``directory`` (probes the lock without keeping it)."""
    path = os.path.join(directory, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we got
    return False


class Evictable(Protocol):
    def evict(self) -> bool: ...


class HandleCache:
    """Keeps at most ``limit`` file handles open; least recently used go first.

    Owners (segments) report ``opened``/``touch``/``closed``; when over the
    limit, the cache asks the least recently used to ``evict``. An owner
    declines while its handle is in use (a read or a write holds it) or must
    stay open (data written but not yet fsynced); the cache then asks the next
    one, and stays over the limit only if every candidate declines. Owners
    reopen on their next use.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ConfigError(f"max_open_files must be an integer >= 1, got {limit!r}")
        self.limit = limit
        self._lock = threading.Lock()
        self._open: OrderedDict[Evictable, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, owner: Evictable) -> None:
        with self._lock:
            self._open[owner] = None
            self._open.move_to_end(owner)
            excess = len(self._open) - self.limit
            if excess <= 0:
                return
            candidates = [o for o in self._open if o is not owner]  # least recent first
        for victim in candidates:  # outside our lock: evict takes the owner's lock
            if excess <= 0:
                break
            if victim.evict():
                with self._lock:
                    self._open.pop(victim, None)
                excess -= 1

    def touch(self, owner: Evictable) -> None:
        with self._lock:
            if owner in self._open:
                self._open.move_to_end(owner)

    def closed(self, owner: Evictable) -> None:
        with self._lock:
            self._open.pop(owner, None)


class DirectoryLock:
    """An exclusive ``flock`` on ``<dir>/.lock``.

    ``flock`` locks belong to the open file description, so a second open of
    the same directory conflicts even inside one process (``fcntl`` record
    locks would not).
    """

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, LOCK_FILE)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogLockedError(
                f"{directory} is already open (lock held on {self.path})"
            ) from None
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def crash_point(name: str) -> None:
    """Die here if ``LOGSTORE_CRASH_AT`` names this step (crash tests only)."""
    if os.environ.get("LOGSTORE_CRASH_AT") == name:
        os._exit(77)
