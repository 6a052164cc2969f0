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


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("segment_bytes", 1 << 31),
        ("segment_bytes", "big"),
        ("segment_messages", 0),
        ("segment_ms", -1),
        ("retention_bytes", -5),
        ("retention_messages", -1),
        ("retention_ms", 1.5),
        ("cleanup_policy", "forever"),
        ("compression", "brotli"),
        ("compression_level", "high"),
        ("index_interval_bytes", -1),
        ("max_index_bytes", 4),
        ("max_message_bytes", 0),
        ("max_message_bytes", 1 << 31),
        ("fsync", "sometimes"),
        ("fsync_interval_ms", -1),
        ("fsync_interval_messages", 0),
        ("recovery", "pray"),
        ("verify_crc_on_read", 1),
        ("delete_retention_ms", -1),
        ("min_cleanable_dirty_ratio", 1.5),
        ("min_compaction_lag_ms", -1),
        ("archive", 42),
        ("compaction_memory_bytes", 10),
    ],
)
def test_every_message_names_the_option_and_the_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        LogConfig(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value).startswith(field)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    ("codec", "level", "message"),
    [
        (
            "zstd",
            99,
            "compression_level 99 is out of range 1..22 for zstd (or 0, its default, or a fast level -131072..-1)",
        ),
        (
            "zstd",
            23,
            "compression_level 23 is out of range 1..22 for zstd (or 0, its default, or a fast level -131072..-1)",
        ),
        (
            "zstd",
            -131073,
            "compression_level -131073 is out of range 1..22 for zstd (or 0, its default, or a fast level -131072..-1)",
        ),
        ("gzip", 10, "compression_level 10 is out of range -1..9 for gzip"),
        ("gzip", -2, "compression_level -2 is out of range -1..9 for gzip"),
        ("lz4", 17, "compression_level 17 is out of range 0..16 for lz4"),
        ("lz4", -1, "compression_level -1 is out of range 0..16 for lz4"),
        ("snappy", 1, "compression_level 1 given, but snappy has no levels: leave it None"),
        ("none", 3, "compression_level 3 given, but compression is 'none': leave it None"),
        ("zstd", "max", "compression_level must be an integer or None, got 'max'"),
        ("zstd", True, "compression_level must be an integer or None, got True"),
    ],
)
def test_compression_levels_are_checked_per_codec(codec: str, level: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LogConfig(compression=codec, compression_level=level)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_an_archive_executable_is_checked_when_the_config_is_made(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        LogConfig(archive="/no/such/script")
    assert str(caught.value) == "archive /no/such/script does not exist"
    plain = tmp_path / "archive.sh"
    plain.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(ConfigError) as caught:
        LogConfig(archive=str(plain))
    assert str(caught.value) == f"archive {plain} is not an executable file"
    with pytest.raises(ConfigError, match="is not an executable file"):
        LogConfig(archive=tmp_path)  # a directory
    with pytest.raises(ConfigError) as caught:
        LogConfig(archive="no-such-archiver-on-path")
    assert str(caught.value) == "archive 'no-such-archiver-on-path' is not an executable on PATH"
    plain.chmod(0o755)
    assert LogConfig(archive=str(plain)).archive == str(plain)
    assert LogConfig(archive=plain).archive == plain
    assert LogConfig(archive="true").archive == "true"  # found on PATH, as it will be run


def test_options_with_fixed_values_are_literal_types() -> None:
    import typing

    from logstore import config

    hints = typing.get_type_hints(LogConfig)
    assert hints["cleanup_policy"] is logstore.CleanupPolicy
    assert hints["compression"] is logstore.CompressionCodec
    assert hints["fsync"] is logstore.FsyncMode
    assert hints["recovery"] is logstore.RecoveryMode
    assert typing.get_args(logstore.CleanupPolicy) == ("delete", "compact", "compact,delete")
    assert typing.get_args(logstore.CompressionCodec) == config.CODECS
    assert typing.get_args(logstore.FsyncMode) == ("always", "interval", "never")
    assert typing.get_args(logstore.RecoveryMode) == ("truncate", "fail")
