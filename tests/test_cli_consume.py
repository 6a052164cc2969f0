"""``logstore consume --from last`` and ``--from-offset N``: what is printed and committed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import _run
from .helpers_broker import _broker


def _two_partitions(root: Path) -> None:
    with _broker(root) as broker:
        broker.create_topic("t", 2)
        for i in range(7):
            broker.produce("t", b"v%d" % i, partition=i % 2)  # p0: v0 v2 v4 v6, p1: v1 v3 v5


def _committed(root: Path) -> dict[tuple[str, str, int], int]:
    with _broker(root) as broker:
        return broker.committed_offsets()


def test_from_last_prints_the_last_record_of_each_partition_and_commits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _two_partitions(root)
    code, out, err = _run(capsys, "consume", str(root), "t", "--from", "last", "--group", "g")
    assert (code, sorted(out.splitlines()), err) == (0, ["v5", "v6"], "")
    assert _committed(root) == {("g", "t", 0): 4, ("g", "t", 1): 3}
    # Committed now: --from no longer applies, nothing new to print.
    assert _run(capsys, "consume", str(root), "t", "--from", "last", "--group", "g") == (0, "", "")


def test_from_last_of_an_empty_topic_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    with _broker(root) as broker:
        broker.create_topic("t", 2)
    code, out, err = _run(capsys, "consume", str(root), "t", "--from", "last", "--group", "g")
    assert (code, out, err) == (0, "", "")
    assert _committed(root) == {}


def test_from_offset_prints_from_that_offset_of_each_partition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _two_partitions(root)
    code, out, err = _run(capsys, "consume", str(root), "t", "--from-offset", "2", "--json")
    assert (code, err) == (0, "")
    got = sorted(
        (r["partition"], r["offset"], r["value"]["utf8"]) for r in map(json.loads, out.splitlines())
    )
    assert got == [(0, 2, "v4"), (0, 3, "v6"), (1, 2, "v5")]
    code, out, err = _run(capsys, "consume", str(root), "t", "--from-offset", "3", "--group", "g")
    assert (code, out, err) == (0, "v6\n", "")
    assert _committed(root) == {("g", "t", 0): 4, ("g", "t", 1): 3}


def test_from_offset_beyond_the_end_is_one_line_naming_the_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _two_partitions(root)
    code, out, err = _run(capsys, "consume", str(root), "t", "--from-offset", "4")
    assert (code, out) == (1, "")
    assert err == (
        "logstore: start offset 4 is beyond the end of t-1: its records are at offsets "
        "[0, 3) and the next one will be at 3\n"
    )


def test_from_and_from_offset_together_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _two_partitions(root)
    code, out, err = _run(capsys, "consume", str(root), "t", "--from", "last", "--from-offset", "1")
    assert (code, out) == (2, "")
    assert "give --from or --from-offset, not both" in err
    code, out, err = _run(capsys, "consume", str(root), "t", "--from-offset", "-1")
    assert (code, out) == (2, "")
    assert "--from-offset" in err
    code, out, err = _run(capsys, "consume", str(root), "t", "--from", "first")
    assert (code, out) == (2, "")
    assert "use earliest, latest, last or a timestamp in ms" in err
