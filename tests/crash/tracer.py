"""The child side: run one workload with every file-system-mutating call recorded.

``python -m tests.crash.tracer WORKLOAD ROOT TRACE`` patches the ``os``
functions logstore uses to change files (before logstore is imported), runs
``workloads.WORKLOADS[WORKLOAD]`` on ``ROOT`` and pickles the trace to
``TRACE``. Events, in the order the calls returned (one lock serialises them,
so the Broker's thread pool cannot reorder them):

    ("open", path, flags, fd, existed, is_dir)
    ("close", fd)
    ("write", fd, position, data)          os.write at the fd's offset, os.pwrite, os.pwritev
    ("ftruncate", fd, size) / ("truncate", path, size)
    ("fsync", fd)                          os.fsync and os.fdatasync
    ("rename", src, dst) / ("unlink", path) / ("mkdir", path) / ("rmdir", path)
    ("mark", kind, data)                   the workload's begin/end of an operation

Paths are relative to ROOT; calls on paths outside it (and on their fds) are
not recorded. Calls the model cannot replay (writev, links, fallocate, a
write-mode builtin ``open``) fail loudly instead of going unrecorded.
"""

from __future__ import annotations

import builtins
import os
import pickle
import shutil
import sys
import threading
from typing import Any

_lock = threading.RLock()
_events: list[tuple[Any, ...]] = []
_fds: dict[int, str] = {}  # traced fd -> path relative to the root
_root = ""


def _rel(path: Any) -> str | None:
    if isinstance(path, int):
        return _fds.get(path)
    full = os.path.abspath(os.fsdecode(path))
    if full != _root and not full.startswith(_root + os.sep):
        return None
    return os.path.relpath(full, _root)


def mark(kind: str, **data: Any) -> None:
    """Record a workload marker (``begin``/``end`` of an operation) in the trace."""
    with _lock:
        _events.append(("mark", kind, data))


def _install() -> None:
    real = {
        name: getattr(os, name)
        for name in (
            "open",
            "close",
            "write",
            "pwrite",
            "pwritev",
            "ftruncate",
            "truncate",
            "fsync",
            "fdatasync",
            "rename",
            "replace",
            "unlink",
            "remove",
            "mkdir",
            "rmdir",
            "lseek",
        )
    }
    lexists, isdir = os.path.lexists, os.path.isdir

    def traced_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        assert dir_fd is None, "os.open with dir_fd is not traced"
        with _lock:
            rel = _rel(path)
            existed = rel is not None and lexists(path)
            fd: int = real["open"](path, flags, mode)
            if rel is not None:
                _fds[fd] = rel
                _events.append(("open", rel, flags, fd, existed, isdir(path)))
            return fd

    def traced_close(fd: int) -> None:
        with _lock:
            real["close"](fd)
            if _fds.pop(fd, None) is not None:
                _events.append(("close", fd))

    def traced_write(fd: int, data: Any) -> int:
        with _lock:
            position = real["lseek"](fd, 0, os.SEEK_CUR) if fd in _fds else 0
            n: int = real["write"](fd, data)
            if fd in _fds:
                _events.append(("write", fd, position, bytes(memoryview(data)[:n])))
            return n

    def traced_pwrite(fd: int, data: Any, position: int) -> int:
        with _lock:
            n: int = real["pwrite"](fd, data, position)
            if fd in _fds:
                _events.append(("write", fd, position, bytes(memoryview(data)[:n])))
            return n

    def traced_pwritev(fd: int, buffers: Any, position: int) -> int:
        with _lock:
            n: int = real["pwritev"](fd, buffers, position)
            if fd in _fds:
                data = b"".join(bytes(memoryview(b)) for b in buffers)
                _events.append(("write", fd, position, data[:n]))
            return n

    def traced_ftruncate(fd: int, size: int) -> None:
        with _lock:
            real["ftruncate"](fd, size)
            if fd in _fds:
                _events.append(("ftruncate", fd, size))

    def traced_truncate(path: Any, size: int) -> None:
        with _lock:
            real["truncate"](path, size)
            if isinstance(path, int):
                if path in _fds:
                    _events.append(("ftruncate", path, size))
            elif (rel := _rel(path)) is not None:
                _events.append(("truncate", rel, size))

    def traced_fsync(name: str) -> Any:
        def fsync(fd: Any) -> None:
            if not isinstance(fd, int):
                fd = fd.fileno()
            with _lock:
                real[name](fd)
                if fd in _fds:
                    _events.append(("fsync", fd))

        return fsync

    def traced_rename(name: str) -> Any:
        def rename(src: Any, dst: Any, *, src_dir_fd: Any = None, dst_dir_fd: Any = None) -> None:
            assert src_dir_fd is None and dst_dir_fd is None, "rename with dir fds is not traced"
            with _lock:
                real[name](src, dst)
                s, d = _rel(src), _rel(dst)
                if s is not None or d is not None:
                    assert s is not None and d is not None, f"rename across the root: {src} {dst}"
                    _events.append(("rename", s, d))

        return rename

    def traced_path_op(name: str, event: str) -> Any:
        def op(path: Any, *args: Any, dir_fd: int | None = None) -> None:
            assert dir_fd is None, f"os.{name} with dir_fd is not traced"
            with _lock:
                real[name](path, *args)
                if (rel := _rel(path)) is not None:
                    _events.append((event, rel))

        return op

    def untraced(name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"os.{name} is not traced: teach tests/crash/tracer.py")

        return refuse

    os.open = traced_open
    os.close = traced_close
    os.write = traced_write
    os.pwrite = traced_pwrite
    os.pwritev = traced_pwritev
    os.ftruncate = traced_ftruncate
    os.truncate = traced_truncate
    os.fsync = traced_fsync("fsync")
    os.fdatasync = traced_fsync("fdatasync")
    os.rename = traced_rename("rename")
    os.replace = traced_rename("replace")
    os.unlink = traced_path_op("unlink", "unlink")
    os.remove = traced_path_op("remove", "unlink")
    os.mkdir = traced_path_op("mkdir", "mkdir")  # os.makedirs calls it too
    os.rmdir = traced_path_op("rmdir", "rmdir")
    for name in (
        "writev",
        "link",
        "symlink",
        "posix_fallocate",
        "copy_file_range",
        "sendfile",
        "mknod",
    ):
        if hasattr(os, name):
            setattr(os, name, untraced(name))
    # rmtree by path, through the patched os.unlink/os.rmdir (not the dir_fd variant).
    shutil._use_fd_functions = False  # type: ignore[attr-defined]
    real_open = builtins.open

    def traced_builtin_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int) and _rel(file) is not None and set(mode) & set("wax+"):
            raise AssertionError(f"open({file!r}, {mode!r}) writes untraced: use os calls")
        return real_open(file, mode, *args, **kwargs)

    builtins.open = traced_builtin_open


def main(argv: list[str]) -> None:
    global _root
    name, root, trace = argv
    _root = os.path.abspath(root)
    _install()
    from . import workloads  # imports logstore: after the patches, which it never sees

    workloads.WORKLOADS[name](_root, mark)
    with _lock:
        events = list(_events)
    with open(trace, "wb") as f:  # outside the root: not traced
        pickle.dump(events, f)


if __name__ == "__main__":
    main(sys.argv[1:])
