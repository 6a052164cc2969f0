"""logstore: an embeddable, Kafka-compatible partitioned log storage engine.

Everything public is importable from here; anything not in ``__all__`` is private.
"""

from __future__ import annotations

import logging as _logging

from . import batch as _batch
from . import diagnostics, mirror
from ._native import PureCodecWarning
from .accumulator import SendHandle
from .broker import Broker
from .config import CleanupPolicy, CompressionCodec, FsyncMode, LogConfig, RecoveryMode
from .consumer import Consumer
from .errors import (
    ArchiveError,
    BufferFullError,
    CodecUnavailableError,
    ConfigError,
    CorruptLogError,
    ErrorKind,
    InvalidRecordError,
    InvalidTopicName,
    LimitExceededError,
    LogClosedError,
    LogLockedError,
    LogStoreError,
    MirrorError,
    NotALogError,
    OffsetOutOfRange,
    PartitionNotAssignedError,
    ProducerClosedError,
    RecordTooLarge,
    TopicExistsError,
    UnknownPartitionError,
    UnknownTopicError,
    WrongTypeError,
)
from .fileranges import FileRanges
from .loader import RecoveryActionKind
from .log import Log
from .model import (
    AtOffset,
    CompactionResult,
    ConsumedRecord,
    Message,
    OffsetAndMetadata,
    Record,
    RetentionResult,
    RetentionRule,
    SegmentInfo,
)
from .producer import Producer, TopicProducer
from .server import ServeUnavailableError, load_serve_settings, serve, serve_async
from .topic import Topic

# A library logs, the application decides where it goes (and Python's last-resort
# stderr handler must not print recovery warnings into a program's output).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__version__ = "0.1.0"
#: Which record codec is active: "compiled" (the C extension) or "pure" (LOGSTORE_PURE=1,
#: or no compiler when the package was built: then ``PureCodecWarning`` was issued).
__speedups__ = _batch.IMPLEMENTATION

__all__ = [
    "AtOffset",
    "FileRanges",
    "ArchiveError",
    "Broker",
    "BufferFullError",
    "CleanupPolicy",
    "CodecUnavailableError",
    "CompactionResult",
    "CompressionCodec",
    "ConsumedRecord",
    "Consumer",
    "ConfigError",
    "CorruptLogError",
    "ErrorKind",
    "FsyncMode",
    "InvalidRecordError",
    "InvalidTopicName",
    "LimitExceededError",
    "Log",
    "LogClosedError",
    "LogConfig",
    "LogLockedError",
    "LogStoreError",
    "Message",
    "MirrorError",
    "OffsetAndMetadata",
    "NotALogError",
    "OffsetOutOfRange",
    "PartitionNotAssignedError",
    "Producer",
    "ProducerClosedError",
    "PureCodecWarning",
    "Record",
    "RecordTooLarge",
    "RecoveryActionKind",
    "RecoveryMode",
    "RetentionResult",
    "RetentionRule",
    "SegmentInfo",
    "SendHandle",
    "ServeUnavailableError",
    "Topic",
    "TopicProducer",
    "TopicExistsError",
    "UnknownPartitionError",
    "UnknownTopicError",
    "WrongTypeError",
    "__speedups__",
    "__version__",
    "diagnostics",
    "load_serve_settings",
    "mirror",
    "serve",
    "serve_async",
]
