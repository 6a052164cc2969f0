"""``LogConfig``: defaults as the contract states, every bad value refused at construction."""

from __future__ import annotations

import dataclasses

import pytest

import logstore
from logstore import ConfigError, LogConfig


def test_defaults_are_the_contracts() -> None:
    c = LogConfig()
    assert (c.segment_bytes, c.segment_messages, c.segment_ms) == (1 << 30, None, 7 * 86_400_000)
    assert (c.retention_bytes, c.retention_messages, c.retention_ms) == (None, None, None)
    assert (c.cleanup_policy, c.compression, c.compression_level) == ("delete", "none", None)
    assert (c.index_interval_bytes, c.max_index_bytes, c.max_message_bytes) == (
        4096,
        10 << 20,
        1 << 20,
    )
    assert (c.fsync, c.fsync_interval_ms, c.fsync_interval_messages) == ("always", 1000, None)
    assert (c.recovery, c.verify_crc_on_read) == ("truncate", True)
    assert (c.delete_retention_ms, c.min_cleanable_dirty_ratio, c.min_compaction_lag_ms) == (
        86_400_000,
        0.5,
        0,
    )
    assert c.archive is None


def test_replace_works_and_config_is_frozen() -> None:
    c = dataclasses.replace(LogConfig(), segment_bytes=4096)
    assert c.segment_bytes == 4096
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.segment_bytes = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("segment_bytes", 1 << 31, "at most 2147483647"),
        ("segment_bytes", 0, "segment_bytes must be an integer >= 64"),
        ("segment_bytes", "big", "segment_bytes must be an integer"),
        ("segment_messages", 0, "segment_messages"),
        ("segment_ms", -1, "segment_ms"),
        ("retention_bytes", -5, "retention_bytes"),
        ("retention_ms", 1.5, "retention_ms"),
        ("cleanup_policy", "forever", "cleanup_policy must be one of"),
        ("compression", "brotli", "compression must be one of"),
        ("index_interval_bytes", -1, "index_interval_bytes"),
        ("max_index_bytes", 4, "max_index_bytes"),
        ("max_message_bytes", 0, "max_message_bytes"),
        ("fsync", "sometimes", "fsync must be one of"),
        ("recovery", "pray", "recovery must be one of"),
        ("verify_crc_on_read", 1, "verify_crc_on_read must be a bool"),
        ("min_cleanable_dirty_ratio", 1.5, "between 0 and 1"),
        ("min_compaction_lag_ms", -1, "min_compaction_lag_ms"),
        ("archive", 42, "archive must be a callable"),
        ("segment_messages", True, "segment_messages"),
    ],
)
def test_invalid_values_raise_config_error(field: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        LogConfig(**{field: value})  # type: ignore[arg-type]


def test_config_error_is_also_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, logstore.LogStoreError)


def test_open_rejects_a_config_of_the_wrong_type(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="LogConfig"):
        logstore.Log.open(tmp_path, {"fsync": "never"})  # type: ignore[arg-type]
