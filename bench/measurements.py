"""What the benchmark measured: the names of workloads and engines, one measurement, all of them.

Shared by the harness (``run.py``, which takes measurements in child processes)
and the report (``report.py``, which turns them into tables); knows nothing of
either, or of any engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAIN, FSYNC, KIB, PRODUCER = "append-scan", "append-fsync", "1kib", "producer"
COMPILED, PURE, SQLITE, PLAIN, LMDB, KAFKA = (
    "logstore",
    "logstore-pure",
    "sqlite",
    "plain-file",
    "lmdb",
    "kafka-python",
)

PAIRS_NOT_SUPPORTED = "n/a: pairs not supported by this build"


@dataclass(frozen=True)
class Measurement:
    """One timed operation: seconds, records and bytes seen, RSS in KiB.

    ``cpu_seconds`` is the process CPU time of the timed operation
    (``time.process_time``): much lower than ``seconds`` means the process waited
    (I/O, fsync, or other load). ``rss_before_kb`` is the resident size just
    before it; ``rss_peak_kb`` the peak during it (since the process started if
    the peak could not be reset, see ``peak_reset``). ``note`` set means the
    operation does not apply to the build measured (the note says why, the
    numbers are zero); ``extra`` holds a phase's own figures (the producer's
    latency percentiles, in ms).
    """

    seconds: float
    cpu_seconds: float
    records: int
    payload_bytes: int
    rss_before_kb: int
    rss_peak_kb: int
    peak_reset: bool
    profile: str = ""
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def not_applicable(cls, note: str) -> Measurement:
        return cls(0.0, 0.0, 0, 0, 0, 0, peak_reset=False, note=note)


def _speed(m: Measurement) -> float:
    return m.records / m.seconds if m.seconds > 0 else 0.0


@dataclass
class Results:
    """Every repeat of every measurement: ``runs[workload][engine][phase]``.

    A measurement that does not apply to the build (``note`` set) is kept apart
    in ``notes``, so that every figure is of real runs only.
    """

    runs: dict[str, dict[str, dict[str, list[Measurement]]]] = field(default_factory=dict)
    notes: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def add(self, workload: str, engine: str, phase: str, m: Measurement) -> None:
        if m.note:
            self.notes[workload, engine, phase] = m.note
            return
        by_engine = self.runs.setdefault(workload, {}).setdefault(engine, {})
        by_engine.setdefault(phase, []).append(m)

    def note(self, workload: str, engine: str, phase: str) -> str | None:
        """Why a phase has no figures for this engine, if the child said so."""
        return self.notes.get((workload, engine, phase))

    def all(self, workload: str, engine: str, phase: str) -> list[Measurement]:
        return self.runs.get(workload, {}).get(engine, {}).get(phase, [])

    def best(self, workload: str, engine: str, phase: str) -> Measurement | None:
        """The run with the most records per second (the shortest, for a fixed count)."""
        runs = self.all(workload, engine, phase)
        return max(runs, key=_speed) if runs else None

    def rate(self, workload: str, engine: str, phase: str) -> float | None:
        """Records per second of the best run."""
        m = self.best(workload, engine, phase)
        return None if m is None else m.records / m.seconds

    def mb_per_s(self, workload: str, engine: str, phase: str) -> float | None:
        m = self.best(workload, engine, phase)
        return None if m is None else m.payload_bytes / 1e6 / m.seconds

    def peak_rss_mb(self, workload: str, engine: str, phase: str) -> float | None:
        """Highest peak RSS over the repeats, in MB (1e6 bytes)."""
        runs = self.all(workload, engine, phase)
        return max(m.rss_peak_kb for m in runs) * 1024 / 1e6 if runs else None
