"""Side-by-side benchmark of logstore and other embeddable stores, in one run.

Usage (from the repository root)::

    .venv/bin/python bench/run.py                 # quick (`make bench`): a few minutes
    .venv/bin/python bench/run.py --full          # larger sizes
    .venv/bin/python bench/run.py --engines logstore,sqlite,lmdb --repeats 2 --no-extras
    .venv/bin/python bench/run.py --profile       # also cProfile logstore's phases
    .venv/bin/python bench/run.py --baseline REV  # also the package at git REV, side by side

Workloads, for every engine where they apply:

1. append ``--records`` records (16-byte keys, 100-byte values) in batches of 1,000, no fsync;
2. the same with an fsync per batch (``--fsync-records`` records);
3. scan all of workload 1's store;
4. 1 KiB values (``--kib-records`` records): append and scan, in MB/s;
5. reopen: the time to open workload 1's store after a clean close;
6. peak RSS of every phase;
7. logstore only: ``read_batches`` over workload 1's log, next to reading its segment files.

Every measurement runs in a fresh child process (this script with ``--child``) so
that peak RSS (``ru_maxrss``) belongs to one engine and one phase: an append
child generates the input, warms up and appends; a scan child warms up, times
reopening the store, then scans it. The pure-Python logstore runs in children
with ``LOGSTORE_PURE=1``; every logstore child checks ``logstore.__speedups__``.
Repeats are interleaved across engines (round-robin, rotating the order) so that
noise on a shared machine hits all engines alike; the best time of the repeats
is reported. Writes ``bench/RESULTS.md`` and PNG charts under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import json
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import baseline
from engines import ENGINES, SQLITE_SYNC_MODES, Engine, LogstoreEngine, Settings
from workload import Workload, generate

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "RESULTS.md")
DEFAULT_CHARTS = os.path.join(HERE, "results")
DEFAULT_REPEATS = 3
CHILD_TIMEOUT_S = 1800

R = TypeVar("R")


@dataclass(frozen=True)
class Sizes:
    """Records in workloads 1 (and 3, 5, 7), 2 and 4."""

    records: int
    fsync_records: int
    kib_records: int


QUICK = Sizes(records=1_000_000, fsync_records=200_000, kib_records=100_000)
FULL = Sizes(records=5_000_000, fsync_records=1_000_000, kib_records=1_000_000)

MAIN, FSYNC, KIB = "append-scan", "append-fsync", "1kib"
COMPILED, PURE, SQLITE, PLAIN, LMDB, KAFKA = (
    "logstore",
    "logstore-pure",
    "sqlite",
    "plain-file",
    "lmdb",
    "kafka-python",
)

# Issue 6 targets for the compiled logstore (records/s, ratios of records/s, GB/s).
TARGET_APPEND_RATE = 2_000_000
TARGET_APPEND_VS_LMDB = 1.2
TARGET_APPEND_VS_SQLITE = 5.0
TARGET_SCAN_RATE = 2_000_000
TARGET_SCAN_VS_LMDB = 1.4
TARGET_SCAN_VS_SQLITE = 2.0
TARGET_READ_BATCHES_GB_S = 1.0
TARGET_FSYNC_VS_PLAIN = 0.9
# Earlier pure-Python figures on this machine (another run: indicative only).
PREVIOUS_PURE_APPEND = 1_200_000
PREVIOUS_PURE_SCAN = 920_000
# Issue 2 targets, now for the pure-Python fallback.
TARGET_PURE_APPEND_VS_SQLITE = 2.5
TARGET_PURE_APPEND_VS_KAFKA = 2.5
TARGET_PURE_SCAN_VS_KAFKA = 2.0
TARGET_PURE_SCAN_RSS_MB = 100.0


def workloads(sizes: Sizes, batch_size: int) -> dict[str, Workload]:
    return {
        MAIN: Workload(MAIN, records=sizes.records, batch_size=batch_size),
        FSYNC: Workload(FSYNC, records=sizes.fsync_records, batch_size=batch_size, fsync=True),
        KIB: Workload(KIB, records=sizes.kib_records, batch_size=batch_size, value_size=1024),
    }


#: The child phases run one after another on one directory, per workload.
STEPS = {MAIN: ("append", "scan", "read"), FSYNC: ("append",), KIB: ("append", "scan")}


# --------------------------------------------------------------------------- child side


@dataclass(frozen=True)
class ChildTask:
    """One child process: ``phase`` of ``engine`` on ``workload`` in ``directory``."""

    engine: str
    phase: str
    directory: str
    workload: Workload
    settings: Settings
    profile: bool = False

    def to_json(self) -> str:
        data = asdict(self)
        data["workload"] = self.workload.to_json()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ChildTask:
        data = json.loads(text)
        data["workload"] = Workload.from_json(data["workload"])
        data["settings"] = Settings(**data["settings"])
        return cls(**data)


@dataclass(frozen=True)
class Measurement:
    """One timed operation: seconds, records and bytes seen, RSS in KiB.

    ``cpu_seconds`` is the process CPU time of the timed operation
    (``time.process_time``): much lower than ``seconds`` means the process waited
    (I/O, fsync, or other load). ``rss_before_kb`` is the resident size just
    before it; ``rss_peak_kb`` the peak during it (since the process started if
    the peak could not be reset, see ``peak_reset``).
    """

    seconds: float
    cpu_seconds: float
    records: int
    payload_bytes: int
    rss_before_kb: int
    rss_peak_kb: int
    peak_reset: bool
    profile: str = ""


def max_rss_kb() -> int:
    """Peak resident set size of this process (KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def current_rss_kb() -> int:
    """Resident set size now (KiB); falls back to the peak where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return max_rss_kb()
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def start_rss_window() -> tuple[int, bool]:
    """Current RSS (KiB), and whether the peak was reset to it.

    On Linux, writing 5 to ``/proc/self/clear_refs`` resets the high-water mark
    that ``ru_maxrss`` reports, so the peak measured afterwards belongs to the
    timed operation alone (not to building the input, for example).
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    return current_rss_kb(), reset


def _profile_text(profiler: cProfile.Profile, top: int = 10) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def measure(fn: Callable[[], R], profile: bool = False) -> tuple[R, Measurement]:
    """Call ``fn`` once, timed; records and bytes are left for the caller to fill in."""
    gc.collect()
    profiler = cProfile.Profile() if profile else None
    rss_before, peak_reset = start_rss_window()
    if profiler:
        profiler.enable()
    cpu_start, start = time.process_time(), time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    if profiler:
        profiler.disable()
    m = Measurement(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        records=0,
        payload_bytes=0,
        rss_before_kb=rss_before,
        rss_peak_kb=max_rss_kb(),
        peak_reset=peak_reset,
        profile=_profile_text(profiler) if profiler else "",
    )
    return result, m


def check_codec(engine: type[Engine[Any]]) -> None:
    """Fail unless a logstore engine's child loaded the codec it is meant to measure."""
    if engine.speedups is None:
        return
    import logstore

    baseline.check_origin(engine)
    if logstore.__speedups__ != engine.speedups:
        raise RuntimeError(
            f"{engine.name}: logstore.__speedups__ is {logstore.__speedups__!r}, "
            f"expected {engine.speedups!r} (LOGSTORE_PURE={os.environ.get('LOGSTORE_PURE')!r})"
        )


def run_child(task: ChildTask) -> dict[str, Measurement]:
    """Run one phase in this (fresh) process, with a warm-up first."""
    cls = ENGINES[task.engine]
    check_codec(cls)
    workload = task.workload
    settings = replace(task.settings, fsync=workload.fsync)
    warm = cls(os.path.join(task.directory, "warmup"), settings)
    engine = cls(os.path.join(task.directory, "data"), settings)
    if task.phase == "append":
        # Warm-up: same code paths on a small, differently seeded data set. The scan
        # child warms up by reading this data set back.
        warm.append(warm.prepare(generate(workload.warmup())))
        warm.scan()
        prepared = engine.prepare(generate(workload))
        gc.collect()
        gc.freeze()  # the input is not the engine's garbage: keep it out of GC passes
        _, m = measure(lambda: engine.append(prepared), task.profile)
        return {
            "append": replace(m, records=workload.records, payload_bytes=workload.payload_bytes)
        }
    if task.phase == "scan":
        warm.scan()
        out: dict[str, Measurement] = {}
        warm_close = warm.open()
        if warm_close is not None:
            warm_close()
            close, m = measure(engine.open)
            assert close is not None
            close()
            out["open"] = replace(m, records=workload.records)
        (records, payload), m = measure(engine.scan, task.profile)
        if (records, payload) != (workload.records, workload.payload_bytes):
            raise RuntimeError(
                f"{task.engine} scan saw {records} records / {payload} bytes, expected "
                f"{workload.records} / {workload.payload_bytes}"
            )
        out["scan"] = replace(m, records=records, payload_bytes=payload)
        return out
    if task.phase == "read" and isinstance(engine, LogstoreEngine):
        engine.read_batches()  # warm-up: code paths and page cache
        engine.read_files()
        (batches, size), batches_m = measure(engine.read_batches)
        (files, file_size), files_m = measure(engine.read_files)
        return {
            "read-batches": replace(batches_m, records=batches, payload_bytes=size),
            "read-file": replace(files_m, records=files, payload_bytes=file_size),
        }
    raise ValueError(f"phase {task.phase!r} does not apply to {task.engine}")


def child_main(task_json: str) -> int:
    result = run_child(ChildTask.from_json(task_json))
    sys.stdout.write(json.dumps({k: asdict(m) for k, m in result.items()}) + "\n")
    return 0


# --------------------------------------------------------------------------- parent side


def spawn(task: ChildTask) -> dict[str, Measurement]:
    """Run ``task`` in a child interpreter and parse its one-line JSON answer."""
    env = {k: v for k, v in os.environ.items() if k != "LOGSTORE_PURE"}
    env.update(ENGINES[task.engine].env)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", task.to_json()],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{task.engine} {task.phase} child failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    return {phase: Measurement(**m) for phase, m in answer.items()}


def applies(engine: str, phase: str) -> bool:
    return phase != "read" or issubclass(ENGINES[engine], LogstoreEngine)


@dataclass
class Results:
    """Every repeat of every measurement: ``runs[workload][engine][phase]``."""

    runs: dict[str, dict[str, dict[str, list[Measurement]]]] = field(default_factory=dict)

    def add(self, workload: str, engine: str, phase: str, m: Measurement) -> None:
        by_engine = self.runs.setdefault(workload, {}).setdefault(engine, {})
        by_engine.setdefault(phase, []).append(m)

    def all(self, workload: str, engine: str, phase: str) -> list[Measurement]:
        return self.runs.get(workload, {}).get(engine, {}).get(phase, [])

    def best(self, workload: str, engine: str, phase: str) -> Measurement | None:
        runs = self.all(workload, engine, phase)
        return min(runs, key=lambda m: m.seconds) if runs else None

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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(
    names: Sequence[str], plan: dict[str, Workload], settings: Settings, repeats: int
) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory(prefix="logstore-bench-") as tmp:
        for rep in range(repeats):
            for i, (key, full) in enumerate(plan.items()):
                shift = (rep + i) % len(names)
                for name in [*names[shift:], *names[:shift]]:
                    workload = full.capped(ENGINES[name].max_records)
                    directory = os.path.join(tmp, f"{name}-{key}-{rep}")
                    for phase in STEPS[key]:
                        if not applies(name, phase):
                            continue
                        task = ChildTask(name, phase, directory, workload, settings)
                        for what, m in spawn(task).items():
                            results.add(key, name, what, m)
                            rates = (
                                f"{m.records / m.seconds:>12,.0f} rec/s  "
                                f"{m.payload_bytes / 1e6 / m.seconds:>9,.1f} MB/s"
                                if m.payload_bytes
                                else " " * 33
                            )
                            log(
                                f"  [{rep + 1}/{repeats}] {key:<12} {name:<13} {what:<12} "
                                f"{m.seconds:8.4f} s  {rates}  "
                                f"peak RSS {m.rss_peak_kb * 1024 / 1e6:7.1f} MB"
                            )
                    shutil.rmtree(directory)
    return results


def profile_logstore(
    names: Sequence[str], plan: dict[str, Workload], settings: Settings
) -> dict[str, str]:
    """cProfile of logstore's appends and scan (separate runs, not in the tables)."""
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="logstore-bench-profile-") as tmp:
        for name in (n for n in names if issubclass(ENGINES[n], LogstoreEngine)):
            for key, phases in ((MAIN, ("append", "scan")), (FSYNC, ("append",))):
                directory = os.path.join(tmp, f"{name}-{key}")
                for phase in phases:
                    task = ChildTask(name, phase, directory, plan[key], settings, profile=True)
                    out[f"{ENGINES[name].label} {phase} ({key})"] = spawn(task)[phase].profile
    return out


