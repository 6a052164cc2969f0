"""Errors name what went wrong and where; logs name the files recovery touched; CRCs hold.

Every deliberate error is a ``LogStoreError`` (a ``ValueError``/``LookupError``
subclass where that also fits); each message names the topic, partition or
path. Recovery actions are logged under ``logstore.<module>`` with the path.
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import pytest

import logstore
from logstore import (
    ConfigError,
    CorruptLogError,
    LogConfig,
    LogStoreError,
    PartitionNotAssignedError,
    UnknownPartitionError,
)

from .conftest import run_cli

SEGMENT_0 = f"{0:020d}.log"
CLEAN_SHUTDOWN = ".kafka_cleanshutdown"


def _broker(root: Path) -> logstore.Broker:
    return logstore.Broker.open(root, LogConfig(fsync="never"), maintenance_interval_ms=None)


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


# ---------------------------------------------------------------- partitions out of range


def test_a_partition_out_of_range_names_topic_partition_and_count(tmp_path: Path) -> None:
    with _broker(tmp_path / "root") as broker:
        topic = broker.create_topic("web", 8)
        message = "topic web has 8 partition(s), 0..7: no partition 99"
        with pytest.raises(UnknownPartitionError) as caught:
            broker.produce("web", b"x", partition=99)
        assert str(caught.value) == message
        assert (caught.value.topic, caught.value.partition, caught.value.partitions) == (
            "web",
            99,
            8,
        )
        with pytest.raises(UnknownPartitionError, match=r"no partition 99$"):
            broker.produce_many("web", [b"a", b"b"], partition=99)
        with pytest.raises(UnknownPartitionError, match=r"no partition 99$"):
            topic.partition(99)
        with pytest.raises(UnknownPartitionError, match=r"0\.\.7: no partition -1$"):
            topic.partition(-1)
        with pytest.raises(TypeError, match="partition must be an int"):
            topic.partition("1")  # type: ignore[arg-type]
        # Nothing was written anywhere.
        assert [topic.partition(p).end_offset for p in range(8)] == [0] * 8


def test_max_open_files_below_one_is_a_config_error_before_the_disk(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_open_files must be an integer >= 1, got 0"):
        logstore.Broker.open(tmp_path / "root", max_open_files=0)
    assert not (tmp_path / "root").exists()


# ---------------------------------------------------------------- consumers


def test_seek_and_position_on_an_unassigned_partition(tmp_path: Path) -> None:
    with _broker(tmp_path / "root") as broker:
        broker.create_topic("t", 2)
        with broker.consumer("g", "t") as a, broker.consumer("g", "t") as b:
            assert (a.assignment, b.assignment) == ([("t", 0)], [("t", 1)])
            with pytest.raises(PartitionNotAssignedError) as caught:
                a.seek("t", 1, 0)
            assert str(caught.value) == (
                f"t-1 is not assigned to consumer {a.member_id} of group g (assigned: t-0)"
            )
            assert (caught.value.topic, caught.value.partition) == ("t", 1)
            with pytest.raises(PartitionNotAssignedError, match=r"^t-0 is not assigned"):
                b.position("t", 0)  # was a bare KeyError
            with pytest.raises(PartitionNotAssignedError, match=r"^other-0 is not assigned"):
                a.seek("other", 0, 0)
            with pytest.raises(PartitionNotAssignedError, match=r"^t-5 .*\(assigned: t-1\)$"):
                b.seek("t", 5, 0)
            assert (a.position("t", 0), b.position("t", 1)) == (0, 0)


def test_a_bad_start_names_the_value_and_the_accepted_forms(tmp_path: Path) -> None:
    forms = "'earliest', 'latest', a timestamp in ms (int) or a datetime.timedelta"
    with _broker(tmp_path / "root") as broker:
        broker.create_topic("t", 2)
        with pytest.raises(ConfigError) as caught:
            broker.consumer("g", "t", start="yesterday")  # type: ignore[arg-type]
        assert str(caught.value) == f"start 'yesterday' is not one of {forms}"
        assert isinstance(caught.value, ValueError)
        with pytest.raises(TypeError, match=r"start must be .* not float"):
            broker.consumer("g", "t", start=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not bool"):
            broker.consumer("g", "t", start=True)
        # The refused consumers never joined: a good one gets every partition.
        with broker.consumer("g", "t", start=datetime.timedelta(hours=1)) as c:
            assert c.assignment == [("t", 0), ("t", 1)]


# ---------------------------------------------------------------- the codec layer


def test_internal_batch_builders_raise_logstore_errors() -> None:
    from logstore import batch

    with pytest.raises(logstore.InvalidRecordError, match="at least one record"):
        batch.encode_batch([], base_offset=0)
    with pytest.raises(logstore.InvalidRecordError, match="explicit timestamps"):
        batch.encode_batch([(b"v", None, (), None)], base_offset=0)


def test_a_level_for_another_codec_does_not_break_rewriting_a_batch(tmp_path: Path) -> None:
    """Truncating inside a gzip batch of a log now set to zstd level 19 rewrites it as gzip.

    The configured level belongs to zstd; zlib refuses 19 ("Bad compression level").
    """
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(compression="gzip")) as log:
        log.append_many([logstore.Message(b"v%d" % i, timestamp=i) for i in range(10)])
    config = LogConfig(compression="zstd", compression_level=19)
    with logstore.Log.open(path, config) as log:
        log.truncate(4)
        assert [r.value for r in log.scan()] == [b"v0", b"v1", b"v2", b"v3"]
    with logstore.Log.open(path, config) as log:
        assert [r.offset for r in log.scan()] == [0, 1, 2, 3]


# ---------------------------------------------------------------- logging


def _unclean(path: Path) -> None:
    (path / CLEAN_SHUTDOWN).unlink()


def test_the_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("logstore").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_a_cut_tail_is_a_warning_of_the_loader_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(fsync="never")) as log:
        log.append_many([b"a", b"b"])
    _unclean(path)
    size = os.path.getsize(path / SEGMENT_0)
    with open(path / SEGMENT_0, "ab") as f:
        f.write(bytes(4096))
    with (
        caplog.at_level(logging.INFO, logger="logstore"),
        logstore.Log.open(path, LogConfig(fsync="never")) as log,
    ):
        assert [r.value for r in log.scan()] == [b"a", b"b"]
    cut = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.name for r in cut] == ["logstore.loader"]
    assert f"{path / SEGMENT_0} at byte {size}: " in cut[0].getMessage()


def test_segments_after_the_damage_are_quarantined_with_a_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(fsync="never", segment_messages=2)) as log:
        for i in range(6):
            log.append(b"value-%d" % i)
        bases = [s.base_offset for s in log.segments]
    assert bases == [0, 2, 4]
    data = bytearray((path / SEGMENT_0).read_bytes())
    data[data.find(b"value-1")] ^= 0xFF  # inside the second batch's CRC
    (path / SEGMENT_0).write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="logstore"):
        logstore.Log.recover(path, force=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert {r.name for r in warnings} == {"logstore.loader"}
    later = [str(path / f"{b:020d}.log") for b in (2, 4)]
    quarantined = [
        r.getMessage() for r in warnings if "moved aside (quarantined)" in r.getMessage()
    ]
    assert [m.split(" at byte")[0] for m in quarantined] == later
    cut = [r.getMessage() for r in warnings if r.getMessage().startswith(f"{path / SEGMENT_0} at ")]
    assert len(cut) == 1
    assert len(warnings) == 1 + len(later)


def test_a_missing_index_is_rebuilt_with_an_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(fsync="never")) as log:
        log.append_many([b"a", b"b"])
    index = path / f"{0:020d}.index"
    index.unlink()
    with (
        caplog.at_level(logging.INFO, logger="logstore"),
        logstore.Log.open(path, LogConfig(fsync="never")) as log,
    ):
        assert [r.value for r in log.scan()] == [b"a", b"b"]
    infos = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert infos == [
        ("logstore.loader", logging.INFO, f"{index}: indexes rebuilt (index file missing)")
    ]
    assert index.exists()


def test_a_damaged_index_found_on_read_is_rebuilt_with_an_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    config = LogConfig(fsync="never", index_interval_bytes=0, segment_messages=3)
    with logstore.Log.open(path, config) as log:
        for i in range(6):
            log.append(b"v%d" % i)
    index = path / f"{0:020d}.index"
    with open(index, "ab") as f:
        f.write(b"\x00\x00\x00")  # not a whole entry: the index is not sane
    with (
        caplog.at_level(logging.INFO, logger="logstore"),
        logstore.Log.open(path, config) as log,
    ):
        assert [r.value for r in log.read(1)] == [b"v%d" % i for i in range(1, 6)]
    rebuilt = [r for r in caplog.records if r.name == "logstore.segment"]
    assert [r.levelno for r in rebuilt] == [logging.INFO]
    assert str(index) in rebuilt[0].getMessage()
    assert rebuilt[0].getMessage().endswith(f"rebuilding the indexes of {SEGMENT_0}")


def test_leftover_files_and_swaps_are_logged_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with logstore.Log.open(path, LogConfig(fsync="never", segment_messages=2)) as log:
        for i in range(4):
            log.append(b"v%d" % i)
    deleted = path / f"{90:020d}.log.deleted"
    deleted.write_bytes(b"old")
    swap = path / f"{2:020d}.log.swap"
    os.rename(path / f"{2:020d}.log", swap)  # a compaction swap cut short
    with (
        caplog.at_level(logging.INFO, logger="logstore"),
        logstore.Log.open(path, LogConfig(fsync="never")) as log,
    ):
        assert [r.value for r in log.scan()] == [b"v0", b"v1", b"v2", b"v3"]
    lines = {r.getMessage(): (r.name, r.levelno) for r in caplog.records}
    assert lines[f"{deleted}: removed (deletion was pending)"] == ("logstore.loader", logging.INFO)
    assert lines[f"{swap}: swap completed (swap in progress)"] == ("logstore.loader", logging.INFO)
    assert not deleted.exists() and not swap.exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ---------------------------------------------------------------- the command line


_run = run_cli


def test_cli_errors_are_one_line_and_debug_adds_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _broker(root).close()
    code, out, err = _run(capsys, "consume", str(root), "nope")
    assert (code, out) == (1, "")
    assert err == f"logstore: no topic 'nope' in {root}\n"
    code, out, err = _run(capsys, "--debug", "consume", str(root), "nope")
    assert (code, out) == (1, "")
    assert err.startswith("Traceback (most recent call last):\n")
    assert "logstore.errors.UnknownTopicError: no topic 'nope'" in err
    assert err.endswith(f"\nlogstore: no topic 'nope' in {root}\n")


def test_cli_shows_a_logged_warning_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    with _broker(root) as broker:
        broker.create_topic("t", 1)
        broker.produce_many("t", [b"a", b"b"])
    part = root / "t-0"
    _unclean(part)
    with open(part / SEGMENT_0, "ab") as f:
        f.write(bytes(4096))
    code, out, err = _run(capsys, "consume", str(root), "t")
    assert (code, out) == (0, "a\nb\n")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"logstore: warning: {part / SEGMENT_0} at byte ")
    assert "Traceback" not in err
    # The handler is gone once the command is done: nothing left behind in the process.
    assert not [
        h for h in logging.getLogger("logstore").handlers if not isinstance(h, logging.NullHandler)
    ]


def test_cli_debug_shows_info_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    with _broker(root) as broker:
        broker.create_topic("t", 1)
        broker.produce_many("t", [b"a"])
    index = root / "t-0" / f"{0:020d}.index"
    index.unlink()
    code, out, err = _run(capsys, "--debug", "consume", str(root), "t")
    assert (code, out) == (0, "a\n")
    assert f"logstore: info: {index}: indexes rebuilt (index file missing)\n" in err
    index.unlink()
    code, out, err = _run(capsys, "consume", str(root), "t")
    assert (code, out, err) == (0, "a\n", "")  # INFO is not shown without --debug


# ---------------------------------------------------------------- CRC on read


def _flip_in_value(path: Path, marker: bytes) -> int:
    data = bytearray(path.read_bytes())
    at = data.find(marker)
    assert at > 0
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    return at


def _sealed_log_with_damage(tmp_path: Path, verify: bool) -> tuple[Path, int, LogConfig]:
    """Three one-record batches, the first two sealed; one bit of "second" flipped.

    Returns the log's path, the byte position of the damaged batch and the config.
    """
    path = tmp_path / "log"
    config = LogConfig(fsync="never", segment_messages=2, verify_crc_on_read=verify)
    with logstore.Log.open(path, config) as log:
        for i, value in enumerate((b"first", b"second", b"third")):
            log.append(value, timestamp=10 * (i + 1))
    data = (path / SEGMENT_0).read_bytes()
    second = 12 + int.from_bytes(data[8:12], "big")  # the first batch's size
    assert second < data.find(b"second")
    _flip_in_value(path / SEGMENT_0, b"second")
    return path, second, config


def test_reads_of_a_flipped_byte_raise_with_verify_crc_on_read(tmp_path: Path) -> None:
    path, position, config = _sealed_log_with_damage(tmp_path, verify=True)
    where = f"{path / SEGMENT_0} at byte {position}: CRC mismatch"
    with logstore.Log.open(path, config) as log:
        assert [r.value for r in log.read(0, max_records=1)] == [b"first"]
        with pytest.raises(CorruptLogError, match=where):
            log.read(1)
        with pytest.raises(CorruptLogError, match=where):
            list(log.scan())
        with pytest.raises(CorruptLogError, match=where):
            log.read_batches(1)
        with pytest.raises(CorruptLogError, match=where):
            log.offset_for_timestamp(15)
        assert [r.value for r in log.read(2)] == [b"third"]


def test_without_verify_crc_on_read_reads_return_the_damaged_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the README says of ``verify_crc_on_read=False``, exactly."""
    from logstore import batch

    path, position, config = _sealed_log_with_damage(tmp_path, verify=False)
    with logstore.Log.open(path, config) as log:
        # read and scan decode the damaged value as stored: one bit differs, no error.
        assert [r.value for r in log.read(0)] == [b"first", b"recond", b"third"]
        assert [r.value for r in log.scan()] == [b"first", b"recond", b"third"]
        assert log.offset_for_timestamp(15) == 1
        # read_batches hands out the stored bytes with their stored CRC, which a
        # receiver that checks CRCs (Kafka's consumer does by default) rejects.
        raw = log.read_batches(1, max_bytes=1)
        assert raw == (path / SEGMENT_0).read_bytes()[position : position + len(raw)]
        with pytest.raises(CorruptLogError, match="CRC mismatch"):
            batch.read_header(raw, 0, verify_crc=True)
    # verify checks every CRC whatever the setting.
    code, out, err = _run(capsys, "verify", str(path))
    assert code == 1
    assert out.startswith(f"{path / SEGMENT_0} at byte {position}: CRC mismatch")
    assert err == "logstore: 1 problem(s) in 1 file(s) (2 batches, 2 records read)\n"


