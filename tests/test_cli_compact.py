"""``logstore compact``: dry runs, policies, topic overrides, torn tails."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

import logstore
from logstore import Message

from .conftest import file_hashes
from .helpers import run


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
