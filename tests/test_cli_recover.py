"""``logstore recover``: reports, dry runs, ``--force``, and logs held open by others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import logstore

from .conftest import file_hashes
from .helpers import SEGMENT_0, run
from .helpers_verify import BATCH, CONFIG, crc_line, flip, seg


def test_recover_dry_run_touches_nothing(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    segment = root / "web-1" / SEGMENT_0
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(b"\x00" * 100)
    (root / "web-1" / ".kafka_cleanshutdown").unlink()
    before = file_hashes(root)
    code, out, err = run(capsys, "recover", str(root), "--dry-run")
    assert (code, err) == (0, "")
    assert f"would truncate: {segment} at byte {size} (100 bytes)" in out
    assert file_hashes(root) == before
    code, out, _ = run(capsys, "recover", str(root / "web-1"), "--json")
    assert code == 0
    report = json.loads(out)  # one JSON report
    assert (report["changed"], report["ok"], report["damage_remaining"]) == (1, True, [])
    (action,) = report["actions"]
    assert (action["action"], action["position"], action["bytes"], action["kind"]) == (
        "truncate",
        size,
        100,
        "zero_fill",
    )
    assert segment.stat().st_size == size
    assert (root / "web-1" / f"{SEGMENT_0}.corrupt-{size}").read_bytes() == b"\x00" * 100


def test_recover_of_a_log_held_open_is_refused(
    capsys: pytest.CaptureFixture[str], root: Path
) -> None:
    with logstore.Log.open(root / "web-1", logstore.LogConfig(fsync="never")):
        code, _, err = run(capsys, "recover", str(root / "web-1"))
    assert code == 1
    assert (
        err
        == f"logstore: {root / 'web-1'} is already open (lock held on {root / 'web-1' / '.lock'})\n"
    )


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
