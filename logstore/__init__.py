"""logstore: an embeddable, Kafka-compatible partitioned log storage engine.

Everything public is importable from here; anything not in ``__all__`` is private.
"""

from __future__ import annotations

from . import batch as _batch
from . import diagnostics
from .broker import Broker, Topic
from .config import LogConfig
from .consumer import Consumer
from .errors import (
    CodecUnavailableError,
    ConfigError,
    CorruptLogError,
    InvalidRecordError,
    InvalidTopicName,
    LogClosedError,
    LogLockedError,
    LogStoreError,
    NotALogError,
    OffsetOutOfRange,
    RecordTooLarge,
    TopicExistsError,
    UnknownTopicError,
)
from .log import Log
from .model import (
    CompactionResult,
    ConsumedRecord,
    Message,
    Record,
    RetentionResult,
    SegmentInfo,
)

__version__ = "0.1.0"
#: Which record codec is active: "compiled" (the C extension) or "pure" (LOGSTORE_PURE=1,
#: or no compiler when the package was built).
__speedups__ = _batch.IMPLEMENTATION

__all__ = [
    "Broker",
    "CodecUnavailableError",
    "CompactionResult",
    "ConsumedRecord",
    "Consumer",
    "ConfigError",
    "CorruptLogError",
    "InvalidRecordError",
    "InvalidTopicName",
    "Log",
    "LogClosedError",
    "LogConfig",
    "LogLockedError",
    "LogStoreError",
    "Message",
    "NotALogError",
    "OffsetOutOfRange",
    "Record",
    "RecordTooLarge",
    "RetentionResult",
    "SegmentInfo",
    "Topic",
    "TopicExistsError",
    "UnknownTopicError",
    "__speedups__",
    "__version__",
    "diagnostics",
]
