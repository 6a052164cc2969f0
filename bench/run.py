"""Append/scan throughput of logstore against a plain file, SQLite and kafka-python.

Usage (from the repository root)::

    .venv/bin/python bench/run.py                 # quick: 1M records, best of 3
    .venv/bin/python bench/run.py --full          # 5M records, best of 3
    .venv/bin/python bench/run.py --records 200000 --repeats 2 --engines logstore,sqlite
    .venv/bin/python bench/run.py --profile       # also cProfile logstore's append and scan

Every measurement runs in a fresh child process (this script with ``--child``) so
that peak RSS (``ru_maxrss``) belongs to one engine and one phase: an append
child generates the input, warms up and appends; a separate scan child only
opens the store and reads it back. Repeats are interleaved across engines
(round-robin, rotating the order) so that noise on a shared machine hits all
engines alike; the best time of the repeats is reported. Writes a table to
stdout and to ``bench/RESULTS.md``.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import broker
import compaction
import recovery
from engines import ENGINES, SQLITE_SYNC_MODES, Engine, Settings
from workload import Workload, generate

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "RESULTS.md")
QUICK_RECORDS = 1_000_000
FULL_RECORDS = 5_000_000
DEFAULT_REPEATS = 3
CHILD_TIMEOUT_S = 1800
PHASES = ("append", "scan")

# Targets logstore is expected to meet (ratios of records/s; RSS in MB).
TARGET_APPEND_VS_SQLITE = 2.5
TARGET_APPEND_VS_KAFKA = 2.5
TARGET_SCAN_VS_KAFKA = 2.0
TARGET_SCAN_RSS_MB = 100.0


# --------------------------------------------------------------------------- child side


@dataclass(frozen=True)
class ChildTask:
    """One measurement: ``phase`` of ``engine`` on ``workload`` in ``directory``."""

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
    """What a child reports: timed seconds, records and bytes seen, RSS in KiB.

    ``cpu_seconds`` is the process CPU time of the timed phase (``time.process_time``):
    much lower than ``seconds`` means the process waited (I/O, or other load).
    ``rss_before_kb`` is the resident size just before the timed phase;
    ``rss_peak_kb`` the peak during it (since the process started if the peak
    could not be reset, see ``peak_reset``).
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
    timed phase alone (not to building the input, for example).
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    return current_rss_kb(), reset


def _engine(task: ChildTask, subdir: str) -> Engine[Any]:
    return ENGINES[task.engine](os.path.join(task.directory, subdir), task.settings)


def _profile_text(profiler: cProfile.Profile, top: int = 10) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def run_child(task: ChildTask) -> Measurement:
    """Run one phase in this (fresh) process, with a warm-up first."""
    workload = task.workload
    warm = _engine(task, "warmup")
    engine = _engine(task, "data")
    profiler = cProfile.Profile() if task.profile else None
    if task.phase == "append":
        # Warm-up: same code paths on a small, differently seeded data set. The scan
        # child warms up by reading this data set back.
        warm.append(warm.prepare(generate(workload.warmup())))
        warm.scan()
        prepared = engine.prepare(generate(workload))
        gc.collect()
        gc.freeze()  # the input is not the engine's garbage: keep it out of GC passes
        rss_before, peak_reset = start_rss_window()
        if profiler:
            profiler.enable()
        cpu_start, start = time.process_time(), time.perf_counter()
        engine.append(prepared)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        if profiler:
            profiler.disable()
        rss_peak = max_rss_kb()
        records, payload = workload.records, workload.payload_bytes
    elif task.phase == "scan":
        warm.scan()
        gc.collect()
        rss_before, peak_reset = start_rss_window()
        if profiler:
            profiler.enable()
        cpu_start, start = time.process_time(), time.perf_counter()
        records, payload = engine.scan()
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        if profiler:
            profiler.disable()
        rss_peak = max_rss_kb()
        if (records, payload) != (workload.records, workload.payload_bytes):
            raise RuntimeError(
                f"{task.engine} scan saw {records} records / {payload} bytes, expected "
                f"{workload.records} / {workload.payload_bytes}"
            )
    else:
        raise ValueError(f"unknown phase {task.phase!r}")
    return Measurement(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        records=records,
        payload_bytes=payload,
        rss_before_kb=rss_before,
        rss_peak_kb=rss_peak,
        peak_reset=peak_reset,
        profile=_profile_text(profiler) if profiler else "",
    )