def test_compaction_never_rewrites_damage_under_a_fresh_crc(tmp_path: Path) -> None:
    """Compaction checks CRCs even with ``verify_crc_on_read=False``.

    A batch of the clean part whose record is superseded is rebuilt with a new
    CRC; unchecked, a flipped bit in its other record would become valid data.
    """
    path = tmp_path / "log"
    config = LogConfig(
        fsync="never", cleanup_policy="compact", segment_messages=2, verify_crc_on_read=False
    )
    with logstore.Log.open(path, config) as log:
        log.append_many([logstore.Message(b"a-0", key=b"a"), logstore.Message(b"b-0", key=b"b")])
        log.append_many([logstore.Message(b"c-0", key=b"c"), logstore.Message(b"d-0", key=b"d")])
        log.append(b"e-0", key=b"e")
        log.compact()
    _flip_in_value(path / SEGMENT_0, b"b-0")
    before = (path / SEGMENT_0).read_bytes()
    with logstore.Log.open(path, config) as log:
        log.append_many([logstore.Message(b"a-1", key=b"a"), logstore.Message(b"x", key=b"x")])
        log.append(b"y", key=b"y")
        with pytest.raises(CorruptLogError, match=f"{path / SEGMENT_0} at byte 0: CRC mismatch"):
            log.compact()
    assert (path / SEGMENT_0).read_bytes() == before


