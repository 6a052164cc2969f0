"""The ``logstore`` command line: exact output, exit statuses, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from logstore import Message

from .conftest import file_hashes, run_cli

SEGMENT_0 = f"{0:020d}.log"


run = run_cli


@pytest.fixture
def root(tmp_path: Path) -> Path:
    config = logstore.LogConfig(
        fsync="never", segment_bytes=2000, compression="gzip", index_interval_bytes=10
    )
    with logstore.Log.open(tmp_path / "root" / "web-0", config) as log:
        for i in range(30):
            log.append(
                b"GET /%d" % i,
                key=b"host-%d" % (i % 3),
                timestamp=1000 + i,
                headers=(("bin", b"\x00\xff"),) if i == 0 else (),
            )
    with logstore.Log.open(tmp_path / "root" / "web-1", logstore.LogConfig(fsync="never")) as log:
        log.append_many([b"a", b"b"])
    return tmp_path / "root"


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


def test_inspect_version_names_the_codec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "--version")
    assert code == 0
    assert out.strip() == f"logstore {logstore.__version__} (codec: {logstore.__speedups__})"


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


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "inspect", str(tmp_path / "missing"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("logstore: ")
    code, _, err = run(capsys, "inspect", str(tmp_path))
    assert code == 2
    assert (
        err == f"logstore: {tmp_path} is an empty directory, not a log directory or broker root\n"
    )


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


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from(
                [
                    b"",
                    bytes(12),
                    b"\x00" * 8 + b"\x7f\xff\xff\xff" + b"\x00" * 4 + b"\x02",  # claims 2 GiB
                    bytes.fromhex("0000000000000000000000500000000002"),
                ]
            ),
            st.binary(max_size=200),
        ),
    )
)
def test_any_bytes_give_exit_0_or_1_and_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: bytes
) -> None:
    directory = tmp_path / "fuzz-0"
    directory.mkdir(exist_ok=True)
    (directory / SEGMENT_0).write_bytes(data)
    for command in (["inspect"], ["inspect", "--records"], ["verify"], ["inspect", "--json"]):
        code, _, err = run(capsys, *command, str(directory))
        assert code in (0, 1)
        assert "Traceback" not in err
        assert err.count("\n") <= 1


def test_python_dash_m_works(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "logstore", "verify", str(root)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok: 31 batches, 32 records verified")


def test_compact_dry_run_changes_nothing_then_compacts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = logstore.LogConfig(
        fsync="never", cleanup_policy="compact", segment_bytes=600, min_cleanable_dirty_ratio=1.0
    )
    with logstore.Log.open(tmp_path / "keys-0", config) as log:
        for i in range(60):
            log.append(b"value-%d" % i, key=b"k%d" % (i % 4))
    before = file_hashes(tmp_path)
    code, out, _ = run(capsys, "compact", str(tmp_path / "keys-0"), "--dry-run")
    assert code == 0
    assert file_hashes(tmp_path) == before
    assert "would keep 4 of" in out
    code, out, _ = run(capsys, "compact", str(tmp_path), "--dry-run")  # a root of logs
    assert code == 0 and "would keep 4 of" in out  # keys-0 recorded its compact policy
    assert file_hashes(tmp_path) == before
    code, out, _ = run(capsys, "compact", str(tmp_path / "keys-0"))
    assert code == 0 and "kept 4 of" in out
    with logstore.Log.open(tmp_path / "keys-0", config) as log:
        sealed_end = log.segments[-1].base_offset
        survivors = [(r.key, r.value) for r in log.scan() if r.offset < sealed_end]
    assert sorted(survivors) == sorted(
        (b"k%d" % k, b"value-%d" % max(i for i in range(sealed_end) if i % 4 == k))
        for k in range(4)
    )
    code, out, _ = run(capsys, "compact", str(tmp_path), "--dry-run")  # now it counts
    assert code == 0 and "would keep" in out


def _delete_policy_root(root: Path) -> None:
    """A broker root with a delete-policy topic ``events`` of several segments."""
    config = logstore.LogConfig(fsync="never", segment_bytes=2000)
    with logstore.Broker.open(root, config, maintenance_interval_ms=None) as broker:
        broker.create_topic("events", 1, {"cleanup_policy": "delete"})
        broker.produce_many(
            "events", [Message(b"v%d" % i, key=b"k%d" % (i % 50)) for i in range(920)]
        )


def test_compact_refuses_a_copied_delete_policy_partition(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _delete_policy_root(tmp_path / "root")
    part, copy = tmp_path / "root" / "events-0", tmp_path / "part2"
    subprocess.run(["cp", "-a", str(part), str(copy)], check=True)  # the steps
    before, before_root = file_hashes(copy), file_hashes(tmp_path / "root")
    code, out, err = run(capsys, "compact", str(copy))
    assert (code, out) == (1, "")
    assert err == (
        f"logstore: {copy}: cleanup_policy is 'delete' (from the config recorded in it); "
        "only a log whose policy contains 'compact' is compacted\n"
    )
    code, out, err = run(capsys, "compact", str(part))  # in place: the root's metadata says
    assert (code, out) == (1, "")
    assert err == (
        f"logstore: {part}: cleanup_policy is 'delete' (from the topic metadata of its broker "
        "root); only a log whose policy contains 'compact' is compacted\n"
    )
    assert file_hashes(copy) == before
    assert file_hashes(tmp_path / "root") == before_root
    with logstore.Log.open(copy, logstore.LogConfig(fsync="never")) as log:
        assert [r.value for r in log.scan()] == [b"v%d" % i for i in range(920)]


def test_compact_of_a_root_compacts_only_topics_whose_policy_compacts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    _delete_policy_root(root)
    config = logstore.LogConfig(fsync="never", segment_bytes=2000)
    with logstore.Broker.open(root, config, maintenance_interval_ms=None) as broker:
        broker.create_topic(
            "keys", 1, {"cleanup_policy": "compact", "min_cleanable_dirty_ratio": 1}
        )
        broker.produce_many("keys", [Message(b"v%d" % i, key=b"k%d" % (i % 5)) for i in range(300)])
    before = file_hashes(root / "events-0")
    code, out, _ = run(capsys, "compact", str(root))
    assert code == 0
    compacted = [line.split(":")[0] for line in out.splitlines()]
    assert compacted == [str(root / "__consumer_offsets-0"), str(root / "keys-0")]
    assert "keys-0: kept 5 of " in out
    assert file_hashes(root / "events-0") == before
    with logstore.Broker.open(root, config, maintenance_interval_ms=None) as broker:
        assert broker.topic("events").partition(0).start_offset == 0
        assert len(list(broker.topic("events").partition(0).scan())) == 920


def test_compact_of_a_standalone_log_follows_its_recorded_policy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name, policy in (("del", "delete"), ("cmp", "compact,delete")):
        config = logstore.LogConfig(
            fsync="never", segment_messages=10, cleanup_policy=policy, min_cleanable_dirty_ratio=1
        )
        with logstore.Log.open(tmp_path / name, config) as log:
            log.append_many([Message(b"v%d" % i, key=b"k%d" % (i % 3)) for i in range(40)])
    before = file_hashes(tmp_path / "del")
    code, out, err = run(capsys, "compact", str(tmp_path / "del"))
    assert (code, out) == (1, "")
    assert "cleanup_policy is 'delete' (from the config recorded in it)" in err
    assert file_hashes(tmp_path / "del") == before
    code, out, _ = run(capsys, "compact", str(tmp_path / "cmp"))
    assert code == 0
    assert out.startswith(f"{tmp_path / 'cmp'}: kept 3 of 30 records")


def test_compact_refuses_a_log_whose_policy_is_unknown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    part = tmp_path / "old-0"
    config = logstore.LogConfig(
        fsync="never", segment_messages=10, cleanup_policy="compact", min_cleanable_dirty_ratio=1
    )
    with logstore.Log.open(part, config) as log:
        log.append_many([Message(b"v%d" % i, key=b"k%d" % (i % 3)) for i in range(40)])
    (part / "logstore-config.json").unlink()  # as an older version or Kafka leaves it
    before = file_hashes(tmp_path)
    for target in (part, tmp_path):  # the partition, or a directory of partitions
        code, out, err = run(capsys, "compact", str(target))
        assert (code, out) == (1, "")
        assert err == (
            f"logstore: {part}: its cleanup policy is unknown (no broker root metadata names "
            "it and no config is recorded in it, e.g. written by an older version or by "
            "Kafka); give --policy compact to compact it anyway\n"
        )
        assert file_hashes(tmp_path) == before
    code, out, _ = run(capsys, "compact", str(part), "--policy", "compact")
    assert code == 0
    assert out.startswith(f"{part}: kept 3 of 30 records")
    assert not (part / "logstore-config.json").exists()  # the CLI records no policy of its own
    code, _, err = run(capsys, "compact", str(part), "--policy", "delete")
    assert code == 2 and "'delete' is not one of 'compact', 'compact,delete'" in err


def test_compact_applies_the_topics_overrides_as_the_library_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    hour = 3_600_000
    config = logstore.LogConfig(fsync="never", segment_messages=10)
    root = tmp_path / "root"
    with logstore.Broker.open(root, config, maintenance_interval_ms=None) as broker:
        overrides = {
            "cleanup_policy": "compact",
            "min_compaction_lag_ms": hour,
            "min_cleanable_dirty_ratio": 1,
        }
        broker.create_topic("keys", 1, overrides)
        old = [
            Message(b"old-%d" % i, key=b"k%d" % (i % 3), timestamp=now - 2 * hour + i)
            for i in range(30)
        ]
        recent = [
            Message(b"new-%d" % i, key=b"k%d" % (i % 3), timestamp=now + i) for i in range(30)
        ]
        broker.produce_many("keys", old + recent)
    (root / "keys-0" / "logstore-config.json").unlink()  # the root's metadata is enough
    library = tmp_path / "library"
    subprocess.run(["cp", "-a", str(root), str(library)], check=True)
    code, out, _ = run(capsys, "compact", str(root / "keys-0"))
    assert code == 0
    assert out.startswith(f"{root / 'keys-0'}: kept 3 of 30 records")  # only the old segments
    with logstore.Broker.open(library, config, maintenance_interval_ms=None) as broker:
        broker.topic("keys").partition(0).compact()
        expected = [(r.offset, r.value) for r in broker.topic("keys").partition(0).scan()]
    with logstore.Broker.open(root, config, maintenance_interval_ms=None) as broker:
        got = [(r.offset, r.value) for r in broker.topic("keys").partition(0).scan()]
    assert got == expected
    assert got == [(27, b"old-27"), (28, b"old-28"), (29, b"old-29")] + [
        (30 + i, b"new-%d" % i) for i in range(30)
    ]


def test_compact_dry_run_reports_the_counts_of_the_real_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = logstore.LogConfig(
        fsync="never", cleanup_policy="compact", segment_messages=5, min_cleanable_dirty_ratio=1
    )
    with logstore.Log.open(tmp_path / "keys-0", config) as log:
        for i in range(60):
            log.append(b"value-%d" % i, key=b"k%d" % (i % 4))
    code, dry, _ = run(capsys, "compact", str(tmp_path / "keys-0"), "--dry-run")
    assert code == 0
    code, real, _ = run(capsys, "compact", str(tmp_path / "keys-0"))
    assert code == 0
    counts = re.compile(
        r"(?:would keep|kept) (\d+ of \d+) .* (\d+ -> \d+) bytes, segments (\d+ -> \d+),"
    )
    dry_counts, real_counts = counts.search(dry), counts.search(real)
    assert dry_counts is not None and real_counts is not None
    assert dry_counts.groups() == real_counts.groups() == ("4 of 55", "4280 -> 312", "11 -> 1")
    with logstore.Log.open(tmp_path / "keys-0", config) as log:
        assert len(log.segments) == 2  # the merged one and the active one


def test_compact_dry_run_never_recovers_a_torn_tail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--dry-run changes nothing, even on a log whose open would cut a torn tail."""
    part = tmp_path / "keys"
    config = logstore.LogConfig(fsync="never", cleanup_policy="compact", segment_bytes=400)
    with logstore.Log.open(part, config) as log:
        for i in range(30):
            log.append(b"v%d" % i, key=b"k%d" % (i % 3))
    (part / ".kafka_cleanshutdown").unlink()
    (part / "recovery-point-offset-checkpoint").unlink()  # as if the power went before close
    active = sorted(part.glob("*.log"))[-1]
    with open(active, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x1e\x00\x00\x01\x00torn")  # a cut-short batch
    before = file_hashes(part)
    code, out, err = run(capsys, "compact", str(part), "--dry-run")
    assert (code, out) == (1, "")
    assert err.startswith(f"logstore: {active} at byte ")
    assert "recovery='fail'" in err
    assert file_hashes(part) == before