def child_main(task_json: str) -> int:
    result = run_child(ChildTask.from_json(task_json))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


# --------------------------------------------------------------------------- parent side


def spawn(task: ChildTask) -> Measurement:
    """Run ``task`` in a child interpreter and parse its one-line JSON answer."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", task.to_json()],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{task.engine} {task.phase} child failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    lines = proc.stdout.strip().splitlines()
    return Measurement(**json.loads(lines[-1]))


@dataclass
class EngineResult:
    """Every repeat of both phases of one engine."""

    engine: str
    runs: dict[str, list[Measurement]] = field(default_factory=lambda: {p: [] for p in PHASES})

    def best(self, phase: str) -> Measurement:
        return min(self.runs[phase], key=lambda m: m.seconds)

    def rate(self, phase: str) -> float:
        """Records per second of the best run."""
        m = self.best(phase)
        return m.records / m.seconds

    def mb_per_s(self, phase: str) -> float:
        m = self.best(phase)
        return m.payload_bytes / 1e6 / m.seconds

    def peak_rss_mb(self, phase: str) -> float:
        """Highest peak RSS over the repeats, in MB (1e6 bytes)."""
        return max(m.rss_peak_kb for m in self.runs[phase]) * 1024 / 1e6

    def rss_before_mb(self, phase: str) -> float:
        return max(m.rss_before_kb for m in self.runs[phase]) * 1024 / 1e6


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(
    names: Sequence[str], workload: Workload, settings: Settings, repeats: int
) -> dict[str, EngineResult]:
    results = {name: EngineResult(name) for name in names}
    with tempfile.TemporaryDirectory(prefix="logstore-bench-") as tmp:
        for rep in range(repeats):
            shift = rep % len(names)
            for name in [*names[shift:], *names[:shift]]:
                directory = os.path.join(tmp, f"{name}-{rep}")
                for phase in PHASES:
                    m = spawn(ChildTask(name, phase, directory, workload, settings))
                    results[name].runs[phase].append(m)
                    log(
                        f"  [{rep + 1}/{repeats}] {name:<13} {phase:<6} {m.seconds:7.3f} s  "
                        f"{m.records / m.seconds:>12,.0f} rec/s  peak RSS "
                        f"{m.rss_peak_kb * 1024 / 1e6:7.1f} MB"
                    )
                shutil.rmtree(directory)
    return results


def profile_logstore(workload: Workload, settings: Settings) -> dict[str, str]:
    """cProfile of logstore's append and scan (separate runs, not counted in the table)."""
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="logstore-bench-profile-") as tmp:
        directory = os.path.join(tmp, "logstore")
        for phase in PHASES:
            task = ChildTask("logstore", phase, directory, workload, settings, profile=True)
            out[phase] = spawn(task).profile
    return out


# --------------------------------------------------------------------------- report


def machine_info() -> list[tuple[str, str]]:
    import sqlite3
    from importlib.metadata import version

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("platform", platform.platform()),
        ("cpu count", str(os.cpu_count())),
        ("load average at start", load),
        ("logstore", version("logstore")),
        ("kafka-python", version("kafka-python")),
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


