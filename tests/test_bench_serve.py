"""bench/serve.py at tiny sizes, logstore's side only: the script runs and its table is whole.

The benchmark's children check their own outcomes (every record delivered,
exactly the records produced consumed back), so a run that exits 0 moved all
of them; this checks that and the table's rows, so the script cannot rot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kio")
pytest.importorskip("confluent_kafka")

BENCH = Path(__file__).resolve().parent.parent / "bench" / "serve.py"
NUMBER = r"[\d,.]+"


def test_the_serve_benchmark_runs_at_tiny_sizes_and_reports_every_row(tmp_path: Path) -> None:
    output = tmp_path / "serve.md"
    argv = [sys.executable, str(BENCH), "--no-kafka", "--records", "3000"]
    argv += ["--kib-records", "300", "--latency-seconds", "0.1", "--rounds", "1"]
    done = subprocess.run(
        [*argv, "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, TMPDIR=str(tmp_path)),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    assert text.strip() == done.stdout.strip()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    loads = [
        f"{n} x {size}, {codec}"
        for n, size in (("3,000", "100 B"), ("300", "1 KiB"))
        for codec in ("none", "zstd")
    ]
    servers = ["logstore never", "logstore always"]
    table = [r for r in rows if r.split(" | ")[0].lstrip("| ") in loads]
    assert [tuple(r.split(" | ")[:2]) for r in table] == [
        (f"| {load}", server) for load in loads for server in servers
    ]
    n = NUMBER
    for row in table:
        # MB/s and records/s of produce, then of consume (no Kafka to compare with), CPU per MB.
        assert re.fullmatch(
            rf"\| [^|]+ \| [^|]+ \| {n} \| {n} \|  \| {n} \| {n} \|  \| {n} \| {n} \|", row
        ), row
    latency = [r for r in rows if r.split(" | ")[0].lstrip("| ") in servers]
    assert [r.split(" | ")[0] for r in latency] == [f"| {s}" for s in servers]
    for row in latency:  # p50 and p99 ms, server CPU per MB and in % of a core
        assert re.fullmatch(rf"\| [^|]+ \| {n} \| {n} \| {n} \| {n} \|", row), row
    assert list(tmp_path.glob("logstore-serve-bench-*")) == []  # its work directory removed
