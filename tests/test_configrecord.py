"""``configrecord``: the settings a partition was last opened with, for tools."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import logstore


def test_open_records_its_config_for_tools(log_dir: Path) -> None:
    config = logstore.LogConfig(
        fsync="never", cleanup_policy="compact", min_compaction_lag_ms=5000, segment_bytes=4096
    )
    assert logstore.Log.recorded_config(log_dir) is None  # nothing there yet
    with logstore.Log.open(log_dir, config):
        pass
    record = log_dir / "logstore-config.json"
    assert logstore.Log.recorded_config(log_dir) == config
    assert json.loads(record.read_bytes())["config"]["cleanup_policy"] == "compact"
    inode = record.stat().st_ino
    with logstore.Log.open(log_dir, config):  # unchanged: not written again
        pass
    assert record.stat().st_ino == inode
    changed = dataclasses.replace(config, cleanup_policy="delete", min_compaction_lag_ms=0)
    with logstore.Log.open(log_dir, changed):
        pass
    assert record.stat().st_ino != inode
    assert logstore.Log.recorded_config(log_dir) == changed
    assert not (log_dir / "logstore-config.json.tmp").exists()


def test_recorded_config_leaves_out_the_archive_hook(log_dir: Path) -> None:
    config = logstore.LogConfig(fsync="never", archive=lambda paths: None)
    with logstore.Log.open(log_dir, config):
        pass
    assert logstore.Log.recorded_config(log_dir) == dataclasses.replace(config, archive=None)


def test_record_config_false_records_nothing(log_dir: Path) -> None:
    with logstore.Log.open(log_dir, logstore.LogConfig(fsync="never"), record_config=False):
        pass
    assert not (log_dir / "logstore-config.json").exists()
    assert logstore.Log.recorded_config(log_dir) is None


def test_an_unreadable_config_record_names_its_file(log_dir: Path) -> None:
    log_dir.mkdir()
    record = log_dir / "logstore-config.json"
    record.write_text("{not json")
    with pytest.raises(logstore.ConfigError, match=f"^{record}: not a logstore config record"):
        logstore.Log.recorded_config(log_dir)
    record.write_text('{"version": 1, "config": {"cleanup_policy": "shred"}}')
    with pytest.raises(logstore.ConfigError, match=f"^{record}: cleanup_policy must be one of"):
        logstore.Log.recorded_config(log_dir)
    record.write_text('{"version": 1, "config": {"cleanup_policy": "compact", "later": 1}}')
    assert logstore.Log.recorded_config(log_dir) == logstore.LogConfig(cleanup_policy="compact")