def main_table(results: dict[str, EngineResult]) -> list[str]:
    headers = [
        "engine",
        "append rec/s",
        "append MB/s",
        "scan rec/s",
        "scan MB/s",
        "peak RSS append (MB)",
        "peak RSS scan (MB)",
    ]
    rows = [
        [
            ENGINES[name].label,
            f"{r.rate('append'):,.0f}",
            f"{r.mb_per_s('append'):.1f}",
            f"{r.rate('scan'):,.0f}",
            f"{r.mb_per_s('scan'):.1f}",
            f"{r.peak_rss_mb('append'):.1f}",
            f"{r.peak_rss_mb('scan'):.1f}",
        ]
        for name, r in results.items()
    ]
    return _table(headers, rows)


def detail_table(results: dict[str, EngineResult]) -> list[str]:
    headers = [
        "engine",
        "append s (all repeats)",
        "append CPU s (best run)",
        "scan s (all repeats)",
        "scan CPU s (best run)",
        "RSS before append (MB)",
        "RSS before scan (MB)",
    ]
    rows = [
        [
            ENGINES[name].label,
            " / ".join(f"{m.seconds:.3f}" for m in r.runs["append"]),
            f"{r.best('append').cpu_seconds:.3f}",
            " / ".join(f"{m.seconds:.3f}" for m in r.runs["scan"]),
            f"{r.best('scan').cpu_seconds:.3f}",
            f"{r.rss_before_mb('append'):.1f}",
            f"{r.rss_before_mb('scan'):.1f}",
        ]
        for name, r in results.items()
    ]
    return _table(headers, rows)


def ratios(results: dict[str, EngineResult]) -> tuple[list[str], list[str]]:
    """Ratio lines and target lines (those whose engines were run)."""
    lines: list[str] = []
    targets: list[str] = []
    ls = results.get("logstore")
    if ls is None:
        return lines, targets

    def ratio(phase: str, other: str) -> float | None:
        r = results.get(other)
        return None if r is None else ls.rate(phase) / r.rate(phase)

    def target(label: str, value: float | None, goal: float, unit: str = "x") -> None:
        if value is None:
            return
        ok = value >= goal
        targets.append(
            f"- {'MET' if ok else 'NOT MET'}: {label}: {value:.2f}{unit} (target >= {goal}{unit})"
        )

    items = [
        ("logstore append / SQLite append", ratio("append", "sqlite")),
        ("logstore append / kafka-python builder", ratio("append", "kafka-python")),
        ("logstore scan / kafka-python reader", ratio("scan", "kafka-python")),
        ("logstore scan / SQLite scan", ratio("scan", "sqlite")),
        ("logstore append / plain file append", ratio("append", "plain-file")),
        ("logstore scan / plain file scan", ratio("scan", "plain-file")),
    ]
    lines.extend(f"- {label}: {value:.2f}x" for label, value in items if value is not None)
    target("append vs SQLite", items[0][1], TARGET_APPEND_VS_SQLITE)
    target("append vs kafka-python builder", items[1][1], TARGET_APPEND_VS_KAFKA)
    target("scan vs kafka-python reader", items[2][1], TARGET_SCAN_VS_KAFKA)
    rss = ls.peak_rss_mb("scan")
    ok = rss < TARGET_SCAN_RSS_MB
    targets.append(
        f"- {'MET' if ok else 'NOT MET'}: logstore scan peak RSS: {rss:.1f} MB "
        f"(target < {TARGET_SCAN_RSS_MB:.0f} MB)"
    )
    return lines, targets