# --------------------------------------------------------------------------- report


def machine_info() -> list[tuple[str, str]]:
    import sqlite3
    from importlib.metadata import version

    import logstore

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    packages = ("logstore", "kafka-python", "lmdb", "diskcache", "persist-queue", "matplotlib")
    return [
        ("date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("platform", platform.platform()),
        ("cpu count", str(os.cpu_count())),
        ("load average at start", load),
        *((name, version(name)) for name in packages),
        ("logstore codec in the parent", logstore.__speedups__),
        ("sqlite", sqlite3.sqlite_version),
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    right = [False, *([True] * (len(headers) - 1))]

    def fmt(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "| " + " | ".join(parts) + " |"

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right))
        + "|"
    )
    return [fmt(headers), sep, *(fmt(r) for r in rows)]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _num(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def rate_table(results: Results, names: Sequence[str], workload: str, phase: str) -> list[str]:
    """records/s, MB/s and ratios to SQLite and the plain file of one phase of one workload."""
    headers = [
        "engine",
        "records",
        "records/s",
        "MB/s",
        "vs SQLite",
        "vs plain file",
        "peak RSS (MB)",
    ]
    sqlite, plain = (results.rate(workload, n, phase) for n in (SQLITE, PLAIN))
    rows = []
    for name in names:
        m = results.best(workload, name, phase)
        rate = results.rate(workload, name, phase)
        rows.append(
            [
                ENGINES[name].label,
                _num(None if m is None else m.records),
                _num(rate),
                _num(results.mb_per_s(workload, name, phase), ",.1f"),
                _x(_ratio(rate, sqlite)),
                _x(_ratio(rate, plain)),
                _num(results.peak_rss_mb(workload, name, phase), ",.1f"),
            ]
        )
    return _table(headers, rows)


def open_ms(results: Results, name: str) -> float | None:
    m = results.best(MAIN, name, "open")
    return None if m is None else m.seconds * 1000


def reopen_table(results: Results, names: Sequence[str]) -> list[str]:
    headers = ["engine", "records in store", "open (ms)", "speed vs SQLite", "vs plain file"]
    sqlite, plain = open_ms(results, SQLITE), open_ms(results, PLAIN)
    rows = []
    for name in names:
        ms = open_ms(results, name)
        m = results.best(MAIN, name, "open")
        rows.append(
            [
                ENGINES[name].label,
                _num(None if m is None else m.records),
                _num(ms, ",.3f"),
                _x(_ratio(sqlite, ms)),
                _x(_ratio(plain, ms)),
            ]
        )
    return _table(headers, rows)


def read_rows(results: Results, names: Sequence[str]) -> list[tuple[str, float | None]]:
    """(label, GB/s) of every ``read_batches`` sweep and plain read of the same segment files."""
    rows: list[tuple[str, float | None]] = []
    for name in names:
        if not applies(name, "read"):
            continue
        label = ENGINES[name].label
        for phase, what in (("read-batches", "read_batches"), ("read-file", "plain file read")):
            mb_s = results.mb_per_s(MAIN, name, phase)
            rows.append((f"{label}: {what}", None if mb_s is None else mb_s / 1000))
    return rows


def read_table(results: Results, names: Sequence[str]) -> list[str]:
    headers = ["path", "bytes", "batches or files", "time (ms)", "GB/s", "vs plain file read"]
    rows = []
    for name in names:
        if not applies(name, "read"):
            continue
        plain = results.mb_per_s(MAIN, name, "read-file")
        for phase, what in (
            ("read-batches", "`read_batches(offset, 1 MiB)`, headers parsed"),
            ("read-file", "plain read of its segment files, 1 MiB chunks"),
        ):
            m = results.best(MAIN, name, phase)
            mb_s = results.mb_per_s(MAIN, name, phase)
            rows.append(
                [
                    f"{ENGINES[name].label}: {what}",
                    _num(None if m is None else m.payload_bytes),
                    _num(None if m is None else m.records),
                    _num(None if m is None else m.seconds * 1000, ",.1f"),
                    _num(None if mb_s is None else mb_s / 1000, ".2f"),
                    _x(_ratio(mb_s, plain)),
                ]
            )
    return _table(headers, rows)


def detail_table(results: Results, names: Sequence[str]) -> list[str]:
    headers = [
        "engine",
        "append s (all repeats)",
        "append CPU s (best run)",
        "scan s (all repeats)",
        "scan CPU s (best run)",
        "RSS before append (MB)",
        "RSS before scan (MB)",
    ]
    rows = []
    for name in names:
        row = [ENGINES[name].label]
        for phase in ("append", "scan"):
            best = results.best(MAIN, name, phase)
            row += [
                " / ".join(f"{m.seconds:.3f}" for m in results.all(MAIN, name, phase)),
                _num(None if best is None else best.cpu_seconds, ".3f"),
            ]
        for phase in ("append", "scan"):
            before = [m.rss_before_kb * 1024 / 1e6 for m in results.all(MAIN, name, phase)]
            row.append(_num(max(before, default=None), ".1f"))
        rows.append(row)
    return _table(headers, rows)


#: What the baseline table compares: (workload, phase, what is measured).
BASELINE_ROWS = (
    (MAIN, "append", "append, 100-byte values"),
    (FSYNC, "append", "append, fsync per batch"),
    (MAIN, "scan", "scan, 100-byte values"),
    (KIB, "append", "append, 1 KiB values"),
    (KIB, "scan", "scan, 1 KiB values"),
    (MAIN, "open", "reopen after a clean close"),
    (MAIN, "read-batches", "read_batches"),
)


def baseline_table(results: Results, names: Sequence[str]) -> list[str]:
    """This tree over the baseline revision, per path and codec (``--baseline`` only)."""
    pairs = [(n.split("@")[0], n) for n in names if "@" in n]
    if not pairs:
        return []
    rows = []
    for workload, phase, what in BASELINE_ROWS:
        for this, base in pairs:
            now, before = (results.rate(workload, n, phase) for n in (this, base))
            rows.append(
                [what, ENGINES[this].label, _num(now), _num(before), _x(_ratio(now, before))]
            )
    rev = ENGINES[pairs[0][1]].label.split("@")[-1]
    return [
        f"## This tree against `{rev}` (records/s; reopen: records in the store over the open time; read_batches: batches/s)",
        "",
        *_table(["path", "codec", "this tree", f"at {rev}", "ratio"], rows),
        "",
    ]


def _check(label: str, value: float | None, goal: float, fmt: str, below: bool = False) -> str:
    """One target line: MET / NOT MET with the measured value (``below``: value < goal).

    ``fmt`` is a format spec, optionally followed by a space and a unit (``".2f x"``).
    """
    if value is None:
        return f"- n/a: {label} (engine not run)"
    spec, _, unit = fmt.partition(" ")
    ok = value < goal if below else value >= goal
    sign = "<" if below else ">="
    return (
        f"- {'MET' if ok else 'NOT MET'}: {label}: {format(value, spec)}{unit} "
        f"(target {sign} {format(goal, spec)}{unit})"
    )


def target_lines(results: Results) -> list[str]:
    """Issue 6 targets (compiled), the pure fallback's figures and issue 2 targets (pure)."""

    def rate(engine: str, phase: str, workload: str = MAIN) -> float | None:
        return results.rate(workload, engine, phase)

    def vs(engine: str, phase: str, other: str, workload: str = MAIN) -> float | None:
        return _ratio(rate(engine, phase, workload), rate(other, phase, workload))

    read_mb_s = results.mb_per_s(MAIN, COMPILED, "read-batches")
    pure_append, pure_scan = rate(PURE, "append"), rate(PURE, "scan")
    return [
        "Issue 6, compiled codec (all ratios from this run):",
        "",
        _check("append_many", rate(COMPILED, "append"), TARGET_APPEND_RATE, ",.0f  records/s"),
        _check("append vs lmdb", vs(COMPILED, "append", LMDB), TARGET_APPEND_VS_LMDB, ".2f x"),
        _check(
            "append vs SQLite", vs(COMPILED, "append", SQLITE), TARGET_APPEND_VS_SQLITE, ".2f x"
        ),
        _check("scan", rate(COMPILED, "scan"), TARGET_SCAN_RATE, ",.0f  records/s"),
        _check("scan vs lmdb cursor", vs(COMPILED, "scan", LMDB), TARGET_SCAN_VS_LMDB, ".2f x"),
        _check(
            "scan vs SQLite SELECT", vs(COMPILED, "scan", SQLITE), TARGET_SCAN_VS_SQLITE, ".2f x"
        ),
        _check(
            "read_batches sequential",
            None if read_mb_s is None else read_mb_s / 1000,
            TARGET_READ_BATCHES_GB_S,
            ".2f  GB/s",
        ),
        _check(
            "append with an fsync per batch vs the plain file doing the same fsyncs",
            vs(COMPILED, "append", PLAIN, FSYNC),
            TARGET_FSYNC_VS_PLAIN,
            ".2f x",
        ),
        "",
        "Pure-Python fallback (`LOGSTORE_PURE=1`):",
        "",
        f"- append {_num(pure_append)} records/s, scan {_num(pure_scan)} records/s; the earlier "
        f"pure figures were about {PREVIOUS_PURE_APPEND:,} and {PREVIOUS_PURE_SCAN:,} "
        f"({_x(_ratio(pure_append, PREVIOUS_PURE_APPEND))} and "
        f"{_x(_ratio(pure_scan, PREVIOUS_PURE_SCAN))} of them; across runs, so indicative only)",
        f"- compiled / pure: append {_x(vs(COMPILED, 'append', PURE))}, "
        f"scan {_x(vs(COMPILED, 'scan', PURE))}",
        _check(
            "issue 2, pure append vs SQLite",
            vs(PURE, "append", SQLITE),
            TARGET_PURE_APPEND_VS_SQLITE,
            ".2f x",
        ),
        _check(
            "issue 2, pure append vs kafka-python builder",
            vs(PURE, "append", KAFKA),
            TARGET_PURE_APPEND_VS_KAFKA,
            ".2f x",
        ),
        _check(
            "issue 2, pure scan vs kafka-python reader",
            vs(PURE, "scan", KAFKA),
            TARGET_PURE_SCAN_VS_KAFKA,
            ".2f x",
        ),
        _check(
            "issue 2, pure scan peak RSS",
            results.peak_rss_mb(MAIN, PURE, "scan"),
            TARGET_PURE_SCAN_RSS_MB,
            ".1f  MB",
            below=True,
        ),
    ]


def _formatter(spec: str) -> Callable[[float], str]:
    return lambda value: format(value, spec)


def write_charts(results: Results, names: Sequence[str], directory: str) -> list[str]:
    """One PNG per workload; return markdown image lines (paths relative to RESULTS.md)."""
    from charts import bar_chart

    os.makedirs(directory, exist_ok=True)
    labels = [ENGINES[n].label for n in names]
    specs: list[tuple[str, str, str, dict[str, list[float | None]], str]] = [
        (
            "append",
            "Append, 100-byte values, batches of 1,000, no fsync",
            "records/s",
            {"append": [results.rate(MAIN, n, "append") for n in names]},
            ",.0f",
        ),
        (
            "append-fsync",
            "Append with an fsync per batch (see notes for diskcache, persist-queue)",
            "records/s",
            {"append": [results.rate(FSYNC, n, "append") for n in names]},
            ",.0f",
        ),
        (
            "scan",
            "Scan all records, 100-byte values",
            "records/s",
            {"scan": [results.rate(MAIN, n, "scan") for n in names]},
            ",.0f",
        ),
        (
            "kib",
            "1 KiB values: append and scan",
            "MB/s (key + value bytes)",
            {p: [results.mb_per_s(KIB, n, p) for n in names] for p in ("append", "scan")},
            ",.0f",
        ),
        (
            "reopen",
            "Reopen after a clean close (lower is better)",
            "ms",
            {"open": [open_ms(results, n) for n in names]},
            ",.3f",
        ),
    ]
    lines = []
    for stem, title, unit, series, spec in specs:
        path = os.path.join(directory, f"{stem}.png")
        bar_chart(path, title, unit, labels, series, _formatter(spec))
        lines.append(f"![{title}]({os.path.relpath(path, HERE)})")
    reads = read_rows(results, names)
    if reads:
        path = os.path.join(directory, "read-batches.png")
        title = "Sequential read of the 100-byte-value log"
        series = {"GB/s": [v for _, v in reads]}
        bar_chart(path, title, "GB/s", [k for k, _ in reads], series, lambda v: f"{v:.2f}")
        lines.append(f"![{title}]({os.path.relpath(path, HERE)})")
    return lines


def render(
    results: Results,
    names: Sequence[str],
    plan: dict[str, Workload],
    settings: Settings,
    repeats: int,
    command: str,
    info: list[tuple[str, str]],
    elapsed: float,
    charts: list[str],
    profiles: dict[str, str],
) -> list[str]:
    main, fsync, kib = plan[MAIN], plan[FSYNC], plan[KIB]
    capped = [n for n in names if ENGINES[n].max_records is not None]
    all_reset = all(
        m.peak_reset
        for by_engine in results.runs.values()
        for by_phase in by_engine.values()
        for runs in by_phase.values()
        for m in runs
    )
    out = [
        "# logstore benchmark results",
        "",
        "Generated by `bench/run.py`; rerun with `make bench` (or `make bench ARGS=--full`). "
        "Every engine runs on the same workloads in this one run, repeats interleaved.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in info),
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        "## Workloads",
        "",
        f"1. append: {main.records:,} records ({main.key_size}-byte random keys, "
        f"{main.value_size}-byte random values, seed {main.seed}; payload "
        f"{main.payload_bytes / 1e6:,.1f} MB) in batches of {main.batch_size:,}, no fsync",
        f"2. append with an fsync per batch: {fsync.records:,} records, the same shape "
        f"({fsync.records // fsync.batch_size:,} batches, so as many fsyncs)",
        "3. scan: every record of workload 1 read back (records and key + value bytes counted "
        "and checked against the input)",
        f"4. 1 KiB values: {kib.records:,} records ({kib.key_size}-byte keys, "
        f"{kib.value_size:,}-byte values; payload {kib.payload_bytes / 1e6:,.1f} MB) appended "
        "then scanned, in MB/s",
        "5. reopen: the time to open workload 1's store after a clean close, in a fresh process",
        "6. peak RSS of every phase (tables below)",
        "7. logstore only: `read_batches` over workload 1's whole log, next to reading the same "
        "segment files in 1 MiB chunks",
        "",
        f"- best of {repeats} repeats; each phase in a fresh process after a warm-up on a small "
        f"data set of the same shape (a tenth of the workload, at most "
        f"{main.warmup().records:,} records); wall time of these workloads {elapsed:.0f} s",
        f"- {', '.join(ENGINES[n].label for n in capped)}: too slow for these sizes, so they "
        "run capped workloads (the `records` column); their rates are per record all the same"
        if capped
        else "- every engine runs the full workloads",
        "- MB = 1e6 bytes, GB = 1e9 bytes; MB/s counts key + value bytes; ratios are of "
        "records/s (of speed for reopen: the other engine's time over this one's)",
        "",
        "## Targets",
        "",
        *target_lines(results),
        "",
        *baseline_table(results, names),
        "## 1. Append, 100-byte values, no fsync",
        "",
        *rate_table(results, names, MAIN, "append"),
        "",
        "## 2. Append with an fsync per batch",
        "",
        *rate_table(results, names, FSYNC, "append"),
        "",
        "What each engine does per batch here:",
        "",
        *(f"- {ENGINES[n].label}: {ENGINES[n].fsync_note}" for n in names),
        "",
        "## 3. Scan, 100-byte values",
        "",
        *rate_table(results, names, MAIN, "scan"),
        "",
        "## 4. 1 KiB values",
        "",
        "Append:",
        "",
        *rate_table(results, names, KIB, "append"),
        "",
        "Scan:",
        "",
        *rate_table(results, names, KIB, "scan"),
        "",
        "## 5. Reopen after a clean close",
        "",
        *reopen_table(results, names),
        "",
        "## 7. Sequential read of the log (logstore only)",
        "",
        *read_table(results, names),
        "",
        "## Charts",
        "",
        *charts,
        "",
        "## Details (workloads 1 and 3)",
        "",
        *detail_table(results, names),
        "",
        "Engines:",
        "",
        *(f"- {ENGINES[n].describe(settings)}" for n in names),
        "",
        "Notes:",
        "",
        "- Append time covers opening the store, appending every batch and closing it; the "
        "input objects (`Message`s, row tuples, `(key, value)` pairs, packed records) are built "
        "before timing and frozen out of the garbage collector (`gc.freeze()`).",
        "- Scan time covers opening, reading every record (key and value as separate bytes "
        "objects) and closing. Files were just written, so scans read from the page cache.",
        "- Reopen is timed in the scan child, after a warm-up open of the small warm-up store, "
        "and covers opening the store and learning where the next record goes; the close is "
        "not timed.",
        "- Peak RSS is `ru_maxrss` of the child process for that phase (highest over repeats), "
        + (
            "with the high-water mark reset (`/proc/self/clear_refs`) just before the timed "
            "phase, so it is the peak during append or scan alone. "
            if all_reset
            else "since the child started (the high-water mark could not be reset). "
        )
        + "The append child holds the whole input in memory, so the append peak includes it.",
        '- Without fsync no engine fsyncs its data (logstore `fsync="never"`, SQLite '
        f"`synchronous={settings.sqlite_synchronous}`, lmdb `sync=False`, files never fsynced; "
        "diskcache and persist-queue as they come, see workload 2); logstore still fsyncs a "
        "few small metadata files and its directory when opening and closing.",
    ]
    for phase, text in profiles.items():
        out += [
            "",
            f"## cProfile: {phase} (top 10 by tottime, separate run)",
            "",
            "```",
            text.strip(),
            "```",
        ]
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help=f"larger sizes: {FULL}")
    parser.add_argument("--records", type=int, help="records in workload 1 (overrides --full)")
    parser.add_argument("--fsync-records", type=int, help="records in workload 2")
    parser.add_argument("--kib-records", type=int, help="records in workload 4")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="best of N runs")
    parser.add_argument("--batch-size", type=int, default=1000, help="records per batch")
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated subset of: {', '.join(ENGINES)}",
    )
    parser.add_argument(
        "--sqlite-synchronous", choices=SQLITE_SYNC_MODES, default="OFF", type=str.upper
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile logstore")
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help="skip the recovery, compaction, broker, mirror and serve sections",
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="markdown report path")
    parser.add_argument("--charts", default=DEFAULT_CHARTS, help="directory for PNG charts")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure the package at git revision REV, side by side (bench/baseline.py)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        parser.error(f"unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    args.engine_names = names
    counts = (args.records, args.fsync_records, args.kib_records)
    if args.repeats < 1 or args.batch_size < 1 or any(c is not None and c < 1 for c in counts):
        parser.error("record counts, --repeats and --batch-size must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    baseline.register_from_environment()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child is not None:
        return child_main(args.child)

    base = FULL if args.full else QUICK
    sizes = Sizes(
        records=args.records or base.records,
        fsync_records=args.fsync_records or base.fsync_records,
        kib_records=args.kib_records or base.kib_records,
    )
    plan = workloads(sizes, args.batch_size)
    settings = Settings(sqlite_synchronous=args.sqlite_synchronous)
    names: list[str] = args.engine_names
    baseline_dir = None
    if args.baseline:
        log(f"installing the package at {args.baseline} ...")
        baseline_dir = baseline.install(args.baseline)
        twins = baseline.register(args.baseline, baseline_dir)
        names += [t for t in twins if t.split("@")[0] in names]
    exe = (
        os.path.relpath(sys.executable)
        if sys.executable.startswith(os.getcwd())
        else sys.executable
    )
    command = " ".join([exe, os.path.relpath(os.path.abspath(__file__)), *sys.argv[1:]])
    info = machine_info()

    log(f"benchmark: {sizes} x {args.repeats} repeats: {', '.join(names)}")
    started = time.perf_counter()
    results = run_benchmark(names, plan, settings, args.repeats)
    elapsed = time.perf_counter() - started
    profiles: dict[str, str] = {}
    if args.profile:
        log("profiling logstore ...")
        profiles = profile_logstore(names, plan, settings)

    extra: list[str] = []
    if not args.no_extras:
        import broker
        import compaction
        import recovery

        log("opening and recovery benchmarks ...")
        extra += recovery.run(quick=not args.full)
        log("compaction benchmark ...")
        extra += ["", *compaction.run()]
        log("broker benchmark ...")
        extra += ["", *broker.run(sizes.records)]
        log("mirror benchmark (a local Kafka broker) ...")
        import mirror

        extra += ["", *mirror.run()]
        log("logstore serve next to Apache Kafka (librdkafka clients) ...")
        import serve

        extra += ["", *serve.run()]
        if baseline_dir is not None:
            log(f"recovery, compaction and broker with the package at {args.baseline} ...")
            extra += [
                "",
                f"# The same sections with the package at `{args.baseline}`",
                "",
                *baseline.extras(baseline_dir, quick=not args.full, records=sizes.records),
            ]
    charts = write_charts(results, names, args.charts)
    lines = render(
        results, names, plan, settings, args.repeats, command, info, elapsed, charts, profiles
    )
    total = time.perf_counter() - started
    report = "\n".join([*lines, "", *extra]).rstrip() + "\n"
    report += f"\nTotal wall time of `bench/run.py`: {total:.0f} s.\n"
    print(report)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(report)
    log(f"wrote {os.path.relpath(args.output)} and charts in {os.path.relpath(args.charts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
