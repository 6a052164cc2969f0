"""``errors``: every public error is a ``LogStoreError``; kinds, actions and rules are
``str`` enums.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import logstore
from logstore import LogStoreError, PartitionNotAssignedError, UnknownPartitionError

from .helpers_broker import _broker


# ---------------------------------------------------------------- the hierarchy
def test_every_public_error_is_a_logstore_error() -> None:
    classes = [
        getattr(logstore, name)
        for name in logstore.__all__
        if isinstance(getattr(logstore, name), type)
        and issubclass(getattr(logstore, name), BaseException)
    ]
    assert {c.__name__ for c in classes} >= {
        "ConfigError",
        "CorruptLogError",
        "InvalidRecordError",
        "InvalidTopicName",
        "LogClosedError",
        "LogLockedError",
        "OffsetOutOfRange",
        "PartitionNotAssignedError",
        "RecordTooLarge",
        "TopicExistsError",
        "UnknownPartitionError",
        "UnknownTopicError",
    }
    for c in classes:
        assert issubclass(c, LogStoreError), c
    # The builtins they also are, so callers that do not know logstore still catch them.
    assert issubclass(UnknownPartitionError, IndexError)
    assert issubclass(UnknownPartitionError, LookupError)
    assert issubclass(PartitionNotAssignedError, ValueError)


def test_a_value_of_the_wrong_type_is_a_logstore_error_and_a_type_error(tmp_path: Path) -> None:
    assert issubclass(logstore.WrongTypeError, logstore.LogStoreError)
    assert issubclass(logstore.WrongTypeError, TypeError)
    with pytest.raises(logstore.WrongTypeError, match="config must be a LogConfig, not dict"):
        logstore.Log.open(tmp_path / "x", {})  # type: ignore[arg-type]
    with logstore.Log.open(tmp_path / "log", maintenance_interval_ms=None) as log:
        for call in (
            lambda: log.append("text"),  # type: ignore[arg-type]
            lambda: log.read("5"),  # type: ignore[arg-type]
            lambda: log.append_many([1]),  # type: ignore[list-item]
            lambda: log.truncate(1.5),  # type: ignore[arg-type]
        ):
            with pytest.raises(logstore.WrongTypeError):
                call()
    with _broker(tmp_path / "root") as broker:
        broker.create_topic("t", 2)
        with pytest.raises(logstore.WrongTypeError, match="partition must be an int"):
            broker.produce("t", b"x", partition="1")  # type: ignore[arg-type]
        with pytest.raises(logstore.WrongTypeError, match=r"start must be .* not float"):
            broker.consumer("g", "t", start=1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- error kinds
def test_error_kinds_are_their_plain_strings() -> None:
    import json

    from logstore import ErrorKind

    assert ErrorKind.CRC_MISMATCH == "crc_mismatch"
    assert str(ErrorKind.CRC_MISMATCH) == "crc_mismatch"
    assert f"{ErrorKind.ZERO_FILL}" == "zero_fill"
    assert json.dumps({"kind": ErrorKind.TRUNCATED}) == '{"kind": "truncated"}'
    assert {k.value for k in ErrorKind} == {
        "invalid",
        "truncated",
        "zero_fill",
        "invalid_length",
        "crc_mismatch",
        "unsupported_magic",
        "invalid_magic",
        "invalid_records",
        "offset_regression",
        "offset_mismatch",
        "unsupported_codec",
        "invalid_index",
    }


def test_corrupt_log_error_kind_is_an_error_kind_even_from_a_string() -> None:
    from logstore import ErrorKind

    exc = logstore.CorruptLogError("bad", "x.log", 7, kind="crc_mismatch")
    assert exc.kind is ErrorKind.CRC_MISMATCH
    assert logstore.CorruptLogError("bad").kind is ErrorKind.INVALID
    assert exc.located("y.log", 10).kind is ErrorKind.CRC_MISMATCH
    with pytest.raises(ValueError):
        logstore.CorruptLogError("bad", kind="no_such_kind")


def test_recovery_actions_and_retention_rules_are_their_plain_strings() -> None:
    import json

    from logstore import RecoveryActionKind, RetentionRule

    assert {k.value for k in RecoveryActionKind} == {
        "truncate",
        "quarantine",
        "rebuild_index",
        "delete",
        "finish_swap",
        "damaged",
    }
    assert {r.value for r in RetentionRule} == {"start_offset", "bytes", "messages", "age"}
    for member in [*RecoveryActionKind, *RetentionRule]:
        assert member == member.value
        assert str(member) == member.value
        assert f"{member}" == member.value
        assert json.dumps(member) == f'"{member.value}"'


def test_archive_error_is_a_logstore_error() -> None:
    from logstore import retention

    assert issubclass(logstore.ArchiveError, logstore.LogStoreError)
    assert retention.ArchiveError is logstore.ArchiveError
    with pytest.raises(logstore.ArchiveError) as info:
        retention.run_archive(lambda paths: (_ for _ in ()).throw(OSError("full")), ["x.log"])
    assert str(info.value) == "archive callable failed: OSError: full"
