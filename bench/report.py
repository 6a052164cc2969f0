"""The benchmark's report: tables, targets and charts, as the markdown of ``bench/RESULTS.md``.

Turns one run's ``Results`` into text and PNGs; takes no measurements. The
headline tables (1 to 7) are of what a user's loop does: inputs built in the
timed loop from raw keys and values, the garbage collector as it comes, scans
touching every field. Table 8 keeps the earlier "codec only" measurement
(inputs built before the clock, ``gc.freeze()``), which the issue 6 and issue 2
targets were set on.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import producing
from engines import ENGINES, LogstoreEngine, Settings
from measurements import (
    COMPILED,
    FSYNC,
    KAFKA,
    KIB,
    LMDB,
    MAIN,
    PAIRS_NOT_SUPPORTED,
    PLAIN,
    PRODUCER,
    PURE,
    SQLITE,
    Results,
)
from workload import Workload

HERE = os.path.dirname(os.path.abspath(__file__))

# Issue 14 targets for the compiled logstore, on the user-loop tables of one run.
TARGET_LOOP_APPEND_VS_LMDB = 2.0
TARGET_LOOP_APPEND_VS_SQLITE = 6.0
TARGET_PAIRS_VS_LMDB = 2.5
TARGET_LOOP_SCAN_VS_LMDB = 1.5
TARGET_LOOP_SCAN_VS_SQLITE = 2.5
TARGET_KIB_VS_PLAIN = 0.7
TARGET_READ_BATCHES_VS_PLAIN = 0.7
TARGET_OPEN_LAST_MS = 1.0
TARGET_PRODUCER_8_THREADS = 1_000_000
TARGET_PREBUILT_OVER_LOOP = 1.3
PRODUCER_TARGET_PHASE = "producer-5x8"
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


def is_logstore(name: str) -> bool:
    return issubclass(ENGINES[name], LogstoreEngine)


@dataclass(frozen=True)
class Row:
    """One line of a rate table: ``phase`` of ``engine``, shown as ``label``."""

    label: str
    engine: str
    phase: str


def engine_rows(names: Sequence[str], phase: str, *, pairs: bool = False) -> list[Row]:
    """Every engine's ``phase``; with ``pairs``, each logstore's pairs loop after it."""
    rows = []
    for name in names:
        rows.append(Row(ENGINES[name].label, name, phase))
        if pairs and is_logstore(name):
            rows.append(Row(f"{ENGINES[name].label}, `(value, key)` pairs", name, "append-pairs"))
    return rows


def rate_table(
    results: Results,
    rows: Sequence[Row],
    workload: str,
    reference: str,
    extra: tuple[str, Callable[[Row], float | None]] | None = None,
) -> list[str]:
    """records/s, MB/s and ratios to lmdb, SQLite and the plain file (their ``reference``)."""
    headers = ["engine", "records", "records/s", "MB/s", "vs lmdb", "vs SQLite", "vs plain file"]
    headers.append("peak RSS (MB)")
    if extra:
        headers.append(extra[0])
    others = [results.rate(workload, n, reference) for n in (LMDB, SQLITE, PLAIN)]
    out = []
    for row in rows:
        m = results.best(workload, row.engine, row.phase)
        rate = results.rate(workload, row.engine, row.phase)
        note = results.note(workload, row.engine, row.phase)
        cells = [
            row.label,
            _num(None if m is None else m.records),
            note if m is None and note else _num(rate),
            _num(results.mb_per_s(workload, row.engine, row.phase), ",.1f"),
            *(_x(_ratio(rate, other)) for other in others),
            _num(results.peak_rss_mb(workload, row.engine, row.phase), ",.1f"),
        ]
        if extra:
            cells.append(_x(extra[1](row)))
        out.append(cells)
    return _table(headers, out)


def open_ms(results: Results, name: str, phase: str = "open") -> float | None:
    m = results.best(MAIN, name, phase)
    return None if m is None else m.seconds * 1000


def reopen_table(results: Results, names: Sequence[str]) -> list[str]:
    headers = [
        "engine",
        "records in store",
        "open (ms)",
        "open: speed vs SQLite",
        "open + last record (ms)",
        "open + last: vs lmdb",
        "open + last: vs SQLite",
    ]
    sqlite, sqlite_last, lmdb_last = (
        open_ms(results, SQLITE),
        open_ms(results, SQLITE, "open-last"),
        open_ms(results, LMDB, "open-last"),
    )
    rows = []
    for name in names:
        ms, last = open_ms(results, name), open_ms(results, name, "open-last")
        m = results.best(MAIN, name, "open")
        rows.append(
            [
                ENGINES[name].label,
                _num(None if m is None else m.records),
                _num(ms, ",.3f"),
                _x(_ratio(sqlite, ms)),
                _num(last, ",.3f"),
                _x(_ratio(lmdb_last, last)),
                _x(_ratio(sqlite_last, last)),
            ]
        )
    return _table(headers, rows)


def producer_rows(names: Sequence[str]) -> list[tuple[str, producing.Config]]:
    return [(n, c) for n in names if is_logstore(n) for c in producing.CONFIGS]


def producer_table(results: Results, names: Sequence[str]) -> list[str]:
    headers = [
        'engine, producer (`fsync="always"`)',
        "records sent",
        "records/s",
        "MB/s",
        "p50 send to durable (ms)",
        "p99 (ms)",
        "records/s, every repeat",
        "peak RSS (MB)",
    ]
    rows = []
    for name, config in producer_rows(names):
        m = results.best(PRODUCER, name, config.phase)
        note = results.note(PRODUCER, name, config.phase)
        label = f"{ENGINES[name].label}: {config.label}"
        if m is None:
            rows.append([label, "", note or "n/a", *[""] * 5])
            continue
        rates = [r.records / r.seconds for r in results.all(PRODUCER, name, config.phase)]
        p50, p99 = m.extra.get("p50_ms"), m.extra.get("p99_ms")
        rows.append(
            [
                label,
                _num(m.records),
                _num(results.rate(PRODUCER, name, config.phase)),
                _num(results.mb_per_s(PRODUCER, name, config.phase), ",.1f"),
                "not measured" if p50 is None else _num(p50, ",.2f"),
                "not measured" if p99 is None else _num(p99, ",.2f"),
                " / ".join(f"{r:,.0f}" for r in rates),
                _num(results.peak_rss_mb(PRODUCER, name, config.phase), ",.1f"),
            ]
        )
    return _table(headers, rows)


def read_rows(results: Results, names: Sequence[str]) -> list[tuple[str, float | None]]:
    """(label, GB/s) of every ``read_batches`` sweep and plain read of the same segment files."""
    rows: list[tuple[str, float | None]] = []
    for name in filter(is_logstore, names):
        label = ENGINES[name].label
        for phase, what in (("read-batches", "read_batches"), ("read-file", "plain file read")):
            mb_s = results.mb_per_s(MAIN, name, phase)
            rows.append((f"{label}: {what}", None if mb_s is None else mb_s / 1000))
    return rows


def read_table(results: Results, names: Sequence[str]) -> list[str]:
    headers = ["path", "bytes", "batches or files", "time (ms)", "GB/s", "vs plain file read"]
    rows = []
    for name in filter(is_logstore, names):
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
    (MAIN, "append", "append, 100-byte values, user loop"),
    (MAIN, "append-pairs", "append, `(value, key)` pairs"),
    (MAIN, "append-codec", "append, 100-byte values, codec only"),
    (FSYNC, "append", "append, fsync per batch"),
    (MAIN, "scan", "scan, 100-byte values, every field"),
    (MAIN, "scan-codec", "scan, 100-byte values, codec only"),
    (KIB, "append", "append, 1 KiB values"),
    (KIB, "scan", "scan, 1 KiB values"),
    (MAIN, "open", "reopen after a clean close"),
    (MAIN, "open-last", "open + last record"),
    (MAIN, "read-batches", "read_batches"),
    *((PRODUCER, c.phase, f'producer, `fsync="always"`, {c.label}') for c in producing.CONFIGS),
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
        f"## This tree against `{rev}`",
        "",
        "records/s; reopen and open + last record: records in the store over the open time; "
        "read_batches: batches/s. Same run, repeats interleaved, so the ratio is the change.",
        "",
        *_table(["path", "codec", "this tree", f"at {rev}", "ratio"], rows),
        "",
    ]


def _check(
    label: str,
    value: float | None,
    goal: float,
    fmt: str,
    *,
    below: bool = False,
    at_most: bool = False,
    missing: str | None = None,
) -> str:
    """One target line: MET / NOT MET with the measured value, and the shortfall if any.

    ``below``: met when value < goal; ``at_most``: when value <= goal; otherwise
    when value >= goal. ``fmt`` is a format spec, optionally followed by a space
    and a unit (``".2f x"``). ``missing`` says why there is no value.
    """
    if value is None:
        return f"- NOT MEASURED: {label}: {missing or 'n/a (engine not run)'}"
    spec, _, unit = fmt.partition(" ")
    upper = below or at_most
    ok = value < goal if below else value <= goal if at_most else value >= goal
    sign = "<" if below else "<=" if at_most else ">="
    line = (
        f"- {'MET' if ok else 'NOT MET'}: {label}: {format(value, spec)}{unit} "
        f"(target {sign} {format(goal, spec)}{unit}"
    )
    if not ok and goal:
        line += (
            f"; {value / goal:.2f}x the limit" if upper else f"; {value / goal:.0%} of the target"
        )
    return line + ")"


def issue14_lines(results: Results) -> list[str]:
    """Issue 14's targets, compiled codec, from this run's user-loop tables."""

    def rate(phase: str, engine: str = COMPILED, workload: str = MAIN) -> float | None:
        return results.rate(workload, engine, phase)

    def note(phase: str, workload: str = MAIN) -> str | None:
        return results.note(workload, COMPILED, phase)

    kib_mb_s = results.mb_per_s(KIB, COMPILED, "append")
    read = _ratio(
        results.mb_per_s(MAIN, COMPILED, "read-batches"),
        results.mb_per_s(MAIN, COMPILED, "read-file"),
    )
    return [
        "Issue 14, compiled codec, on the user-loop tables (inputs built in the timed loop, "
        "the garbage collector as it comes; all ratios from this run):",
        "",
        _check(
            "user-loop append, `Message`s built per call, vs lmdb (table 1)",
            _ratio(rate("append"), rate("append", LMDB)),
            TARGET_LOOP_APPEND_VS_LMDB,
            ".2f x",
        ),
        _check(
            "user-loop append, `Message`s built per call, vs SQLite (table 1)",
            _ratio(rate("append"), rate("append", SQLITE)),
            TARGET_LOOP_APPEND_VS_SQLITE,
            ".2f x",
        ),
        _check(
            "user-loop append, `(value, key)` pairs, vs lmdb (table 1)",
            _ratio(rate("append-pairs"), rate("append", LMDB)),
            TARGET_PAIRS_VS_LMDB,
            ".2f x",
            missing=note("append-pairs"),
        ),
        _check(
            "user-loop scan touching every field vs lmdb's cursor (table 3)",
            _ratio(rate("scan"), rate("scan", LMDB)),
            TARGET_LOOP_SCAN_VS_LMDB,
            ".2f x",
        ),
        _check(
            "user-loop scan touching every field vs SQLite's SELECT (table 3)",
            _ratio(rate("scan"), rate("scan", SQLITE)),
            TARGET_LOOP_SCAN_VS_SQLITE,
            ".2f x",
        ),
        _check(
            "1 KiB append vs the plain file's MB/s (table 4)",
            _ratio(kib_mb_s, results.mb_per_s(KIB, PLAIN, "append")),
            TARGET_KIB_VS_PLAIN,
            ".2f x",
        ),
        _check(
            "`read_batches` vs a plain read of the same segment files (table 7)",
            read,
            TARGET_READ_BATCHES_VS_PLAIN,
            ".2f x",
        ),
        _check(
            "open of a closed log + read of its last record (table 5)",
            open_ms(results, COMPILED, "open-last"),
            TARGET_OPEN_LAST_MS,
            ".3f  ms",
            at_most=True,
        ),
        _check(
            'producer, `fsync="always"`, linger 5 ms, 8 threads sending, every handle checked '
            "(table 6)",
            rate(PRODUCER_TARGET_PHASE, workload=PRODUCER),
            TARGET_PRODUCER_8_THREADS,
            ",.0f  records/s",
            missing=note(PRODUCER_TARGET_PHASE, PRODUCER),
        ),
        _check(
            "`Message`s built per call within 1.3x of a pre-built list: codec-only append "
            "(table 8) over user-loop append (table 1)",
            _ratio(rate("append-codec"), rate("append")),
            TARGET_PREBUILT_OVER_LOOP,
            ".2f x",
            at_most=True,
        ),
        '- not checked here: "nothing else slower than now; the pure-Python codec no slower '
        'than now": run `make bench ARGS="--baseline REV"` for this tree against REV, side by '
        "side (the table after these targets)",
    ]


def target_lines(results: Results) -> list[str]:
    """Issue 14 (user loop), then issue 6 (compiled) and issue 2 (pure) on the codec-only table."""

    def rate(engine: str, phase: str, workload: str = MAIN) -> float | None:
        return results.rate(workload, engine, phase)

    def vs(engine: str, phase: str, other: str, workload: str = MAIN) -> float | None:
        return _ratio(rate(engine, phase, workload), rate(other, phase, workload))

    read_mb_s = results.mb_per_s(MAIN, COMPILED, "read-batches")
    pure_append, pure_scan = rate(PURE, "append-codec"), rate(PURE, "scan-codec")
    return [
        *issue14_lines(results),
        "",
        "Issue 6, compiled codec. These targets were set on pre-built inputs, so they are "
        "checked on the codec-only table 8 (inputs built before the clock, `gc.freeze()`; "
        "scan reading key and value only), except the fsync line (table 2, user loop) and "
        "read_batches (table 7):",
        "",
        _check(
            "append_many (table 8)",
            rate(COMPILED, "append-codec"),
            TARGET_APPEND_RATE,
            ",.0f  records/s",
        ),
        _check(
            "append vs lmdb (table 8)",
            vs(COMPILED, "append-codec", LMDB),
            TARGET_APPEND_VS_LMDB,
            ".2f x",
        ),
        _check(
            "append vs SQLite (table 8)",
            vs(COMPILED, "append-codec", SQLITE),
            TARGET_APPEND_VS_SQLITE,
            ".2f x",
        ),
        _check("scan (table 8)", rate(COMPILED, "scan-codec"), TARGET_SCAN_RATE, ",.0f  records/s"),
        _check(
            "scan vs lmdb cursor (table 8)",
            vs(COMPILED, "scan-codec", LMDB),
            TARGET_SCAN_VS_LMDB,
            ".2f x",
        ),
        _check(
            "scan vs SQLite SELECT (table 8)",
            vs(COMPILED, "scan-codec", SQLITE),
            TARGET_SCAN_VS_SQLITE,
            ".2f x",
        ),
        _check(
            "read_batches sequential (table 7)",
            None if read_mb_s is None else read_mb_s / 1000,
            TARGET_READ_BATCHES_GB_S,
            ".2f  GB/s",
        ),
        _check(
            "append with an fsync per batch vs the plain file doing the same fsyncs "
            "(table 2, user loop)",
            vs(COMPILED, "append", PLAIN, FSYNC),
            TARGET_FSYNC_VS_PLAIN,
            ".2f x",
        ),
        "",
        "Pure-Python fallback (`LOGSTORE_PURE=1`), issue 2 targets, on the codec-only table 8:",
        "",
        f"- append {_num(pure_append)} records/s, scan {_num(pure_scan)} records/s (table 8); "
        f"the earlier pure figures were about {PREVIOUS_PURE_APPEND:,} and "
        f"{PREVIOUS_PURE_SCAN:,} ({_x(_ratio(pure_append, PREVIOUS_PURE_APPEND))} and "
        f"{_x(_ratio(pure_scan, PREVIOUS_PURE_SCAN))} of them; across runs, so indicative only)",
        f"- compiled / pure, user loop: append {_x(vs(COMPILED, 'append', PURE))}, "
        f"scan {_x(vs(COMPILED, 'scan', PURE))}; codec only: append "
        f"{_x(vs(COMPILED, 'append-codec', PURE))}, scan {_x(vs(COMPILED, 'scan-codec', PURE))}",
        _check(
            "issue 2, pure append vs SQLite (table 8)",
            vs(PURE, "append-codec", SQLITE),
            TARGET_PURE_APPEND_VS_SQLITE,
            ".2f x",
        ),
        _check(
            "issue 2, pure append vs kafka-python builder (table 8)",
            vs(PURE, "append-codec", KAFKA),
            TARGET_PURE_APPEND_VS_KAFKA,
            ".2f x",
        ),
        _check(
            "issue 2, pure scan vs kafka-python reader (table 8)",
            vs(PURE, "scan-codec", KAFKA),
            TARGET_PURE_SCAN_VS_KAFKA,
            ".2f x",
        ),
        _check(
            "issue 2, pure scan peak RSS (table 8)",
            results.peak_rss_mb(MAIN, PURE, "scan-codec"),
            TARGET_PURE_SCAN_RSS_MB,
            ".1f  MB",
            below=True,
        ),
    ]


def _formatter(spec: str) -> Callable[[float], str]:
    return lambda value: format(value, spec)


def write_charts(results: Results, names: Sequence[str], directory: str) -> list[str]:
    """One PNG per section; return markdown image lines (paths relative to RESULTS.md)."""
    from charts import bar_chart

    os.makedirs(directory, exist_ok=True)
    labels = [ENGINES[n].label for n in names]
    appends = engine_rows(names, "append", pairs=True)
    append_series = {
        "user loop": [results.rate(MAIN, r.engine, r.phase) for r in appends],
        "codec only (pre-built)": [
            results.rate(MAIN, r.engine, "append-codec") if r.phase == "append" else None
            for r in appends
        ],
    }
    specs: list[tuple[str, str, str, list[str], dict[str, list[float | None]], str]] = [
        (
            "append",
            "Append, 100-byte values, batches of 1,000, no fsync",
            "records/s",
            [r.label.replace("`", "") for r in appends],
            append_series,
            ",.0f",
        ),
        (
            "append-fsync",
            "Append with an fsync per batch, user loop (see notes for diskcache, persist-queue)",
            "records/s",
            labels,
            {"user loop": [results.rate(FSYNC, n, "append") for n in names]},
            ",.0f",
        ),
        (
            "scan",
            "Scan all records, 100-byte values",
            "records/s",
            labels,
            {
                "every field": [results.rate(MAIN, n, "scan") for n in names],
                "codec only (key, value)": [results.rate(MAIN, n, "scan-codec") for n in names],
            },
            ",.0f",
        ),
        (
            "kib",
            "1 KiB values, user loop: append and scan",
            "MB/s (key + value bytes)",
            labels,
            {p: [results.mb_per_s(KIB, n, p) for n in names] for p in ("append", "scan")},
            ",.0f",
        ),
        (
            "reopen",
            "Reopen after a clean close (lower is better)",
            "ms",
            labels,
            {
                "open": [open_ms(results, n) for n in names],
                "open + last record": [open_ms(results, n, "open-last") for n in names],
            },
            ",.3f",
        ),
    ]
    lines = []
    for stem, title, unit, rows, series, spec in specs:
        path = os.path.join(directory, f"{stem}.png")
        bar_chart(path, title, unit, rows, series, _formatter(spec))
        lines.append(f"![{title}]({os.path.relpath(path, HERE)})")
    producers = producer_rows(names)
    rates = [results.rate(PRODUCER, n, c.phase) for n, c in producers]
    if any(r is not None for r in rates):
        path = os.path.join(directory, "producer.png")
        title = 'Producer, fsync="always": records/s'
        rows = [f"{ENGINES[n].label}, linger {c.linger_ms} ms x {c.threads}" for n, c in producers]
        bar_chart(path, title, "records/s", rows, {"records/s": rates}, _formatter(",.0f"))
        lines.append(f"![{title}]({os.path.relpath(path, HERE)})")
    reads = read_rows(results, names)
    if reads:
        path = os.path.join(directory, "read-batches.png")
        title = "Sequential read of the 100-byte-value log"
        series = {"GB/s": [v for _, v in reads]}
        bar_chart(path, title, "GB/s", [k for k, _ in reads], series, lambda v: f"{v:.2f}")
        lines.append(f"![{title}]({os.path.relpath(path, HERE)})")
    return lines


def _workload_lines(plan: dict[str, Workload], producer_seconds: float) -> list[str]:
    main, fsync, kib, producer = plan[MAIN], plan[FSYNC], plan[KIB], plan[PRODUCER]
    return [
        f"1. append: {main.records:,} records ({main.key_size}-byte random keys, "
        f"{main.value_size}-byte random values, seed {main.seed}; payload "
        f"{main.payload_bytes / 1e6:,.1f} MB) in batches of {main.batch_size:,}, no fsync",
        f"2. append with an fsync per batch: {fsync.records:,} records, the same shape "
        f"({fsync.records // fsync.batch_size:,} batches, so as many fsyncs)",
        "3. scan: every record of workload 1 read back, every field the engine returns touched "
        "(records and key + value bytes counted and checked against the input)",
        f"4. 1 KiB values: {kib.records:,} records ({kib.key_size}-byte keys, "
        f"{kib.value_size:,}-byte values; payload {kib.payload_bytes / 1e6:,.1f} MB) appended "
        "then scanned, in MB/s",
        "5. reopen: the time to open workload 1's store after a clean close, and to open it and "
        "read its last record, in a fresh process",
        f'6. logstore only: `Log.producer` with `fsync="always"`, up to {producer.records:,} '
        f"records of workload 1's shape (sending stops after {producer_seconds:g} s), "
        "`send` per record; linger 0, 5 and 50 ms from one thread (with send-to-durable "
        "latency), and linger 5 ms from 8 threads",
        "7. logstore only: `read_batches` over workload 1's whole log, next to reading the same "
        "segment files in 1 MiB chunks",
        "8. codec only: workload 1's append with the input objects built before the clock and "
        "frozen out of the garbage collector, and its scan reading key and value only (the "
        "measurement the earlier tables and the issue 6 and 2 targets used)",
    ]


def _notes(settings: Settings, all_reset: bool) -> list[str]:
    return [
        "- User-loop append (tables 1, 2, 4) covers opening the store, appending every batch "
        "and closing it, with the engine's input objects built inside the timed loop from two "
        "flat lists of raw keys and values (generated before timing: the user's data), sliced "
        "per batch: logstore `append_many([Message(v, key=k) for k, v in zip(keys, values)])` "
        "per call (and `append_many(list(zip(values, keys)))` in the pairs row), SQLite the row "
        "tuples of each `executemany`, lmdb each `put`'s offset key and packed record, the "
        "plain file and kafka-python their per-batch packing as before, diskcache and "
        "persist-queue their packed records. The garbage collector runs as it comes (no "
        "`gc.freeze()`).",
        "- The pairs row says `"
        + PAIRS_NOT_SUPPORTED
        + "` when the build's `append_many` refuses a `(value, key)` tuple (tried once in the "
        "child); a build that takes one but stores something else fails the run.",
        "- Codec-only append (table 8) times the same open, appends and close with the input "
        "objects (`Message`s, row tuples, `(key, value)` pairs, packed records) built before "
        "timing and frozen out of the garbage collector (`gc.freeze()`): the store's own work.",
        "- Scan time covers opening, reading every record and closing. The user-loop scan "
        "(tables 3, 4) touches every field returned: logstore `r.offset, r.timestamp, r.key, "
        "r.value, r.headers`, SQLite every column, lmdb the offset key and the value split "
        "into key and value, the plain file every parsed field, kafka-python each record's "
        "offset, timestamp, key, value and headers; the codec-only scan (table 8) reads key "
        "and value only. Files were just written, so scans read from the page cache.",
        "- Reopen and open + last record are timed in the scan child, after a warm-up open "
        "(and read) of the small warm-up store so imports are excluded; the close is not "
        "timed. Open + last record: logstore `Log.open` + `read(end_offset - 1, "
        "max_records=1)`, lmdb `lmdb.open` + `cursor.last()` and the value split, SQLite "
        "`connect` + `SELECT` of the row with the largest offset; every field of the record "
        "touched. The other engines cannot find their last record without a scan (n/a).",
        f"- Producer rows (table 6): `log.producer(linger_ms=..., "
        f"{', '.join(f'{k}={v}' for k, v in producing.PRODUCER_ARGS.items())})` on a log "
        'opened with `fsync="always"`; the log and producer are opened before the clock. One '
        "thread: `perf_counter` at each `send` and in the handle's `add_done_callback`, the "
        "clock stops when `flush()` returns; 8 threads: each sends its share and then takes "
        "its handles' `result()`, the clock stops when all have. After the clock every "
        "handle's offset is checked (one thread: 0, 1, 2, ...; 8 threads: each thread's "
        "increasing, all of them exactly 0..n-1) and the log is read back: each offset holds "
        "the record sent with that handle. Sending runs as fast as the loop can (no pacing), "
        "so a latency includes the wait behind the batches already buffered: it is the "
        "latency at full load, not of a lone record. Rows say `"
        + producing.NOT_AVAILABLE
        + "` when `Log` has no `producer`.",
        "- Peak RSS is `ru_maxrss` of the child process for that phase (highest over repeats), "
        + (
            "with the high-water mark reset (`/proc/self/clear_refs`) just before the timed "
            "phase, so it is the peak during the timed phase alone. "
            if all_reset
            else "since the child started (the high-water mark could not be reset). "
        )
        + "The append child holds the whole input in memory, so the append peak includes it.",
        '- Without fsync no engine fsyncs its data (logstore `fsync="never"`, SQLite '
        f"`synchronous={settings.sqlite_synchronous}`, lmdb `sync=False`, files never fsynced; "
        "diskcache and persist-queue as they come, see workload 2); logstore still fsyncs a "
        "few small metadata files and its directory when opening and closing.",
    ]


def render(
    results: Results,
    names: Sequence[str],
    plan: dict[str, Workload],
    settings: Settings,
    repeats: int,
    command: str,
    elapsed: float,
    charts: list[str],
    profiles: dict[str, str],
    *,
    info: list[tuple[str, str]],
    producer_seconds: float,
) -> list[str]:
    main = plan[MAIN]
    capped = [n for n in names if ENGINES[n].max_records is not None]
    all_reset = all(
        m.peak_reset
        for by_engine in results.runs.values()
        for by_phase in by_engine.values()
        for runs in by_phase.values()
        for m in runs
    )

    def loop_over_codec(row: Row) -> float | None:
        return _ratio(
            results.rate(MAIN, row.engine, "append"), results.rate(MAIN, row.engine, row.phase)
        )

    def fields_over_codec(row: Row) -> float | None:
        return _ratio(
            results.rate(MAIN, row.engine, "scan"), results.rate(MAIN, row.engine, row.phase)
        )

    out = [
        "# logstore benchmark results",
        "",
        "Generated by `bench/run.py`; rerun with `make bench` (or `make bench ARGS=--full`). "
        "Every engine runs on the same workloads in this one run, repeats interleaved. Tables "
        "1 to 7 time what a user's loop does (inputs built inside the timed loop, the garbage "
        "collector as it comes, scans touching every field); table 8 is the store's own work "
        "alone (codec only: inputs built before the clock).",
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
        *_workload_lines(plan, producer_seconds),
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
        "A target not met says by how much; `make bench ARGS=--profile` appends a cProfile of "
        "logstore's phases to show where the time goes.",
        "",
        *baseline_table(results, names),
        "## 1. Append, 100-byte values, no fsync (user loop)",
        "",
        *rate_table(results, engine_rows(names, "append", pairs=True), MAIN, "append"),
        "",
        "## 2. Append with an fsync per batch (user loop)",
        "",
        *rate_table(results, engine_rows(names, "append"), FSYNC, "append"),
        "",
        "What each engine does per batch here:",
        "",
        *(f"- {ENGINES[n].label}: {ENGINES[n].fsync_note}" for n in names),
        "",
        "## 3. Scan, 100-byte values, every field touched",
        "",
        *rate_table(results, engine_rows(names, "scan"), MAIN, "scan"),
        "",
        "## 4. 1 KiB values (user loop)",
        "",
        "Append:",
        "",
        *rate_table(results, engine_rows(names, "append"), KIB, "append"),
        "",
        "Scan, every field touched:",
        "",
        *rate_table(results, engine_rows(names, "scan"), KIB, "scan"),
        "",
        "## 5. Reopen after a clean close, and open + last record",
        "",
        *reopen_table(results, names),
        "",
        '## 6. Producer, `fsync="always"` (logstore only)',
        "",
        *producer_table(results, names),
        "",
        "## 7. Sequential read of the log (logstore only)",
        "",
        *read_table(results, names),
        "",
        "## 8. Codec only: inputs built before the clock, `gc.freeze()`",
        "",
        "Workload 1 again, the store's own work alone: the input objects are built before "
        "timing and kept out of the garbage collector, and the scan reads key and value only. "
        "The last column is the user-loop rate (tables 1 and 3) over this one.",
        "",
        "Append:",
        "",
        *rate_table(
            results,
            engine_rows(names, "append-codec"),
            MAIN,
            "append-codec",
            ("user loop / codec only", loop_over_codec),
        ),
        "",
        "Scan, key and value only:",
        "",
        *rate_table(
            results,
            engine_rows(names, "scan-codec"),
            MAIN,
            "scan-codec",
            ("every field / key + value only", fields_over_codec),
        ),
        "",
        "## Charts",
        "",
        *charts,
        "",
        "## Details (workloads 1 and 3, user loop)",
        "",
        *detail_table(results, names),
        "",
        "Engines:",
        "",
        *(f"- {ENGINES[n].describe(settings)}" for n in names),
        "",
        "Notes:",
        "",
        *_notes(settings, all_reset),
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