def test_without_verify_crc_on_read_broken_framing_still_raises(tmp_path: Path) -> None:
    path = tmp_path / "log"
    config = LogConfig(fsync="never", verify_crc_on_read=False)
    with logstore.Log.open(path, config) as log:
        log.append_many(
            [logstore.Message(b"value-%d" % i, key=b"k", timestamp=5) for i in range(3)]
        )
    data = bytearray((path / SEGMENT_0).read_bytes())
    data[61] ^= 0x40  # the first record's length varint, right after the 61-byte header
    (path / SEGMENT_0).write_bytes(bytes(data))
    with logstore.Log.open(path, config) as log, pytest.raises(CorruptLogError) as caught:
        log.read(0)
    assert caught.value.kind == "invalid_records"
    assert str(caught.value).startswith(f"{path / SEGMENT_0} at byte ")


def test_a_log_s_refusals_name_the_log(tmp_path: Path) -> None:
    path = tmp_path / "events"
    config = logstore.LogConfig(fsync="never", max_message_bytes=1024)
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        log.append(b"x")
        with pytest.raises(logstore.OffsetOutOfRange) as out_of_range:
            log.read(99)
        assert str(out_of_range.value) == f"{path}: offset 99 is outside the log's range [0, 1]"
        with pytest.raises(logstore.RecordTooLarge, match=f"^{path}: a record's batch is "):
            log.append(b"y" * 4096)
        with pytest.raises(logstore.OffsetOutOfRange, match=f"^{path}: cannot truncate to"):
            log.delete_before(1)
            log.truncate(0)
        with pytest.raises(logstore.OffsetOutOfRange, match=f"^{path}: cannot delete before 5"):
            log.delete_before(5)
    compacted = tmp_path / "keys"
    with (
        logstore.Log.open(
            compacted, logstore.LogConfig(cleanup_policy="compact"), maintenance_interval_ms=None
        ) as log,
        pytest.raises(
            logstore.InvalidRecordError,
            match=f"^{compacted}: a compacted log cannot accept a record without a key",
        ),
    ):
        log.append(b"no key")


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


