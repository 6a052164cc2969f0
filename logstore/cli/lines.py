"""Lines of stdin as ``produce`` needs them: as they arrive, and stoppable by a signal.

A wait ends at a timeout (the linger) or at SIGINT/SIGTERM, which end the
wait instead of the process. Knows nothing of records or brokers.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from typing import Any

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class FdLines:
    """Lines of a file descriptor as they arrive; a wait ends at a timeout or a stop signal.

    Reads with ``select`` and ``os.read`` rather than a buffered reader, which
    would block until a whole buffer or line came: ``tail -f | logstore
    produce`` needs the partial batch written when the linger expires while
    stdin is idle. While it is open, SIGINT and SIGTERM only set ``stopped_by``
    (a wakeup pipe ends the ``select``), so the caller writes what was read
    and closes the broker instead of dying with lines in memory.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._partial = b""  # bytes after the last newline read
        self.eof = False
        self.stopped_by: int | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # set_wakeup_fd requires it
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w)
        self._old_handlers = {
            s: signal.signal(s, self._on_signal)
            for s in _STOP_SIGNALS
            if signal.getsignal(s) is not signal.SIG_IGN  # e.g. nohup: ignored stays ignored
        }

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopped_by = signum

    @property
    def unfinished_bytes(self) -> int:
        """Bytes read after the last newline (a line still being written)."""
        return len(self._partial)

    def read(self, timeout: float | None) -> list[bytes]:
        """The complete lines that arrive within ``timeout`` seconds (``None``: no limit).

        At end of input a last line without a newline counts as complete.
        """
        if self.eof or self.stopped_by is not None:
            return []
        ready, _, _ = select.select([self._fd, self._wake_r], [], [], timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 512)  # drain: only our handlers' flag matters
        if self._fd not in ready or self.stopped_by is not None:
            return []
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            self.eof = True
            last, self._partial = self._partial, b""
            return [last] if last else []
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return lines

    def close(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        os.close(self._wake_r)
        os.close(self._wake_w)


class StreamLines:
    """The same interface over a Python stream without a file descriptor (a test's stdin)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.eof = False
        self.stopped_by: int | None = None
        self.unfinished_bytes = 0

    def read(self, timeout: float | None) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(1 << 16)
        if not lines:
            self.eof = True
        return [line[:-1] if line.endswith(b"\n") else line for line in lines]

    def close(self) -> None:
        pass


def stdin_lines() -> FdLines | StreamLines:
    """Stdin's lines: read from its file descriptor when it has one, else from the stream."""
    stream = sys.stdin.buffer
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return StreamLines(stream)
    return FdLines(fd)
