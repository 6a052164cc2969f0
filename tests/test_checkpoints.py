"""The partition's small files and names: one rule for ``topic-N``, one for contiguity."""

from __future__ import annotations

from pathlib import Path

import logstore
from logstore import LogConfig, Record
from logstore._fs import CLEANER_CHECKPOINT_FILE, write_checkpoint
from logstore.checkpoints import (
    never_compacted,
    parse_partition_dir,
    partition_dir_name,
    partition_name,
    read_offset_checkpoint,
    take_clean_shutdown,
    write_clean_shutdown,
    write_offset_checkpoint,
)

from .conftest import child_env, run_python
from .helpers_damage import T0, _key


def test_partition_dir_names_parse_and_build() -> None:
    assert parse_partition_dir("orders-3") == ("orders", 3)
    assert parse_partition_dir("my-topic-12") == ("my-topic", 12)
    assert partition_dir_name("my-topic", 12) == "my-topic-12"
    assert parse_partition_dir(partition_dir_name("a-b", 0)) == ("a-b", 0)
    for name in ("orders", "-3", "orders-", "orders-x", "orders-²", "orders-+1"):
        assert parse_partition_dir(name) is None, name


def test_partition_name_falls_back_to_the_directory_name(tmp_path: Path) -> None:
    assert partition_name(str(tmp_path / "t-7")) == ("t", 7)
    assert partition_name(str(tmp_path / "plain")) == ("plain", 0)
    assert partition_name(str(tmp_path / "t-²")) == ("t-²", 0)


def test_offset_checkpoint_round_trip(tmp_path: Path) -> None:
    part = tmp_path / "t-2"
    part.mkdir()
    write_offset_checkpoint(str(part), "recovery-point-offset-checkpoint", 42)
    assert (part / "recovery-point-offset-checkpoint").read_text() == "0\n1\nt 2 42\n"
    assert read_offset_checkpoint(str(part), "recovery-point-offset-checkpoint") == 42
    assert read_offset_checkpoint(str(part), "log-start-offset-checkpoint") is None


def test_clean_shutdown_marker_is_taken_once(tmp_path: Path) -> None:
    assert take_clean_shutdown(str(tmp_path)) is False
    write_clean_shutdown(str(tmp_path))
    assert (tmp_path / ".kafka_cleanshutdown").read_bytes() == b'{"version":0,"brokerEpoch":-1}'
    assert take_clean_shutdown(str(tmp_path), dry_run=True) is True
    assert take_clean_shutdown(str(tmp_path)) is True
    assert take_clean_shutdown(str(tmp_path)) is False


def test_never_compacted_reads_the_own_and_the_root_checkpoint(tmp_path: Path) -> None:
    part = tmp_path / "t-1"
    part.mkdir()
    assert never_compacted(str(part)) is True
    assert never_compacted(str(part), compacted_policy=True) is False
    write_checkpoint(str(tmp_path / CLEANER_CHECKPOINT_FILE), [("t", 0, 5)])
    assert never_compacted(str(part)) is True  # names another partition
    write_checkpoint(str(tmp_path / CLEANER_CHECKPOINT_FILE), [("t", 1, 5)])
    assert never_compacted(str(part)) is False


def _latest_per_key(records: list[Record]) -> list[Record]:
    latest = {r.key: r.offset for r in records}
    return [r for r in records if latest[r.key] == r.offset]


CHILD = """
import sys, logstore
config = logstore.LogConfig(
    segment_bytes=400, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0, fsync="never"
)
log = logstore.Log.open(sys.argv[1], config)
log.compact()
"""


def test_a_crash_right_after_the_first_compaction_swap_still_marks_the_log_compacted(
    tmp_path: Path,
) -> None:
    """The mark that allows gaps is durable before the first gap exists."""
    path = tmp_path / "log"
    config = LogConfig(
        fsync="never", segment_bytes=400, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0
    )
    with logstore.Log.open(path, config) as log:
        for i in range(60):
            log.append(b"value-%d" % i, key=_key(i), timestamp=T0 + i)
        log.roll()
        everything = list(log.scan())
        log.append(b"tail", key=b"tail", timestamp=T0 + 60)
    child = run_python(CHILD, str(path), env=child_env(LOGSTORE_CRASH_AT="swapped"))
    assert child.returncode == 77, child.stderr
    # Recovered and reopened with the default policy, as `logstore recover` or a new
    # owner would: the gaps are legal, nothing is cut.
    actions = logstore.Log.recover(path, force=True)
    assert [a for a in actions if a.action in ("truncate", "quarantine", "damaged")] == []
    with logstore.Log.open(path) as log:
        kept = list(log.scan())
        assert log.end_offset == 61
    assert kept[:-1] == _latest_per_key(everything)
    assert not list(path.glob("*.corrupt-*"))