def render(
    results: dict[str, EngineResult],
    workload: Workload,
    settings: Settings,
    repeats: int,
    command: str,
    info: list[tuple[str, str]],
    elapsed: float,
    profiles: dict[str, str],
) -> str:
    ratio_lines, target_lines = ratios(results)
    out = [
        "# logstore benchmark results",
        "",
        "Generated by `bench/run.py`; rerun with `make bench` (or `make bench ARGS=--full`).",
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
        "## Workload",
        "",
        f"- {workload.records:,} records ({workload.key_size}-byte random keys, "
        f"{workload.value_size}-byte random values, seed {workload.seed}) appended in batches "
        f"of {workload.batch_size:,}, then all read back",
        f"- payload {workload.payload_bytes / 1e6:,.1f} MB (key + value bytes; MB = 1e6 bytes)",
        f"- best of {repeats} repeats, each phase in a fresh process after a warm-up "
        f"({workload.warmup().records:,} records); total wall time {elapsed:.0f} s",
        f"- SQLite runs with `synchronous={settings.sqlite_synchronous}` (journal_mode=WAL)",
        "",
        "## Results",
        "",
        *main_table(results),
        "",
        "## Ratios (records/s)",
        "",
        *ratio_lines,
        "",
        "## Targets",
        "",
        *target_lines,
        "",
        "## Details",
        "",
        *detail_table(results),
        "",
        "Engines:",
        "",
        *(f"- {ENGINES[name].describe(settings)}" for name in results),
        "",
        "Notes:",
        "",
        "- Append time covers opening the store, appending every batch and closing it; the "
        "input objects (`Message`s, row tuples, `(key, value)` pairs) are built before timing "
        "and frozen out of the garbage collector (`gc.freeze()`).",
        "- Scan time covers opening, reading every record (counting records and key + value "
        "bytes, checked against the input) and closing. Files were just written, so scans read "
        "from the page cache.",
        "- Peak RSS is `ru_maxrss` of the child process for that phase (highest over "
        "repeats), "
        + (
            "with the high-water mark reset (`/proc/self/clear_refs`) just before the timed "
            "phase, so it is the peak during append or scan alone. "
            if all(m.peak_reset for r in results.values() for ms in r.runs.values() for m in ms)
            else "since the child started (the high-water mark could not be reset). "
        )
        + "The append child holds the whole input in memory ('RSS before append'), so the "
        "append peak includes it; the scan child holds nothing but the engine and its reader.",
        '- No engine fsyncs its data (logstore `fsync="never"`, SQLite '
        f"`synchronous={settings.sqlite_synchronous}`, files are never fsynced); logstore "
        "still fsyncs a few small metadata files and its directory when opening and closing.",
    ]
    for phase, text in profiles.items():
        out += [
            "",
            f"## cProfile: logstore {phase} (top 10 by tottime, separate run)",
            "",
            "```",
            text.strip(),
            "```",
        ]
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help=f"{FULL_RECORDS:,} records")
    parser.add_argument("--records", type=int, help="number of records (overrides --full)")
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
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="markdown report path")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        parser.error(f"unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    args.engine_names = names
    if args.repeats < 1 or args.batch_size < 1 or (args.records is not None and args.records < 1):
        parser.error("--records, --repeats and --batch-size must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child is not None:
        return child_main(args.child)

    records = args.records or (FULL_RECORDS if args.full else QUICK_RECORDS)
    workload = Workload(records=records, batch_size=args.batch_size)
    settings = Settings(sqlite_synchronous=args.sqlite_synchronous)
    exe = (
        os.path.relpath(sys.executable)
        if sys.executable.startswith(os.getcwd())
        else sys.executable
    )
    command = " ".join([exe, os.path.relpath(os.path.abspath(__file__)), *sys.argv[1:]])
    info = machine_info()

    log(f"benchmark: {records:,} records x {args.repeats} repeats: {', '.join(args.engine_names)}")
    started = time.perf_counter()
    results = run_benchmark(args.engine_names, workload, settings, args.repeats)
    profiles: dict[str, str] = {}
    if args.profile and "logstore" in ENGINES:
        log("profiling logstore append and scan ...")
        profiles = profile_logstore(workload, settings)
    elapsed = time.perf_counter() - started

    log("opening and recovery benchmarks ...")
    recovery_lines = recovery.run(quick=not args.full)
    log("compaction benchmark ...")
    recovery_lines += ["", *compaction.run()]
    log("broker benchmark ...")
    recovery_lines += ["", *broker.run(records)]
    report = render(results, workload, settings, args.repeats, command, info, elapsed, profiles)
    report += "\n" + "\n".join(recovery_lines)
    print(report)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(report)
    log(f"wrote {os.path.relpath(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
