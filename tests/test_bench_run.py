"""bench/run.py at tiny sizes, and the producer rows' checks: the benchmark cannot rot.

The run's children check their own outcomes (every record scanned back, every
producer handle's offset holding the record sent with it), so a run that exits
0 measured what it says; this checks that and that every table and target line
of the report is there, in the state the build under test allows (rows of
numbers, or the stated "n/a" when this build has no pairs or no producer).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logstore

BENCH = Path(__file__).resolve().parent.parent / "bench"
NUMBER = r"[\d,.]+"
ENGINES = ("logstore", "lmdb", "sqlite", "plain-file")
PAIRS_NA = "n/a: pairs not supported by this build"
PRODUCER_NA = "n/a: no producer in this build"


def _pairs_supported(tmp_path: Path) -> bool:
    with logstore.Log.open(tmp_path / "probe") as log:
        try:
            log.append_many([(b"v", b"k")])  # type: ignore[list-item]
        except TypeError:
            return False
    return True


def _row(text: str, label: str) -> list[str]:
    """The cells of the first table row whose first cell is ``label``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r}")


def test_the_benchmark_runs_at_tiny_sizes_and_reports_every_table(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    argv = [sys.executable, str(BENCH / "run.py"), "--engines", ",".join(ENGINES)]
    argv += ["--records", "3000", "--fsync-records", "2000", "--kib-records", "1000"]
    argv += ["--producer-records", "2000", "--producer-seconds", "5", "--repeats", "1"]
    argv += ["--no-extras", "--output", str(output), "--charts", str(tmp_path / "charts")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    headings = [line for line in text.splitlines() if re.match(r"## \d\. ", line)]
    assert [h.split(".")[0] for h in headings] == [f"## {n}" for n in range(1, 9)]
    # Every engine in the user-loop and codec-only tables, with a rate.
    for label in ("logstore", "lmdb", "SQLite", "plain file"):
        assert re.fullmatch(NUMBER, _row(text, label)[2]), label
    pairs = _row(text, "logstore, `(value, key)` pairs")[2]
    if _pairs_supported(tmp_path):
        assert re.fullmatch(NUMBER, pairs)
    else:
        assert pairs == PAIRS_NA
    eight = _row(text, "logstore: linger 5 ms, 8 threads")
    if hasattr(logstore.Log, "producer"):
        assert re.fullmatch(NUMBER, eight[2])
        assert re.fullmatch(NUMBER, _row(text, "logstore: linger 5 ms, 1 thread")[4])  # p50
    else:
        assert eight[2] == PRODUCER_NA
    reopen = text.split("## 5. ")[1].split("## 6. ")[0]
    for label in ("logstore", "lmdb", "SQLite"):
        assert re.fullmatch(NUMBER, _row(reopen, label)[4]), label  # open + last record, ms
    assert _row(reopen, "plain file")[4] == "n/a"
    targets = text.split("## Targets")[1].split("## 1.")[0]
    issue14 = targets.split("Issue 6")[0]
    verdicts = re.findall(r"^- (MET|NOT MET|NOT MEASURED): ", issue14, flags=re.MULTILINE)
    assert len(verdicts) == 10
    assert (tmp_path / "charts" / "append.png").stat().st_size > 0


# --------------------------------------------------------------------------- producer checks


class _Handle:
    """Resolved at once: the stand-in producer below appends as it is sent to."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def result(self, timeout: float | None = None) -> int:
        return self.offset

    def add_done_callback(self, fn: Any) -> None:
        fn(self)


class _Producer:
    """A synchronous stand-in for ``Log.producer``; ``lie`` stores key and value swapped."""

    def __init__(self, log: logstore.Log, lie: bool) -> None:
        self.log, self.lie = log, lie

    def send(self, value: bytes, key: bytes | None = None) -> _Handle:
        if self.lie:
            value, key = key, value
        return _Handle(self.log.append(value, key=key))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def producing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(BENCH))
    import producing as module

    yield module


@pytest.mark.parametrize("threads", [1, 8])
def test_the_producer_rows_accept_handles_that_hold_what_was_sent(
    producing: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    from workload import Workload, columns

    monkeypatch.setattr(
        logstore.Log, "producer", lambda self, **kw: _Producer(self, False), raising=False
    )
    config = producing.Config("producer-test", 5, threads)
    data = columns(Workload(records=2500, batch_size=1000))
    run = producing.Run(str(tmp_path / "log"), config, data, deadline_s=60.0)
    run.prepare()
    assert run.go() == 2500
    sent = run.check()
    assert sent.records == 2500
    assert len(sent.latencies) == (2500 if threads == 1 else 0)


def test_the_producer_rows_fail_when_an_offset_does_not_hold_the_record_sent(
    producing: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workload import Workload, columns

    monkeypatch.setattr(
        logstore.Log, "producer", lambda self, **kw: _Producer(self, True), raising=False
    )
    config = producing.Config("producer-test", 5, 1)
    run = producing.Run(
        str(tmp_path / "log"), config, columns(Workload(records=10)), deadline_s=60.0
    )
    run.prepare()
    run.go()
    with pytest.raises(RuntimeError, match="offset 0 does not hold the record sent there"):
        run.check()
