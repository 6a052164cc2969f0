"""``diagnostics``: ``verify`` lists exactly what is damaged, file and position, in text and
JSON, up to a limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logstore import diagnostics

from .helpers import run
from .helpers_verify import BATCH, crc_line, flip, seg


# ---------------------------------------------------------------- verify
def test_verify_lists_every_damaged_segment_with_file_and_position(
    capsys: pytest.CaptureFixture[str], part: Path
) -> None:
    flip(seg(part, 0), BATCH + 70)  # a record byte of the second batch: its CRC fails
    flip(seg(part, 10), 3 * BATCH + 70)
    flip(seg(part, 25), 70)
    code, out, err = run(capsys, "verify", str(part.parent))
    assert code == 1
    assert out.splitlines() == [
        crc_line(seg(part, 0), BATCH),
        crc_line(seg(part, 10), 3 * BATCH),
        crc_line(seg(part, 25), 0),
    ]
    assert err == "logstore: 3 problem(s) in 3 file(s) (37 batches, 37 records read)\n"


def test_verify_goes_on_after_a_bad_batch_inside_a_segment(
    capsys: pytest.CaptureFixture[str], part: Path
) -> None:
    flip(seg(part, 5), 70)
    flip(seg(part, 5), 2 * BATCH + 3)  # the base offset (outside the CRC): 7 becomes 2^32 + 7
    flip(seg(part, 5), 4 * BATCH + 70)
    code, out, err = run(capsys, "verify", str(part))
    assert code == 1
    assert out.splitlines() == [
        crc_line(seg(part, 5), 0),
        f"{seg(part, 5)} at byte {2 * BATCH}: batch base offset {(1 << 32) + 7} does not "
        "follow offset 6 (a gap in a log that was never compacted)",
        crc_line(seg(part, 5), 4 * BATCH),
    ]
    assert err == "logstore: 3 problem(s) in 1 file(s) (37 batches, 37 records read)\n"


def test_verify_json_report(capsys: pytest.CaptureFixture[str], part: Path) -> None:
    code, out, err = run(capsys, "verify", str(part), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "path": str(part),
        "kind": "log",
        "ok": True,
        "segments_checked": 8,
        "indexes_checked": 16,
        "batches": 40,
        "records": 40,
        "problems": [],
        "stopped_at_limit": False,
        "unchecked_batches": 0,
        "unchecked": [],
    }
    flip(seg(part, 30), 2 * BATCH + 70)
    code, out, err = run(capsys, "verify", str(part), "--json")
    assert code == 1
    report = json.loads(out)
    assert (report["ok"], report["batches"], report["records"]) == (False, 39, 39)
    assert report["problems"] == [
        {
            "file": str(seg(part, 30)),
            "position": 2 * BATCH,
            "kind": "crc_mismatch",
            "message": crc_line(seg(part, 30), 2 * BATCH),
        }
    ]
    assert err == "logstore: 1 problem(s) in 1 file(s) (39 batches, 39 records read)\n"


def test_verify_stops_at_max_problems(capsys: pytest.CaptureFixture[str], part: Path) -> None:
    for base in (0, 5, 10):
        flip(seg(part, base), 70)
    code, out, err = run(capsys, "verify", str(part), "--max-problems", "2")
    assert code == 1
    assert out.splitlines() == [crc_line(seg(part, 0), 0), crc_line(seg(part, 5), 0)]
    assert err == (
        "logstore: 2 problem(s) in 2 file(s), stopped at the limit of 2 (8 batches, 8 records read)\n"
    )
    report = diagnostics.verify(str(part), max_problems=2)
    assert (report.stopped_at_limit, report.segments_checked, report.ok) == (True, 2, False)


def test_verify_reports_bad_indexes_by_file_and_entry(
    capsys: pytest.CaptureFixture[str], part: Path
) -> None:
    index = seg(part, 5, ".index")
    data = bytearray(index.read_bytes())
    assert [int.from_bytes(data[i : i + 4], "big") for i in range(0, 32, 4)] == [
        1, BATCH, 2, 2 * BATCH, 3, 3 * BATCH, 4, 4 * BATCH
    ]  # fmt: skip
    data[12:16] = (2 * BATCH - 2).to_bytes(4, "big")  # still ascending, but points at no batch
    index.write_bytes(data)
    timeindex = seg(part, 20, ".timeindex")
    tdata = bytearray(timeindex.read_bytes())
    entries = [
        (int.from_bytes(tdata[i : i + 8], "big"), int.from_bytes(tdata[i + 8 : i + 12], "big"))
        for i in range(0, len(tdata), 12)
    ]
    assert entries == [(1021, 1), (1022, 2), (1023, 3), (1024, 4)]
    tdata[36:44] = (1025).to_bytes(8, "big")  # still ascending (well-formed) but wrong
    timeindex.write_bytes(tdata)
    code, out, err = run(capsys, "verify", str(part))
    assert code == 1
    assert out.splitlines() == [
        f"{index} at byte 8: entry (7, {2 * BATCH - 2}) does not match the log: no batch starts "
        "there",
        f"{timeindex} at byte 36: entry (1025, 24) does not match the log: the batch ending "
        "there has largest timestamp 1024, the segment 1024 so far",
    ]
    assert err == "logstore: 2 problem(s) in 2 file(s) (40 batches, 40 records read)\n"