def test_a_cut_torn_tail_is_reported_with_enum_members(tmp_path: Path) -> None:
    from logstore import ErrorKind, RecoveryActionKind

    log_dir = tmp_path / "log"
    with logstore.Log.open(log_dir, LogConfig(fsync="never")) as log:
        log.append(b"v")
    (segment,) = log_dir.glob("*.log")
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(b"\x00" * 100)
    (log_dir / ".kafka_cleanshutdown").unlink()  # as after a crash: the tail is unflushed
    (action,) = [a for a in logstore.Log.recover(log_dir) if a.action == "truncate"]
    assert action.action is RecoveryActionKind.TRUNCATE
    assert action.kind is ErrorKind.ZERO_FILL
    assert (action.path, action.position, action.bytes) == (str(segment), size, 100)
    assert segment.stat().st_size == size


def test_archive_error_is_a_logstore_error() -> None:
    from logstore import retention

    assert issubclass(logstore.ArchiveError, logstore.LogStoreError)
    assert retention.ArchiveError is logstore.ArchiveError
    with pytest.raises(logstore.ArchiveError) as info:
        retention.run_archive(lambda paths: (_ for _ in ()).throw(OSError("full")), ["x.log"])
    assert str(info.value) == "archive callable failed: OSError: full"


# ---------------------------------------------------------------- closing


def test_log_broker_and_consumer_share_the_closed_flag_and_its_check(tmp_path: Path) -> None:
    log = logstore.Log.open(tmp_path / "log", LogConfig(fsync="never"))
    broker = _broker(tmp_path / "root")
    broker.create_topic("t")
    consumer = broker.consumer("g", "t")
    assert (log.closed, broker.closed, consumer.closed) == (False, False, False)
    log.close()
    consumer.close()
    assert (log.closed, consumer.closed) == (True, True)
    with pytest.raises(logstore.LogClosedError) as info:
        log.append(b"v")
    assert str(info.value) == f"log {tmp_path / 'log'} is closed"
    with pytest.raises(logstore.LogClosedError) as info:
        consumer.poll()
    assert str(info.value) == f"consumer {consumer.member_id} is closed"
    broker.close()
    assert broker.closed
    with pytest.raises(logstore.LogClosedError) as info:
        broker.create_topic("u")
    assert str(info.value) == f"broker {broker.root} is closed"
