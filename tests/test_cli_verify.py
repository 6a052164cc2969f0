"""``logstore verify``: clean and damaged logs, bad indexes, one file, progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logstore import diagnostics
from logstore.cli import common as cli_common
from logstore.cli import verify as cli_verify

from .helpers import SEGMENT_0, run
from .helpers_verify import BATCH, crc_line, flip, seg


def test_verify_clean_and_damaged(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    code, out, err = run(capsys, "verify", str(root))
    assert (code, err) == (0, "")
    assert out.strip() == "ok: 31 batches, 32 records verified"
    segment = root / "web-1" / SEGMENT_0
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0x01
    segment.write_bytes(data)
    code, out, err = run(capsys, "verify", str(root))
    assert code == 1
    # The problems are the report (stdout, one line each); stderr has the one-line verdict.
    assert (
        out.strip()
        == f"{segment} at byte 0: CRC mismatch: stored " + out.split("stored ")[1].strip()
    )
    assert len(out.strip().splitlines()) == 1
    assert err == "logstore: 1 problem(s) in 1 file(s) (30 batches, 30 records read)\n"


def test_verify_finds_a_bad_index(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    index = next(p for p in sorted((root / "web-0").glob("*.index")) if p.stat().st_size >= 16)
    data = bytearray(index.read_bytes())
    data[4:8] = (10**6).to_bytes(4, "big")  # the first entry's position, far past the log
    index.write_bytes(data)
    code, out, err = run(capsys, "verify", str(root / "web-0"))
    assert code == 1
    assert out == (
        f"{index} at byte 0: entry 0 (1, 1000000) is out of order or past the end of the log "
        f"({index.with_suffix('.log').stat().st_size} bytes)\n"
    )
    assert err == "logstore: 1 problem(s) in 1 file(s) (30 batches, 30 records read)\n"


def test_progress_bar_only_on_a_terminal_and_only_on_stderr(
    capsys: pytest.CaptureFixture[str], part: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "verify", str(part)) == (0, "ok: 40 batches, 40 records verified\n", "")
    monkeypatch.setattr(cli_verify, "PROGRESS_MIN_BYTES", 0)
    assert run(capsys, "verify", str(part)) == (0, "ok: 40 batches, 40 records verified\n", "")
    monkeypatch.setattr(cli_common, "stderr_is_terminal", lambda: True)
    code, out, err = run(capsys, "verify", str(part))
    assert (code, out) == (0, "ok: 40 batches, 40 records verified\n")
    assert err.startswith("verifying")
    calls: list[int] = []
    diagnostics.verify(str(part), progress=calls.append)
    assert calls == [5 * BATCH] * 8


def test_verify_one_segment_file(capsys: pytest.CaptureFixture[str], part: Path) -> None:
    flip(seg(part, 15), 3 * BATCH + 70)
    code, out, err = run(capsys, "verify", str(seg(part, 15)), "--json")
    report = json.loads(out)
    assert (code, report["kind"], report["segments_checked"], report["batches"]) == (
        1,
        "segment",
        1,
        4,
    )
    assert [p["message"] for p in report["problems"]] == [crc_line(seg(part, 15), 3 * BATCH)]
    assert err == "logstore: 1 problem(s) in 1 file(s) (4 batches, 4 records read)\n"
    index = seg(part, 15, ".index")
    assert run(capsys, "verify", str(index)) == (
        2,
        "",
        f"logstore: {index} is not a segment .log file (expected <20-digit offset>.log)\n",
    )
