"""Reports an operator can believe: verify, inspect and recover say exactly what is there.

Each log here has a fixed layout (8 segments of 5 batches of 76 bytes, an
index entry per batch), so every problem is asserted by file, byte position
and the whole line printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import crc32c
import pytest

import logstore
from logstore import compression, diagnostics, inspection
from logstore.cli import common as cli_common
from logstore.cli import verify as cli_verify

from .conftest import file_hashes, run_cli

BATCH = 76  # bytes of one single-record batch of b"value-NN"
CONFIG = logstore.LogConfig(fsync="never", segment_bytes=400, index_interval_bytes=10)


run = run_cli


def seg(directory: Path, base: int, suffix: str = ".log") -> Path:
    return directory / f"{base:020d}{suffix}"


@pytest.fixture
def part(tmp_path: Path) -> Path:
    """A closed log ``p-0`` under a broker-like root: offsets 0..39, segments at 0, 5, ... 35."""
    directory = tmp_path / "root" / "p-0"
    with logstore.Log.open(directory, CONFIG) as log:
        for i in range(40):
            log.append(b"value-%02d" % i, timestamp=1000 + i)
        assert [(s.base_offset, s.size_bytes) for s in log.segments] == [
            (b, 5 * BATCH) for b in range(0, 40, 5)
        ]
    return directory


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(data)


def crc_line(path: Path, position: int) -> str:
    """The line verify prints for a CRC mismatch of the batch at ``position``."""
    data = path.read_bytes()
    stored = int.from_bytes(data[position + 17 : position + 21], "big")
    computed = crc32c.crc32c(data[position + 21 : position + BATCH])
    return (
        f"{path} at byte {position}: CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
    )


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


@pytest.mark.parametrize("command", ["verify", "inspect", "recover"])
def test_a_path_that_is_not_a_log_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    foreign = tmp_path / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "missing"): f"{tmp_path / 'missing'}: no such file or directory",
        str(tmp_path / "empty"): f"{tmp_path / 'empty'} is an empty directory, "
        "not a log directory or broker root",
        str(foreign): f"{foreign} is not a log directory or broker root (no segment files, "
        "no logstore-topics.json, no topic-N partition directories)",
    }
    if os.path.isdir("/etc"):
        cases["/etc"] = (
            "/etc is not a log directory or broker root (no segment files, "
            "no logstore-topics.json, no topic-N partition directories)"
        )
    before = file_hashes(tmp_path)
    for path, line in cases.items():
        assert run(capsys, command, path) == (2, "", f"logstore: {line}\n")
    assert file_hashes(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["empty", "foreign"]
    assert os.listdir(tmp_path / "empty") == []


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


# ---------------------------------------------------------------- recover


def test_recover_json_on_a_clean_log_is_a_report_with_no_actions(
    capsys: pytest.CaptureFixture[str], part: Path
) -> None:
    code, out, err = run(capsys, "recover", str(part.parent), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "path": str(part.parent),
        "dry_run": False,
        "force": False,
        "partitions": 1,
        "ok": True,
        "changed": 0,
        "actions": [],
        "damage_remaining": [],
    }
    code, out, err = run(capsys, "recover", str(part))
    assert (code, out, err) == (0, "1 partition(s) checked, 0 thing(s) changed\n", "")


def test_recover_exits_1_while_damage_below_the_recovery_point_remains(
    capsys: pytest.CaptureFixture[str], part: Path
) -> None:
    flip(seg(part, 10), BATCH + 70)
    before = file_hashes(part)
    line = (
        f"damaged: {seg(part, 10)} at byte {BATCH} ({4 * BATCH} bytes): "
        + crc_line(seg(part, 10), BATCH).split(": ", 1)[1]
        + " (below the recovery point: not cut; use recover --force)"
    )
    remains = (
        "logstore: damage remains in 1 file(s) (below the recovery point: cut it with --force)\n"
    )
    code, out, err = run(capsys, "recover", str(part), "--dry-run")
    assert (code, out, err) == (
        1,
        f"{line}\n1 partition(s) checked, 0 thing(s) would change\n",
        remains,
    )
    code, out, err = run(capsys, "recover", str(part))
    assert (code, out, err) == (1, f"{line}\n1 partition(s) checked, 0 thing(s) changed\n", remains)
    assert {k: v for k, v in file_hashes(part).items() if k.endswith(".log")} == {
        k: v for k, v in before.items() if k.endswith(".log")
    }
    code, out, _ = run(capsys, "recover", str(part), "--json")
    report = json.loads(out)
    assert (code, report["ok"], report["changed"], len(report["damage_remaining"])) == (
        1,
        False,
        0,
        1,
    )
    code, out, err = run(capsys, "recover", str(part), "--force")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        f"truncated: {seg(part, 10)} at byte {BATCH} ({4 * BATCH} bytes): "
        + crc_line(seg(part, 10).with_name(seg(part, 10).name + ".corrupt-76"), 0).split(": ", 1)[1]
    )
    assert out.splitlines()[-1] == "1 partition(s) checked, 6 thing(s) changed"
    assert run(capsys, "verify", str(part)) == (0, "ok: 11 batches, 11 records verified\n", "")


def test_recover_rebuilds_a_bad_index_and_says_so_once(
    capsys: pytest.CaptureFixture[str], part: Path
) -> None:
    index = seg(part, 5, ".index")
    good = index.read_bytes()
    data = bytearray(good)
    data[12:16] = (2 * BATCH - 2).to_bytes(4, "big")
    index.write_bytes(data)
    line = (
        f"{index} at byte 8: entry (7, {2 * BATCH - 2}) does not match the log: no batch starts "
        "there"
    )
    code, out, _ = run(capsys, "recover", str(part), "--dry-run")
    assert (code, out) == (
        0,
        f"would rebuild index: {line}\n1 partition(s) checked, 1 thing(s) would change\n",
    )
    assert index.read_bytes() == bytes(data)
    code, out, err = run(capsys, "recover", str(part))
    assert (code, out, err) == (
        0,
        f"rebuilt index: {line}\n1 partition(s) checked, 1 thing(s) changed\n",
        "",
    )
    # Rebuilt with the log's own index_interval_bytes (recorded at open): as it was written.
    assert index.read_bytes() == good != b""
    assert run(capsys, "verify", str(part)) == (0, "ok: 40 batches, 40 records verified\n", "")
    assert run(capsys, "recover", str(part)) == (
        0,
        "1 partition(s) checked, 0 thing(s) changed\n",
        "",
    )


# ---------------------------------------------------------------- directory kinds


def test_log_open_refuses_a_broker_root_and_a_file(tmp_path: Path) -> None:
    root = tmp_path / "broker"
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 2)
        broker.produce("t", b"x", partition=1)
    before = file_hashes(root)
    names = sorted(os.listdir(root))
    with pytest.raises(logstore.NotALogError) as info:
        logstore.Log.open(root)
    assert str(info.value) == (
        f"{root} is a broker root: it holds logstore-topics.json or topic-N partition "
        "directories; open it with Broker.open"
    )
    assert (info.value.path, info.value.kind) == (str(root), "broker")
    assert isinstance(info.value, ValueError)
    with pytest.raises(logstore.NotALogError):
        logstore.Log.recover(root)
    assert (file_hashes(root), sorted(os.listdir(root))) == (before, names)
    # without the metadata file, its topic-N partitions still say what it is
    (root / "logstore-topics.json").unlink()
    with pytest.raises(logstore.NotALogError, match="is a broker root"):
        logstore.Log.open(root)
    assert sorted(os.listdir(root)) == sorted(n for n in names if n != "logstore-topics.json")
    afile = tmp_path / "afile"
    afile.write_bytes(b"data")
    with pytest.raises(logstore.NotALogError) as info:
        logstore.Log.open(afile)
    assert str(info.value) == f"{afile} is a file, not a log directory or broker root"
    with pytest.raises(logstore.NotALogError) as info:
        logstore.Broker.open(afile)
    assert afile.read_bytes() == b"data"


def test_broker_open_refuses_a_partition_directory(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    with logstore.Log.open(directory, logstore.LogConfig(fsync="never")) as log:
        log.append(b"x")
    before = file_hashes(directory)
    with pytest.raises(logstore.NotALogError) as info:
        logstore.Broker.open(directory, maintenance_interval_ms=None)
    assert str(info.value) == (
        f"{directory} is a log (partition) directory: it holds segment or checkpoint files; "
        "open it with Log.open"
    )
    assert file_hashes(directory) == before  # no logstore-topics.json, no topic dirs created
    assert not any(p.is_dir() for p in directory.iterdir())


def test_opening_new_or_empty_directories_still_creates_them(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    with logstore.Log.open(tmp_path / "e", logstore.LogConfig(fsync="never")) as log:
        assert log.end_offset == 0
    with logstore.Broker.open(tmp_path / "b", maintenance_interval_ms=None) as broker:
        assert broker.topics() == []
    assert diagnostics.kind_of(str(tmp_path / "e")) == "log"
    assert diagnostics.kind_of(str(tmp_path / "b")) == "broker"
    assert diagnostics.kind_of(str(tmp_path)) == "foreign"
    # a topic whose name looks like a segment file's is still a topic, not a segment
    with logstore.Broker.open(tmp_path / "odd", maintenance_interval_ms=None) as broker:
        broker.create_topic("00000000000000000001.log", 1)
    (tmp_path / "odd" / "logstore-topics.json").unlink()
    assert diagnostics.kind_of(str(tmp_path / "odd")) == "broker"
    with logstore.Broker.open(tmp_path / "odd", maintenance_interval_ms=None) as broker:
        assert broker.topics() == ["00000000000000000001.log"]


# ---------------------------------------------------------------- a missing codec


@pytest.fixture
def lz4_log(tmp_path: Path) -> Path:
    if not compression.is_available("lz4"):
        pytest.skip("lz4 is not installed")
    directory = tmp_path / "z-0"
    config = logstore.LogConfig(fsync="never", compression="lz4", index_interval_bytes=10)
    with logstore.Log.open(directory, config) as log:
        for i in range(3):
            log.append(b"value-%d" % i * 20, timestamp=1000 + i)
    return directory


def _batch_positions(path: Path) -> list[int]:
    data, pos, found = path.read_bytes(), 0, []
    while pos < len(data):
        found.append(pos)
        pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "big")
    return found


def test_a_missing_codec_is_not_corruption(
    capsys: pytest.CaptureFixture[str], lz4_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment = seg(lz4_log, 0)
    positions = _batch_positions(segment)
    assert len(positions) == 3
    monkeypatch.setattr(compression, "_lz4frame", None)  # as if lz4 were not installed
    assert not compression.is_available("lz4")
    before = file_hashes(lz4_log)

    with (
        logstore.Log.open(lz4_log, logstore.LogConfig(fsync="never")) as log,
        pytest.raises(logstore.CodecUnavailableError) as info,
    ):
        log.read(1)
    assert not isinstance(info.value, logstore.CorruptLogError)
    assert str(info.value) == (
        f"batch at byte {positions[1]} of {segment} is lz4-compressed; install logstore[lz4]"
    )
    assert (info.value.path, info.value.position) == (str(segment), positions[1])

    code, out, err = run(capsys, "verify", str(lz4_log))
    assert code == 1
    assert out == (
        f"{segment}: could not check 3 batches from byte 0 (lz4 not installed; "
        "install logstore[lz4])\n"
    )
    assert (
        err
        == "logstore: could not check 3 batches (lz4 not installed) (3 batches, 3 records read)\n"
    )
    code, out, _ = run(capsys, "verify", str(lz4_log), "--json")
    report = json.loads(out)
    assert (code, report["ok"], report["problems"], report["unchecked_batches"]) == (
        1,
        False,
        [],
        3,
    )
    assert [u["position"] for u in report["unchecked"]] == positions

    code, out, err = run(capsys, "inspect", str(lz4_log), "--records")
    assert (code, err) == (0, "")  # not damage: inspect shows what it could not read
    assert out.splitlines()[1:] == [
        "    could not check 3 batches (lz4 not installed)",
        f"    could not decode: batch at byte 0 of {segment} is lz4-compressed; "
        "install logstore[lz4]",
        f"{lz4_log}: offsets [0, 3), 3 records, 1 segments, {segment.stat().st_size} bytes",
    ]

    # neither recover nor an unclean open cuts or quarantines them
    (lz4_log / ".kafka_cleanshutdown").unlink()
    code, out, err = run(capsys, "recover", str(lz4_log))
    assert (code, out, err) == (0, "1 partition(s) checked, 0 thing(s) changed\n", "")
    (lz4_log / ".kafka_cleanshutdown").unlink()
    with logstore.Log.open(lz4_log, logstore.LogConfig(fsync="never")) as log:
        assert (log.start_offset, log.end_offset) == (0, 3)
    logs = {k: v for k, v in file_hashes(lz4_log).items() if ".log" in k}
    assert logs == {k: v for k, v in before.items() if ".log" in k}
    monkeypatch.undo()
    with logstore.Log.open(lz4_log, logstore.LogConfig(fsync="never")) as log:
        assert [r.value for r in log.read(0)] == [b"value-%d" % i * 20 for i in range(3)]


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


def test_commands_never_write_into_a_directory_of_other_things(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """consume, produce, Log.open and Broker.open refuse /etc-like directories, untouched."""
    other = tmp_path / "etc"
    (other / "dbus-1" / "system.d").mkdir(parents=True)
    (other / "polkit-1").mkdir()
    (other / "hosts").write_text("127.0.0.1 localhost\n")
    before = sorted(p.relative_to(other).as_posix() for p in other.rglob("*"))
    described = (
        f"{other} is not a log directory or broker root (no segment files, no "
        "logstore-topics.json, no topic-N partition directories)"
    )
    code, out, err = run(capsys, "consume", str(other), "web")
    assert (code, out, err) == (2, "", f"logstore: {described}\n")
    with pytest.raises(logstore.NotALogError, match="refusing to create one among other files"):
        logstore.Log.open(other)
    with pytest.raises(logstore.NotALogError, match="refusing to create one among other files"):
        logstore.Broker.open(other)
    assert sorted(p.relative_to(other).as_posix() for p in other.rglob("*")) == before


def test_a_broker_adopts_only_directories_that_hold_logs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("web", 1)
        broker.produce("web", b"x")
    (root / "notes-12").mkdir()  # empty, not a partition of anything
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        assert broker.topics() == ["web"]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("notes")) == ["notes-12"]


def test_flushed_damage_in_the_active_segment_is_never_cut_without_force(
    capsys: pytest.CaptureFixture[str], part: Path
) -> None:
    """A bit flip in batches that a clean close fsynced is not a torn write.

    The log was closed at offset 40 (its recovery point), so a CRC mismatch in
    the active segment's third batch (offset 37) lies below the recovery point:
    neither recover without --force nor an unclean open may cut it.
    """
    active = seg(part, 35)
    flip(active, 2 * BATCH + 70)
    before = file_hashes(part)
    line = (
        f"damaged: {active} at byte {2 * BATCH} ({3 * BATCH} bytes): "
        + crc_line(active, 2 * BATCH).split(": ", 1)[1]
        + " (below the recovery point: not cut; use recover --force)"
    )
    code, out, _ = run(capsys, "recover", str(part))
    assert (code, out) == (1, f"{line}\n1 partition(s) checked, 0 thing(s) changed\n")
    assert file_hashes(part) == before
    (part / ".kafka_cleanshutdown").unlink()  # as after a crash: recovery runs on open
    before = file_hashes(part)
    with pytest.raises(logstore.CorruptLogError) as info:
        logstore.Log.open(part, CONFIG)
    assert (info.value.path, info.value.position, info.value.kind) == (
        str(active),
        2 * BATCH,
        "crc_mismatch",
    )
    assert "below the recovery point" in str(info.value)
    assert file_hashes(part) == before
    code, out, _ = run(capsys, "recover", str(part), "--force")
    assert code == 0
    assert out.splitlines()[0].startswith(f"truncated: {active} at byte {2 * BATCH} ")
    with logstore.Log.open(part, CONFIG) as log:
        assert (log.end_offset, [r.value for r in log.read(35)]) == (37, [b"value-35", b"value-36"])


def test_a_moved_last_base_offset_of_a_compacted_log_is_damage_not_an_index_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Gaps are legal in a compacted log, so only the clean close's end offset exposes it.

    The last batch (offset 39) is renumbered 41 in the file: recover must not
    rebuild the indexes around it and move on, nor may an open serve it.
    """
    directory = tmp_path / "root" / "c-0"
    config = logstore.LogConfig(
        fsync="never", segment_bytes=400, index_interval_bytes=10, cleanup_policy="compact"
    )
    with logstore.Log.open(directory, config) as log:
        for i in range(40):
            log.append(b"value-%02d" % i, key=b"k%02d" % i)
    active = seg(directory, 35)
    data = bytearray(active.read_bytes())
    last = len(data) - (len(data) // 5)
    assert int.from_bytes(data[last : last + 8], "big") == 39
    data[last : last + 8] = (41).to_bytes(8, "big")
    active.write_bytes(data)
    before = file_hashes(directory)

    def logs(hashes: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in hashes.items() if k.endswith(".log")}

    code, out, _ = run(capsys, "recover", str(directory))
    assert code == 1
    assert out.splitlines()[0] == (
        f"damaged: {active} at byte {last} ({len(data) - last} bytes): the batches end at "
        "offset 41, but the log was closed at offset 40 (recovery-point-offset-checkpoint): a "
        "batch's base offset is damaged (below the recovery point: not cut; use recover --force)"
    )
    assert logs(file_hashes(directory)) == logs(before)  # no batch cut or moved
    with pytest.raises(logstore.CorruptLogError) as info:
        logstore.Log.open(directory, config)
    assert (info.value.path, info.value.position, info.value.kind) == (
        str(active),
        last,
        "offset_mismatch",
    )
    assert logs(file_hashes(directory)) == logs(before)  # no batch cut or moved
