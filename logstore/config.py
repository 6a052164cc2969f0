"""``LogConfig``: every tunable of a partition, with Kafka's defaults, validated once.

Knows the names and ranges of settings, nothing of how they are enforced.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from .errors import ConfigError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
DAY_MS = 24 * 60 * 60 * 1000

#: A segment's byte positions are int32 in the offset index (FORMAT.md section 6).
MAX_SEGMENT_BYTES = (1 << 31) - 1

# The options with a fixed set of values, as types (so a type checker catches
# ``fsync="alway"``) and as tuples for the check at run time.
CleanupPolicy = Literal["delete", "compact", "compact,delete"]
CompressionCodec = Literal["none", "gzip", "snappy", "lz4", "zstd"]
FsyncMode = Literal["always", "interval", "never"]
RecoveryMode = Literal["truncate", "fail"]

CODECS: tuple[str, ...] = get_args(CompressionCodec)
FSYNC_MODES: tuple[str, ...] = get_args(FsyncMode)
RECOVERY_MODES: tuple[str, ...] = get_args(RecoveryMode)
CLEANUP_POLICIES: tuple[str, ...] = get_args(CleanupPolicy)

ArchiveHook = Callable[[Sequence[str]], object] | str | os.PathLike[str]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive_int(name: str, value: object, *, optional: bool = False, minimum: int = 1) -> None:
    if value is None and optional:
        return
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{name} must be an integer >= {minimum}{' or None' if optional else ''}, got {value!r}",
    )


def _check_level(codec: str, level: object) -> None:
    """A level the codec really has: its own range, and none for snappy or "none"."""
    if level is None:
        return
    if not isinstance(level, int) or isinstance(level, bool):
        raise ConfigError(f"compression_level must be an integer or None, got {level!r}")
    from .compression import level_range  # late: keeps config free of codec imports

    levels = level_range(codec)
    if levels is None:
        what = "compression is 'none'" if codec == "none" else f"{codec} has no levels"
        raise ConfigError(f"compression_level {level} given, but {what}: leave it None")
    low, high = levels
    shown, extra = low, ""
    if codec == "zstd":
        # Kafka documents zstd's levels as 1..22; 0 (the default) and the negative
        # fast levels are accepted too, and said so.
        shown, extra = 1, f" (or 0, its default, or a fast level {low}..-1)"
    _require(
        low <= level <= high,
        f"compression_level {level} is out of range {shown}..{high} for {codec}{extra}",
    )


def _check_executable(path: str) -> None:
    """Refuse an archive executable now, not at the first retention that needs it.

    A name without a directory is looked up on ``PATH``, as it will be run.
    """
    if shutil.which(path) is not None:
        return
    if os.sep not in path and not (os.altsep and os.altsep in path):
        raise ConfigError(f"archive {path!r} is not an executable on PATH")
    if not os.path.exists(path):
        raise ConfigError(f"archive {path} does not exist")
    raise ConfigError(f"archive {path} is not an executable file")


@dataclass(frozen=True)
class LogConfig:
    """Settings of one partition log. Invalid values raise ``ConfigError`` here."""

    segment_bytes: int = GIB
    segment_messages: int | None = None
    segment_ms: int | None = 7 * DAY_MS
    retention_bytes: int | None = None
    retention_messages: int | None = None
    retention_ms: int | None = None
    cleanup_policy: CleanupPolicy = "delete"
    compression: CompressionCodec = "none"
    compression_level: int | None = None
    index_interval_bytes: int = 4096
    max_index_bytes: int = 10 * MIB
    max_message_bytes: int = MIB
    fsync: FsyncMode = "always"
    fsync_interval_ms: int = 1000
    fsync_interval_messages: int | None = None
    recovery: RecoveryMode = "truncate"
    verify_crc_on_read: bool = True
    delete_retention_ms: int = DAY_MS
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    archive: ArchiveHook | None = None
    #: Memory for the cleaner's key -> offset map; more distinct keys mean more rounds.
    compaction_memory_bytes: int = 128 * MIB
    #: A topic setting the broker enforces (a ``Log`` ignores it): how many consumers
    #: may be members of one group on this topic at once (NATS's ``MaxSubscriptions``,
    #: Kafka's ``group.max.size``); ``None`` or 0: unlimited.
    max_consumers_per_group: int | None = None

    def __post_init__(self) -> None:
        # The smallest batch is 61 bytes: anything below cannot hold one record.
        _positive_int("segment_bytes", self.segment_bytes, minimum=64)
        _require(
            self.segment_bytes <= MAX_SEGMENT_BYTES,
            f"segment_bytes must be at most {MAX_SEGMENT_BYTES} (2 GiB - 1), "
            f"got {self.segment_bytes}",
        )
        _positive_int("segment_messages", self.segment_messages, optional=True)
        _positive_int("segment_ms", self.segment_ms, optional=True)
        _positive_int("retention_bytes", self.retention_bytes, optional=True, minimum=0)
        _positive_int("retention_messages", self.retention_messages, optional=True, minimum=0)
        _positive_int("retention_ms", self.retention_ms, optional=True, minimum=0)
        _require(
            self.cleanup_policy in CLEANUP_POLICIES,
            f"cleanup_policy must be one of {', '.join(CLEANUP_POLICIES)}, "
            f"got {self.cleanup_policy!r}",
        )
        _require(
            self.compression in CODECS,
            f"compression must be one of {', '.join(CODECS)}, got {self.compression!r}",
        )
        if self.compression in ("snappy", "lz4"):
            from .compression import is_available  # late: keeps config free of codec imports

            _require(
                is_available(self.compression),
                f"compression {self.compression!r} needs its optional package "
                f"(pip install 'logstore[{self.compression}]')",
            )
        _check_level(self.compression, self.compression_level)
        _positive_int("index_interval_bytes", self.index_interval_bytes, minimum=0)
        _positive_int("max_index_bytes", self.max_index_bytes, minimum=12)
        _positive_int("max_message_bytes", self.max_message_bytes, minimum=64)
        _require(
            self.max_message_bytes <= MAX_SEGMENT_BYTES,
            f"max_message_bytes must be at most {MAX_SEGMENT_BYTES} (a batch fits in a segment), "
            f"got {self.max_message_bytes}",
        )
        _require(
            self.fsync in FSYNC_MODES,
            f"fsync must be one of {', '.join(FSYNC_MODES)}, got {self.fsync!r}",
        )
        _positive_int("fsync_interval_ms", self.fsync_interval_ms, minimum=0)
        _positive_int("fsync_interval_messages", self.fsync_interval_messages, optional=True)
        _require(
            self.recovery in RECOVERY_MODES,
            f"recovery must be one of {', '.join(RECOVERY_MODES)}, got {self.recovery!r}",
        )
        _require(
            isinstance(self.verify_crc_on_read, bool),
            f"verify_crc_on_read must be a bool, got {self.verify_crc_on_read!r}",
        )
        _positive_int("delete_retention_ms", self.delete_retention_ms, minimum=0)
        ratio = self.min_cleanable_dirty_ratio
        _require(
            isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0 <= ratio <= 1,
            f"min_cleanable_dirty_ratio must be between 0 and 1, got {ratio!r}",
        )
        _positive_int("min_compaction_lag_ms", self.min_compaction_lag_ms, minimum=0)
        _positive_int(
            "max_consumers_per_group", self.max_consumers_per_group, optional=True, minimum=0
        )
        _positive_int("compaction_memory_bytes", self.compaction_memory_bytes, minimum=1024)
        _require(
            self.archive is None
            or callable(self.archive)
            or isinstance(self.archive, (str, os.PathLike)),
            f"archive must be a callable or an executable's path, got {self.archive!r}",
        )
        if isinstance(self.archive, (str, os.PathLike)):
            _check_executable(os.fspath(self.archive))

    @property
    def compacted(self) -> bool:
        """Whether key compaction applies (``cleanup_policy`` contains ``compact``)."""
        return "compact" in self.cleanup_policy

    @property
    def deletes(self) -> bool:
        """Whether retention limits apply (``cleanup_policy`` contains ``delete``)."""
        return "delete" in self.cleanup_policy
