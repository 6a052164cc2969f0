"""The producer rows: ``Log.producer`` sending from a user's loop, every handle checked.

Runs inside a child process of ``bench/run.py`` (phases ``producer-*``), with the
logstore build under test. The log is opened with ``fsync="always"``, so a
handle resolves only once its batch is on stable storage: the latency measured
(``perf_counter`` at ``send`` and in the handle's done-callback) is
send-to-durable, and records/s counts from the first ``send`` until every record
sent is durable (``flush`` returned, or every thread has its handles' results).

Sending stops early at ``deadline_s`` (checked every 1,000 records), so a slow
build cannot stall the benchmark; the rate is of the records actually sent.
After the clock, the handles' offsets are checked (consecutive from 0 for one
thread; for several, each thread's in increasing order and all of them together
exactly ``0..n-1``) and the log is read back: the record at each handle's offset
is the one that was sent with it.

Knows nothing of the other engines, and of the report: it returns numbers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from workload import Columns

#: The producer settings of every row but ``linger_ms`` (issue 14's API).
PRODUCER_ARGS: dict[str, int] = {
    "batch_records": 1000,
    "batch_bytes": 1 << 20,
    "max_buffered_bytes": 32 << 20,
    "max_block_ms": 60_000,
}
#: How long a handle's result may take once sending is over before the run fails.
RESULT_TIMEOUT_S = 120.0
NOT_AVAILABLE = "n/a: no producer in this build"

M = TypeVar("M")


@dataclass(frozen=True)
class Config:
    """One producer row: the phase name, ``linger_ms`` and the sending threads."""

    phase: str
    linger_ms: int
    threads: int

    @property
    def label(self) -> str:
        senders = "1 thread" if self.threads == 1 else f"{self.threads} threads"
        return f"linger {self.linger_ms} ms, {senders}"


CONFIGS = (
    Config("producer-0", 0, 1),
    Config("producer-5", 5, 1),
    Config("producer-50", 50, 1),
    Config("producer-5x8", 5, 8),
)
BY_PHASE = {c.phase: c for c in CONFIGS}


def available() -> bool:
    """Whether the logstore imported here has ``Log.producer``."""
    import logstore

    return hasattr(logstore.Log, "producer")


@dataclass(frozen=True)
class Sent:
    """What a timed run sent: the records, and send-to-durable latencies (s) if measured."""

    records: int
    latencies: Sequence[float] = ()


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of an already sorted, non-empty sequence."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


class Run:
    """One producer row on one log directory: ``prepare``, then the timed ``go``, then ``check``.

    ``prepare`` opens the log and the producer and starts any sending threads
    (they wait on a barrier), so that ``go`` times the sending alone.
    """

    def __init__(self, directory: str, config: Config, data: Columns, deadline_s: float) -> None:
        self.directory = directory
        self.config = config
        self.data = data
        self.deadline_s = deadline_s
        self._log: Any = None
        self._producer: Any = None
        self._threads: list[threading.Thread] = []
        self._barrier = threading.Barrier(config.threads + 1)
        #: Per thread: the index of its first record and the offsets its handles gave.
        self._starts: list[int] = []
        self._offsets: list[list[int]] = []
        self._errors: list[BaseException] = []
        self._handles: list[Any] = []  # one thread's, resolved after the clock
        self._sent_at: list[float] = []
        self._done_at: list[float] = []

    def prepare(self) -> None:
        import logstore

        self._log = logstore.Log.open(self.directory, logstore.LogConfig(fsync="always"))
        self._producer = self._log.producer(linger_ms=self.config.linger_ms, **PRODUCER_ARGS)
        if self.config.threads > 1:
            n, k = len(self.data), self.config.threads
            self._starts = [n * t // k for t in range(k)]
            ends = [*self._starts[1:], n]
            self._offsets = [[] for _ in range(k)]
            self._threads = [
                threading.Thread(target=self._worker, args=(t, start, end), daemon=True)
                for t, (start, end) in enumerate(zip(self._starts, ends))
            ]
            for thread in self._threads:
                thread.start()

    def go(self) -> int:
        """The timed part: send, and wait until every record sent is durable; return them.

        One thread: ``flush`` returning is the end. Several: each thread takes its
        handles' results once it has sent, as a threaded user would.
        """
        if self.config.threads == 1:
            return self._send_one()
        self._barrier.wait()
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        return sum(len(o) for o in self._offsets)

    def _send_one(self) -> int:
        perf = time.perf_counter
        keys, values = self.data.keys, self.data.values
        n = len(keys)
        self._sent_at = sent_at = [0.0] * n
        self._done_at = done_at = [0.0] * n

        def done(i: int, _handle: object) -> None:
            done_at[i] = perf()

        handles: list[Any] = []
        self._handles = handles
        send, append = self._producer.send, handles.append
        stop = perf() + self.deadline_s
        for i, (k, v) in enumerate(zip(keys, values)):
            if not i % 1000 and perf() > stop:
                break
            sent_at[i] = perf()
            handle = send(v, key=k)
            handle.add_done_callback(partial(done, i))
            append(handle)
        self._producer.flush()
        return len(handles)

    def _latencies(self) -> list[float]:
        """Send-to-durable latencies (s), sorted, once every callback ran.

        A callback may run on the producer's thread a moment after ``flush``
        returned; one that never runs fails the benchmark.
        """
        count = len(self._handles)
        done_at = self._done_at[:count]
        deadline = time.perf_counter() + RESULT_TIMEOUT_S
        while 0.0 in done_at:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{done_at.count(0.0)} done-callbacks never ran")
            time.sleep(0.01)
            done_at = self._done_at[:count]
        return sorted(d - s for s, d in zip(self._sent_at, done_at))

    def _worker(self, t: int, start: int, end: int) -> None:
        try:
            keys, values = self.data.keys[start:end], self.data.values[start:end]
            handles: list[Any] = []
            send, append = self._producer.send, handles.append
            perf = time.perf_counter
            self._barrier.wait()
            stop = perf() + self.deadline_s
            for j, (k, v) in enumerate(zip(keys, values)):
                if not j % 1000 and perf() > stop:
                    break
                append(send(v, key=k))
            self._offsets[t] = [h.result(timeout=RESULT_TIMEOUT_S) for h in handles]
        except BaseException as exc:  # re-raised by go() in the main thread
            self._errors.append(exc)

    def check(self) -> Sent:
        """Close, prove every handle's offset holds the record sent with it; say what was sent."""
        latencies: list[float] = []
        if self.config.threads == 1:
            self._starts = [0]
            self._offsets = [[h.result(timeout=RESULT_TIMEOUT_S) for h in self._handles]]
            latencies = self._latencies()
        self._producer.close()
        try:
            return self._check_stored(latencies)
        finally:
            self._log.close()

    def _check_stored(self, latencies: list[float]) -> Sent:
        """Every handle's offset holds the record sent with it (the log still open)."""
        log = self._log
        expected: dict[int, tuple[bytes, bytes]] = {}
        keys, values = self.data.keys, self.data.values
        for start, offsets in zip(self._starts, self._offsets):
            if offsets != sorted(offsets):
                raise RuntimeError("one thread's handles resolved to offsets out of order")
            for j, offset in enumerate(offsets):
                expected[offset] = (keys[start + j], values[start + j])
        total = sum(len(o) for o in self._offsets)
        if sorted(expected) != list(range(total)) or log.end_offset != total:
            raise RuntimeError(
                f"{total} handles resolved to {len(expected)} distinct offsets; "
                f"the log ends at {log.end_offset}"
            )
        for r in log.scan():
            if (r.key, r.value) != expected[r.offset]:
                raise RuntimeError(f"offset {r.offset} does not hold the record sent there")
        return Sent(total, latencies)


def measure_config(
    directory: str,
    warm_directory: str,
    config: Config,
    data: Columns,
    warm: Columns,
    deadline_s: float,
    measure: Callable[[Callable[[], int]], tuple[int, M]],
) -> tuple[Sent, M]:
    """A warm-up run on ``warm``, then the run that ``measure`` times; both checked."""
    warm_run = Run(warm_directory, config, warm, deadline_s)
    warm_run.prepare()
    warm_run.go()
    warm_run.check()
    run = Run(directory, config, data, deadline_s)
    run.prepare()
    count, m = measure(run.go)
    sent = run.check()
    if sent.records != count:
        raise RuntimeError(f"{count} records sent, {sent.records} checked")
    return sent, m
