"""``inspection``: read-only walks of a partition, as ``inspect`` prints them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logstore import diagnostics, inspection

from .helpers import run
from .helpers_verify import BATCH, seg


# ---------------------------------------------------------------- inspect
def test_inspect_shows_index_damage(capsys: pytest.CaptureFixture[str], part: Path) -> None:
    index = seg(part, 35, ".index")
    data = bytearray(index.read_bytes())
    data[20:24] = (3 * BATCH + 1).to_bytes(4, "big")  # entry 2: (38, 228) -> (38, 229)
    index.write_bytes(data)
    code, out, err = run(capsys, "inspect", str(part))
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[-3:] == [
        f"  {seg(part, 35).name}  offsets [35, 40)  records 5  batches 5  bytes {5 * BATCH}  "
        "timestamps 1035..1039  codecs none:5",
        f"    CORRUPT: {index} at byte 16: entry (38, {3 * BATCH + 1}) does not match the log: no batch "
        "starts there",
        f"{part}: offsets [0, 40), 40 records, 8 segments, {40 * BATCH} bytes",
    ]
    code, out, _ = run(capsys, "inspect", str(part), "--json")
    assert code == 1
    problems = [json.loads(x) for x in out.splitlines() if json.loads(x)["type"] == "problem"]
    assert problems == [
        {
            "type": "problem",
            "file": str(index),
            "position": 16,
            "kind": "invalid_index",
            "message": f"{index} at byte 16: entry (38, {3 * BATCH + 1}) does not match the log: no batch "
            "starts there",
        }
    ]


def test_inspect_streams_as_it_walks(
    capsys: pytest.CaptureFixture[str], part: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure in the third segment comes after the first two were already printed."""
    walk = inspection.summarize_segment

    def failing(directory: str, base: int, **kw: object) -> diagnostics.SegmentSummary:
        if base == 10:
            raise OSError(5, "Input/output error", str(seg(part, 10)))
        return walk(directory, base, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(inspection, "summarize_segment", failing)
    code, out, err = run(capsys, "inspect", str(part.parent))
    assert code == 1
    assert [line.split()[0] for line in out.splitlines()] == [seg(part, 0).name, seg(part, 5).name]
    assert err == f"logstore: {seg(part, 10)}: Input/output error\n"
