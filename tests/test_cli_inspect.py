"""``logstore inspect``: a root, a partition's records and its index files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import logstore

from .helpers import SEGMENT_0, run


def test_inspect_a_root_shows_every_partition(
    capsys: pytest.CaptureFixture[str], root: Path
) -> None:
    code, out, err = run(capsys, "inspect", str(root))
    assert (code, err) == (0, "")
    assert f"{root / 'web-0'}: offsets [0, 30), 30 records" in out
    assert f"{root / 'web-1'}: offsets [0, 2), 2 records, 1 segments" in out
    assert "codecs gzip:" in out


def test_inspect_records_shows_binary_safely(
    capsys: pytest.CaptureFixture[str], root: Path
) -> None:
    code, out, _ = run(capsys, "inspect", str(root / "web-0" / SEGMENT_0), "--records")
    assert code == 0
    assert 'offset 0  ts 1000  key "host-0"  value "GET /0"  headers bin=0x00ff' in out


def test_inspect_json_lines(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    code, out, _ = run(capsys, "inspect", str(root / "web-1"), "--json", "--records")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    # Streamed: each segment, then its records, then the partition's totals.
    assert [line["type"] for line in lines] == ["segment", "record", "record", "partition"]
    assert lines[-1]["partition"] == str(root / "web-1")
    assert (lines[-1]["start_offset"], lines[-1]["end_offset"], lines[-1]["records"]) == (0, 2, 2)
    assert lines[0]["base_offset"] == 0 and lines[0]["records"] == 2
    assert [(r["offset"], r["value"]) for r in lines[1:3]] == [
        (0, {"utf8": "a"}),
        (1, {"utf8": "b"}),
    ]


def test_inspect_index_files(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    index = next((root / "web-0").glob("*.index"))
    code, out, _ = run(capsys, "inspect", str(index))
    assert code == 0
    assert out.strip().endswith("entries")


def test_inspect_of_a_live_log_stops_at_the_last_complete_batch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with logstore.Log.open(tmp_path / "p-0", logstore.LogConfig(fsync="never")) as log:
        log.append_many([b"one", b"two"])
        segment = tmp_path / "p-0" / SEGMENT_0
        whole = segment.stat().st_size
        with open(segment, "ab") as f:  # a writer's batch, half written
            f.write(segment.read_bytes()[:40])
        code, out, err = run(capsys, "verify", str(tmp_path / "p-0"))
        assert (code, err) == (0, "")
        code, out, _ = run(capsys, "inspect", str(tmp_path / "p-0"))
        assert code == 0
        assert "incomplete tail: 40 bytes" in out
        os.truncate(segment, whole)
    # once no writer holds it, the same tail is a torn write: reported
    with open(segment, "ab") as f:
        f.write(segment.read_bytes()[:40])
    code, out, err = run(capsys, "verify", str(tmp_path / "p-0"))
    assert code == 1
    assert out.startswith(f"{segment} at byte {whole}: ")
    assert err == "logstore: 1 problem(s) in 1 file(s) (1 batches, 2 records read)\n"
