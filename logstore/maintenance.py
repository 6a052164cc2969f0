"""The one scheduler of housekeeping: retention, compaction and interval fsyncs.

One ``Maintenance`` runs one daemon thread for everything handed to it: a
``Broker`` shares its own across every partition, a standalone ``Log`` makes
one unless the caller passes a shared one (``Log.open(..., maintenance=...)``).
A task is a callable, either periodic (``every``: the maintenance pass, the
interval fsync) or once, as soon as the thread is free (``soon``: the
retention and compaction a roll made due). The thread starts with the first
task, so a log with nothing that can become due never has one; when that task
is periodic and a second or more away, the thread starts when it is first
due (a process-wide ``_Starter`` waits for that), so an open that is closed
again before then starts and joins no thread. Periods run
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


#: A first periodic task due this far away or more starts its thread when due, not now.
DEFER_START_S = 1.0


class _Starter:
    """One daemon thread per process that starts ``Maintenance`` threads when first due.

    Starting a thread waits for it to be scheduled (on a busy machine, up to
    milliseconds); an open whose first task is a minute away need not wait.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending: list[tuple[float, Maintenance]] = []
        self._thread: threading.Thread | None = None

    def start_at(self, due: float, maintenance: Maintenance) -> None:
        with self._changed:
            self._pending.append((due, maintenance))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="logstore-starter", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [p for p in self._pending if p[0] <= now]
                if not due:
                    wake = min((p[0] for p in self._pending), default=None)
                    self._changed.wait(None if wake is None else wake - now)
                    continue
                self._pending = [p for p in self._pending if p[0] > now]
            for _, maintenance in due:
                maintenance.start_thread()


_STARTER = _Starter()


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
        self._start_due: float | None = None  # when the ``_Starter`` starts the thread

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
            if task.period_s is not None and task.due - time.monotonic() >= DEFER_START_S:
                if self._start_due is None or task.due < self._start_due:
                    self._start_due = task.due
                    _STARTER.start_at(task.due, self)
                return
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._changed.notify_all()

    def start_thread(self) -> None:
        """Start the thread now if tasks wait for it (``_Starter``, when the first is due)."""
        with self._changed:
            if self._thread is None and not self._stopped and self._tasks:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._start_due = None

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
