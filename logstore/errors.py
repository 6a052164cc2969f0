"""Every deliberate error logstore raises; nothing else lives here.

All derive from :class:`LogStoreError`. Where a builtin exception also fits,
the class inherits it too, so ``except ValueError`` keeps working for callers
that do not know logstore.
"""

from __future__ import annotations

import enum


class LogStoreError(Exception):
    """Base class of every error logstore raises on purpose."""


class ConfigError(LogStoreError, ValueError):
    """A configuration value is out of range or of the wrong kind."""


class ErrorKind(str, enum.Enum):
    """The kinds of damage a :class:`CorruptLogError` reports; each is its plain string.

    A ``str`` enum, so ``ErrorKind.CRC_MISMATCH == "crc_mismatch"`` and JSON
    output prints the string; ``str()`` and f-strings print the value on every
    Python we support (3.10 included).
    """

    INVALID = "invalid"
    TRUNCATED = "truncated"
    ZERO_FILL = "zero_fill"
    INVALID_LENGTH = "invalid_length"
    CRC_MISMATCH = "crc_mismatch"
    UNSUPPORTED_MAGIC = "unsupported_magic"
    INVALID_MAGIC = "invalid_magic"
    INVALID_RECORDS = "invalid_records"
    OFFSET_REGRESSION = "offset_regression"
    OFFSET_MISMATCH = "offset_mismatch"
    UNSUPPORTED_CODEC = "unsupported_codec"
    INVALID_INDEX = "invalid_index"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


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
    ``"unsupported_codec"`` or ``"invalid_index"`` (an :class:`ErrorKind`; a
    plain string given here, as the C codec gives, becomes one).
    """

    def __init__(
        self,
        reason: str,
        path: str | None = None,
        position: int | None = None,
        *,
        kind: ErrorKind | str = ErrorKind.INVALID,
    ) -> None:
        self.reason, self.path, self.position = reason, path, position
        self.kind = ErrorKind(kind)
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


class UnknownPartitionError(LogStoreError, IndexError):
    """A partition number outside a topic's ``0..partitions - 1`` was asked for.

    An ``IndexError`` (so a ``LookupError``) too, as it always was; ``topic``,
    ``partition`` and ``partitions`` (the topic's count) say what was asked.
    """

    def __init__(self, topic: str, partition: int, partitions: int) -> None:
        self.topic, self.partition, self.partitions = topic, partition, partitions
        super().__init__(
            f"topic {topic} has {partitions} partition(s), 0..{partitions - 1}: "
            f"no partition {partition}"
        )


class PartitionNotAssignedError(LogStoreError, ValueError):
    """A consumer was asked to seek in (or report) a partition not assigned to it.

    Partitions are assigned by the group (range assignor); another member, or
    none, owns this one. ``topic`` and ``partition`` say which was asked.
    """

    def __init__(self, message: str, *, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        super().__init__(message)


class NotALogError(LogStoreError, ValueError):
    """A path is not the kind of directory asked for: a file, or a log where a broker root
    was expected (or the reverse). ``path`` names it, ``kind`` says what it is instead."""

    def __init__(self, message: str, path: str, kind: str) -> None:
        self.path, self.kind = path, kind
        super().__init__(message)


class CodecUnavailableError(LogStoreError):
    """A batch is compressed with a codec whose optional package is not installed.

    Not corruption: the bytes may be perfectly good, this interpreter cannot
    read them. Nothing that repairs logs may cut or quarantine such a batch.
    ``path`` and ``position`` say where the batch is, once known.
    """

    def __init__(self, codec: str, path: str | None = None, position: int | None = None) -> None:
        self.codec, self.path, self.position = codec, path, position
        where = "batch" if position is None else f"batch at byte {position} of {path or '<buffer>'}"
        super().__init__(f"{where} is {codec}-compressed; install logstore[{codec}]")

    def located(self, path: str, base: int) -> CodecUnavailableError:
        """Return the same error placed in ``path``; our position was relative to ``base``."""
        return CodecUnavailableError(self.codec, path, base + (self.position or 0))


class WrongTypeError(LogStoreError, TypeError):
    """A caller passed a value of the wrong type (``bytes`` expected, ``str`` given...).

    A ``TypeError``, so ``except TypeError`` keeps working; a ``LogStoreError``, so
    ``except LogStoreError`` catches every refusal of logstore's.
    """


class ArchiveError(LogStoreError):
    """The archive hook refused a segment (raised, failed to run, or exited non-zero).

    Retention keeps the segment's files and reports the message in
    ``RetentionResult.errors``.
    """


class MirrorError(LogStoreError):
    """``logstore.mirror`` could not copy to the Kafka cluster, or must not go on.

    The cluster unreachable, a topic there with another partition count, a
    partition that cannot be resumed exactly (the cluster holds fewer records
    than the commit counts), a record the cluster refused, or no Kafka client
    installed; the message says which, in one line. Nothing past the failure was committed, so the next
    run resumes where this one stopped.
    """


class ProducerClosedError(LogStoreError, ValueError):
    """A producer was closed: ``send`` refuses records, and records it could not
    write before a ``close`` timeout (or its log's close) fail with this."""


class BufferFullError(LogStoreError):
    """A producer's ``send`` waited ``max_block_ms`` for room under ``max_buffered_bytes``.

    The records buffered before it are unaffected; the refused one was not sent.
    """


class LimitExceededError(LogStoreError):
    """A store limit (NATS Streaming's ``StoreLimits``) refused a topic, a group or a member.

    ``limit`` names the setting (``max_topics``, ``max_groups``,
    ``max_consumers_per_group``) and ``value`` its value. Raised before
    anything is written: the refused operation changed nothing.
    """

    def __init__(self, limit: str, value: int, what: str) -> None:
        self.limit, self.value = limit, value
        super().__init__(f"{limit}={value} reached: {what}")
