"""The one scheduler of housekeeping: retention, compaction and interval fsyncs.

One ``Maintenance`` runs one daemon thread for everything handed to it: a
``Broker`` shares its own across every partition, a standalone ``Log`` makes
one unless the caller passes a shared one (``Log.open(..., maintenance=...)``).
A task is a callable, either periodic (``every``: the maintenance pass, the
interval fsync) or once, as soon as the thread is free (``soon``: the
retention and compaction a roll made due). The thread starts with the first
task, so a log with nothing that can become due never has one. Periods run
on the monotonic clock (a test's fake clock does not move by itself). Tasks
run outside every partition lock; a task takes the locks it needs, so a slow
archive script stalls only the maintenance thread, never an append.

Knows no logs or brokers: it is handed callables and the object they belong to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass
class _Task:
    owner: object
    run: Callable[[], None]
    period_s: float | None  # None: run once
    due: float


class Maintenance:
    """A housekeeping thread shared by whoever hands it tasks; ``close`` stops it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: list[_Task] = []
        self._changed = threading.Condition()
        self._stopped = False
        self._running: _Task | None = None
        self._thread: threading.Thread | None = None

    def every(self, period_ms: int, task: Callable[[], None], *, owner: object) -> None:
        """Run ``task`` every ``period_ms`` (at least 1 ms), first one period from now.

        An exception from ``task`` is logged and the task stays scheduled:
        housekeeping must outlive one failed pass.
        """
        period_s = max(period_ms, 1) / 1000
        with self._changed:
            self._add_locked(_Task(owner, task, period_s, time.monotonic() + period_s))

    def soon(self, task: Callable[[], None], *, owner: object) -> None:
        """Run ``task`` once, before any periodic task not yet due.

        Not added again while the same task of the same owner still waits: a
        burst of rolls makes one pass due, not one per roll.
        """
        with self._changed:
            if not any(
                t.period_s is None and t.owner is owner and t.run == task for t in self._tasks
            ):
                self._add_locked(_Task(owner, task, None, time.monotonic()))

    def _add_locked(self, task: _Task) -> None:
        """Under ``_changed``: schedule ``task``, starting the thread on the first one."""
        if self._stopped:
            return
        self._tasks.append(task)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no one-off task waits or any task runs; false if ``timeout`` passed first.

        What a caller (a test) uses to see the work a roll made due done.
        """
        with self._changed:
            return self._changed.wait_for(
                lambda: self._running is None and not any(t.period_s is None for t in self._tasks),
                timeout,
            )

    def cancel(self, owner: object, *, timeout: float = 60) -> None:
        """Drop ``owner``'s tasks and wait (bounded) until none of them is running."""
        with self._changed:
            self._tasks = [t for t in self._tasks if t.owner is not owner]
            self._changed.notify_all()
            if threading.current_thread() is self._thread:
                return  # a task cancelling its own owner: it finishes as it returns
            deadline = time.monotonic() + timeout
            while self._running is not None and self._running.owner is owner:
                left = deadline - time.monotonic()
                if left <= 0 or not self._changed.wait(left):
                    break  # bounded: a hung archive hook must not hang a close

    def close(self, *, timeout: float = 60) -> None:
        """Stop the thread and join it (bounded); idempotent. Waiting tasks are dropped."""
        with self._changed:
            self._stopped = True
            self._tasks.clear()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    @property
    def threads(self) -> int:
        """Threads running for this object: 0 or 1."""
        thread = self._thread
        return int(thread is not None and thread.is_alive())

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopped:
                    now = time.monotonic()
                    due = [t for t in self._tasks if t.due <= now]
                    if due:
                        break
                    wake = min((t.due for t in self._tasks), default=now + 3600)
                    self._changed.wait(wake - now)
                if self._stopped:
                    return
                task = min(due, key=lambda t: t.due)
                if task.period_s is None:
                    self._tasks.remove(task)
                self._running = task
            try:
                task.run()
            except Exception:  # one failed pass must not end everyone's housekeeping
                logger.exception("%s: maintenance task failed", self.name)
            finally:
                with self._changed:
                    self._running = None
                    if task.period_s is not None:
                        task.due = time.monotonic() + task.period_s
                    self._changed.notify_all()
