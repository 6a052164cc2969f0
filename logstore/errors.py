"""Every deliberate error logstore raises; nothing else lives here.

All derive from :class:`LogStoreError`. Where a builtin exception also fits,
the class inherits it too, so ``except ValueError`` keeps working for callers
that do not know logstore.
"""

from __future__ import annotations


class LogStoreError(Exception):
    """Base class of every error logstore raises on purpose."""


class ConfigError(LogStoreError, ValueError):
    """A configuration value is out of range or of the wrong kind."""


class CorruptLogError(LogStoreError):
    """Stored bytes failed a check; ``path`` and ``position`` say where.

    ``kind`` classifies the damage for recovery reports: ``"truncated"`` (a batch
    runs past the end of the data), ``"zero_fill"`` (an all-zero tail, as left by
    preallocation or a torn page), ``"invalid_length"``, ``"crc_mismatch"``,
    ``"unsupported_magic"`` (Kafka's legacy magic 0 or 1), ``"invalid_magic"``,
    ``"invalid_records"``, ``"offset_regression"`` (a base offset no log can
    hold), ``"offset_mismatch"`` (a batch's offsets are not where its file's
    name and its neighbours put it: before the segment's base offset, not
    after the batch before, past the next segment's base, or a gap in a log
    that was never compacted; the base offset is outside the CRC),
    ``"unsupported_codec"`` or ``"invalid_index"``.
    """

    def __init__(
        self,
        reason: str,
        path: str | None = None,
        position: int | None = None,
        *,
        kind: str = "invalid",
    ) -> None:
        self.reason, self.path, self.position, self.kind = reason, path, position, kind
        where = ""
        if position is not None:
            where = f"{path or '<buffer>'} at byte {position}: "
        elif path is not None:
            where = f"{path}: "
        super().__init__(where + reason)

    def located(self, path: str, base: int) -> CorruptLogError:
        """Return the same error placed in ``path``; our position was relative to ``base``."""
        return CorruptLogError(self.reason, path, base + (self.position or 0), kind=self.kind)


class OffsetOutOfRange(LogStoreError, IndexError):
    """An offset lies below the log's start offset or above its end offset."""


class RecordTooLarge(LogStoreError, ValueError):
    """A batch would exceed ``max_message_bytes`` (or ``segment_bytes``)."""


class InvalidRecordError(LogStoreError, ValueError):
    """A record is not acceptable to this log (for example no key in a compacted log)."""


class LogLockedError(LogStoreError):
    """Another ``Log`` (in this process or another) holds the directory."""


class LogClosedError(LogStoreError, ValueError):
    """The ``Log`` was closed (explicitly or after an unrecoverable write failure)."""


class InvalidTopicName(LogStoreError, ValueError):
    """A topic name breaks Kafka's naming rules."""


class TopicExistsError(LogStoreError):
    """``create_topic`` named a topic that already exists."""


class UnknownTopicError(LogStoreError, LookupError):
    """A topic that does not exist was asked for."""
