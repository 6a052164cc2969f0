"""Side-by-side benchmark of logstore and other embeddable stores, in one run.

Usage (from the repository root)::

    .venv/bin/python bench/run.py                 # quick (`make bench`): a few minutes
    .venv/bin/python bench/run.py --full          # larger sizes
    .venv/bin/python bench/run.py --engines logstore,sqlite,lmdb --repeats 2 --no-extras
    .venv/bin/python bench/run.py --profile       # also cProfile logstore's phases
    .venv/bin/python bench/run.py --baseline REV  # also the package at git REV, side by side

The headline tables time what a user's loop does. The input is two flat lists of
raw keys and values, generated before the clock (the user's data); each engine
slices them per batch and builds its own input objects inside the timed loop
(logstore ``Message``s per ``append_many`` call, or ``(value, key)`` pairs in a
row of their own; SQLite row tuples per ``executemany``; lmdb each ``put``'s
offset and packed record; ...), with the garbage collector as it comes. Scans
touch every field they return. Workloads, for every engine where they apply:

1. append ``--records`` records (16-byte keys, 100-byte values) in batches of 1,000, no fsync;
2. the same with an fsync per batch (``--fsync-records`` records);
3. scan all of workload 1's store, every field touched;
4. 1 KiB values (``--kib-records`` records): append and scan, in MB/s;
5. reopen: the time to open workload 1's store after a clean close, and to open it
   and read its last record (logstore, lmdb, SQLite);
6. logstore only: ``Log.producer`` with ``fsync="always"`` (``--producer-records``,
   ``--producer-seconds``): records/s and send-to-durable p50/p99 at linger 0, 5 and
   50 ms, and records/s from 8 threads at linger 5 ms, every handle's offset checked
   (bench/producing.py); "n/a" rows when the build has no ``Log.producer``;
7. logstore only: ``read_batches`` over workload 1's log, next to reading its segment files;
8. codec only: workload 1's append with the input objects built before the clock
   and frozen out of the garbage collector (``gc.freeze()``), and its scan reading
   key and value only: the store's own work, as the earlier tables measured it.

Peak RSS is reported for every phase. Every measurement runs in a fresh child
process (this script with ``--child``) so that peak RSS (``ru_maxrss``) belongs to
one engine and one phase: an append child generates the input, warms up and
appends (user loop, pairs and codec only: one child each, each in a store of its
own); a scan child warms up, times reopening the store and the open + last
record, then scans it (every field, then key and value only). The pure-Python
logstore runs in children with ``LOGSTORE_PURE=1``; every logstore child checks
``logstore.__speedups__``. Repeats are interleaved across engines (round-robin,
rotating the order) so that noise on a shared machine hits all engines alike;
the best rate of the repeats is reported. Writes ``bench/RESULTS.md`` (tables
in bench/report.py) and PNG charts under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import baseline
import producing
from engines import ENGINES, SQLITE_SYNC_MODES, Engine, LogstoreEngine, Settings
from measurements import FSYNC, KIB, MAIN, PAIRS_NOT_SUPPORTED, PRODUCER, Measurement, Results
from report import machine_info, render, write_charts
from workload import Workload, columns, generate

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "RESULTS.md")
DEFAULT_CHARTS = os.path.join(HERE, "results")
DEFAULT_REPEATS = 3
CHILD_TIMEOUT_S = 1800

R = TypeVar("R")


@dataclass(frozen=True)
class Sizes:
    """Records in workloads 1 (and 3, 5, 8), 2, 4 and 6; how long a producer row may send."""

    records: int
    fsync_records: int
    kib_records: int
    producer_records: int
    producer_seconds: float


QUICK = Sizes(1_000_000, 200_000, 100_000, producer_records=300_000, producer_seconds=1.0)
FULL = Sizes(5_000_000, 1_000_000, 1_000_000, producer_records=2_000_000, producer_seconds=10.0)


def workloads(sizes: Sizes, batch_size: int) -> dict[str, Workload]:
    return {
        MAIN: Workload(MAIN, records=sizes.records, batch_size=batch_size),
        FSYNC: Workload(FSYNC, records=sizes.fsync_records, batch_size=batch_size, fsync=True),
        KIB: Workload(KIB, records=sizes.kib_records, batch_size=batch_size, value_size=1024),
        PRODUCER: Workload(
            PRODUCER, records=sizes.producer_records, batch_size=batch_size, fsync=True
        ),
    }


#: The child phases run one after another on one directory, per workload. "append" is
#: the user loop (the store the scan child reads); "append-pairs" and "append-codec"
#: write stores of their own. Workload 1's scan child also times the "codec only"
#: scan, the reopen and the open + last record.
STEPS = {
    MAIN: ("append", "append-pairs", "append-codec", "scan", "read"),
    FSYNC: ("append",),
    KIB: ("append", "scan"),
    PRODUCER: tuple(c.phase for c in producing.CONFIGS),
}
#: Phases only logstore engines run.
LOGSTORE_ONLY = ("append-pairs", "read", *producing.BY_PHASE)


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
    producer_seconds: float = QUICK.producer_seconds

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


def _timed_open(open_store: Callable[[], Callable[[], None] | None]) -> Measurement | None:
    """Time ``open_store`` (``open`` or ``open_last``), close untimed; ``None``: n/a."""
    close, m = measure(open_store)
    if close is None:
        return None
    close()
    return m


#: Where each append phase writes, under the task's directory (the scan child reads "data").
APPEND_STORES = {"append": "data", "append-pairs": "pairs", "append-codec": "codec"}


def _append_child(task: ChildTask, cls: type[Engine[Any]], settings: Settings) -> Measurement:
    """One append phase: the user loop, the pairs loop or the pre-built ("codec") lists.

    The warm-up runs the same code paths on a small, differently seeded data set,
    in a store of its own (the scan child warms up by reading "data"'s back).
    """
    workload, phase = task.workload, task.phase
    store = APPEND_STORES[phase]
    warm = cls(os.path.join(task.directory, f"warmup-{store}"), settings)
    engine = cls(os.path.join(task.directory, store), settings)
    if phase == "append-codec":
        warm.append(warm.prepare(generate(workload.warmup())))
        warm.scan()
        prepared = engine.prepare(generate(workload))
        gc.collect()
        gc.freeze()  # the input is not the engine's garbage: keep it out of GC passes
        _, m = measure(lambda: engine.append(prepared), task.profile)
    else:
        if phase == "append-pairs":
            assert isinstance(engine, LogstoreEngine)
            if not engine.pairs_supported(os.path.join(task.directory, "pairs-probe")):
                return Measurement.not_applicable(PAIRS_NOT_SUPPORTED)
        method = "append_pairs" if phase == "append-pairs" else "append_loop"
        getattr(warm, method)(columns(workload.warmup()))
        warm.scan_fields()
        run = getattr(engine, method)
        data = columns(workload)  # the user's keys and values; the garbage collector as it comes
        _, m = measure(lambda: run(data), task.profile)
    return replace(m, records=workload.records, payload_bytes=workload.payload_bytes)


def _scan_child(task: ChildTask, warm: Engine[Any], engine: Engine[Any]) -> dict[str, Measurement]:
    """Scan touching every field; for workload 1 also reopen, open + last, the codec scan."""
    workload = task.workload
    expected = (workload.records, workload.payload_bytes)
    warm.scan_fields()
    out: dict[str, Measurement] = {}
    if workload.name == MAIN:
        warm.scan()
        for phase, opener, warm_opener in (
            ("open", engine.open, warm.open),
            ("open-last", engine.open_last, warm.open_last),
        ):
            if _timed_open(warm_opener) is not None:  # the warm-up open: imports excluded
                m = _timed_open(opener)
                assert m is not None
                out[phase] = replace(m, records=workload.records)
    scans = [("scan", engine.scan_fields)]
    if workload.name == MAIN:
        scans.append(("scan-codec", engine.scan))
    for phase, scan in scans:
        (records, payload), m = measure(scan, task.profile and phase == "scan")
        if (records, payload) != expected:
            raise RuntimeError(
                f"{task.engine} {phase} saw {records} records / {payload} bytes, expected "
                f"{expected[0]} / {expected[1]}"
            )
        out[phase] = replace(m, records=records, payload_bytes=payload)
    return out


def _producer_child(task: ChildTask) -> dict[str, Measurement]:
    """One producer row (``fsync="always"``), or its n/a when the build has no producer."""
    if not producing.available():
        return {task.phase: Measurement.not_applicable(producing.NOT_AVAILABLE)}
    workload = task.workload
    sent, m = producing.measure_config(
        os.path.join(task.directory, task.phase),
        os.path.join(task.directory, f"{task.phase}-warmup"),
        producing.BY_PHASE[task.phase],
        columns(workload),
        columns(workload.warmup(2_000)),
        task.producer_seconds,
        lambda go: measure(go, task.profile),
    )
    extra = {}
    if sent.latencies:
        extra = {
            "p50_ms": producing.percentile(sent.latencies, 0.50) * 1000,
            "p99_ms": producing.percentile(sent.latencies, 0.99) * 1000,
        }
    m = replace(
        m, records=sent.records, payload_bytes=sent.records * workload.record_bytes, extra=extra
    )
    return {task.phase: m}


def run_child(task: ChildTask) -> dict[str, Measurement]:
    """Run one phase in this (fresh) process, with a warm-up first."""
    cls = ENGINES[task.engine]
    check_codec(cls)
    workload = task.workload
    settings = replace(task.settings, fsync=workload.fsync)
    if task.phase in producing.BY_PHASE:
        return _producer_child(task)
    if task.phase in APPEND_STORES:
        return {task.phase: _append_child(task, cls, settings)}
    warm = cls(os.path.join(task.directory, "warmup-data"), settings)
    engine = cls(os.path.join(task.directory, "data"), settings)
    if task.phase == "scan":
        return _scan_child(task, warm, engine)
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
    return phase not in LOGSTORE_ONLY or issubclass(ENGINES[engine], LogstoreEngine)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(
    names: Sequence[str],
    plan: dict[str, Workload],
    settings: Settings,
    repeats: int,
    producer_seconds: float = QUICK.producer_seconds,
) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory(prefix="logstore-bench-") as tmp:
        for rep in range(repeats):
            for i, (key, full) in enumerate(plan.items()):
                shift = (rep + i) % len(names)
                for name in [*names[shift:], *names[:shift]]:
                    workload = full.capped(ENGINES[name].max_records)
                    directory = os.path.join(tmp, f"{name}-{key}-{rep}")
                    phases = [p for p in STEPS[key] if applies(name, p)]
                    for phase in phases:
                        task = ChildTask(
                            name,
                            phase,
                            directory,
                            workload,
                            settings,
                            producer_seconds=producer_seconds,
                        )
                        for what, m in spawn(task).items():
                            results.add(key, name, what, m)
                            log(
                                f"  [{rep + 1}/{repeats}] {key:<12} {name:<13} {what:<12} {_line(m)}"
                            )
                    shutil.rmtree(directory, ignore_errors=True)  # n/a children write nothing
    return results


def _line(m: Measurement) -> str:
    """One measurement as the progress log shows it."""
    if m.note:
        return m.note
    rates = (
        f"{m.records / m.seconds:>12,.0f} rec/s  {m.payload_bytes / 1e6 / m.seconds:>9,.1f} MB/s"
        if m.payload_bytes
        else " " * 33
    )
    latency = "".join(f"  {k} {v:.2f}" for k, v in m.extra.items())
    return f"{m.seconds:8.4f} s  {rates}  peak RSS {m.rss_peak_kb * 1024 / 1e6:7.1f} MB{latency}"


def profile_logstore(
    names: Sequence[str], plan: dict[str, Workload], settings: Settings
) -> dict[str, str]:
    """cProfile of logstore's appends and scan (separate runs, not in the tables)."""
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="logstore-bench-profile-") as tmp:
        for name in (n for n in names if issubclass(ENGINES[n], LogstoreEngine)):
            for key, phases in (
                (MAIN, ("append", "append-codec", "scan")),
                (FSYNC, ("append",)),
                (PRODUCER, ("producer-5",)),
            ):
                directory = os.path.join(tmp, f"{name}-{key}")
                for phase in phases:
                    task = ChildTask(name, phase, directory, plan[key], settings, profile=True)
                    text = spawn(task)[phase].profile
                    if text:  # none when the phase does not apply to this build
                        out[f"{ENGINES[name].label} {phase} ({key})"] = text
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help=f"larger sizes: {FULL}")
    parser.add_argument("--records", type=int, help="records in workload 1 (overrides --full)")
    parser.add_argument("--fsync-records", type=int, help="records in workload 2")
    parser.add_argument("--kib-records", type=int, help="records in workload 4")
    parser.add_argument("--producer-records", type=int, help="records per producer row at most")
    parser.add_argument(
        "--producer-seconds", type=float, help="a producer row stops sending after this long"
    )
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
    counts = (
        args.records,
        args.fsync_records,
        args.kib_records,
        args.producer_records,
        args.producer_seconds,
    )
    if args.repeats < 1 or args.batch_size < 1 or any(c is not None and c <= 0 for c in counts):
        parser.error(
            "record counts, --producer-seconds, --repeats and --batch-size must be positive"
        )
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
        producer_records=args.producer_records or base.producer_records,
        producer_seconds=args.producer_seconds or base.producer_seconds,
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
    results = run_benchmark(names, plan, settings, args.repeats, sizes.producer_seconds)
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
        results,
        names,
        plan,
        settings,
        args.repeats,
        command,
        elapsed,
        charts,
        profiles,
        info=info,
        producer_seconds=sizes.producer_seconds,
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
