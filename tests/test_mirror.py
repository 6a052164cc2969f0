"""``logstore mirror`` without a Kafka cluster: arguments, errors, positions, the summary.

The copy itself is tested against a real broker in ``tests/kafka/test_mirror.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore import mirror
from logstore.cli.mirror import summary_lines

from .conftest import run_cli, run_python


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    with logstore.Broker.open(path) as broker:
        broker.create_topic("t", 2)
        broker.produce_many("t", [logstore.Message(b"v%d" % i, key=b"k%d" % i) for i in range(10)])
    return path


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the command line


def test_bootstrap_servers_are_required(capsys, root: Path) -> None:
    code, out, err = run_cli(capsys, "mirror", str(root))
    assert code == 2
    assert out == ""
    assert err == "logstore: Missing option '--bootstrap-servers' / '-b'.\n"


def test_a_path_that_is_no_root_is_a_usage_error(capsys, root: Path) -> None:
    partition = root / "t-0"
    code, _out, err = run_cli(capsys, "mirror", str(partition), "-b", "127.0.0.1:9")
    assert code == 2
    assert err == (
        f"logstore: {partition} is a log (partition) directory: it holds segment or checkpoint"
        " files\n"
    )


def test_a_property_must_be_key_value(capsys, root: Path) -> None:
    code, _out, err = run_cli(capsys, "mirror", str(root), "-b", "127.0.0.1:9", "-X", "acks")
    assert code == 2
    assert err == "logstore: Invalid value for -X: 'acks' is not KEY=VALUE\n"


def test_the_guarantees_cannot_be_turned_off(capsys, root: Path) -> None:
    code, _out, err = run_cli(capsys, "mirror", str(root), "-b", "127.0.0.1:9", "-X", "acks=1")
    assert code == 1
    assert err == "logstore: the mirror needs acks=all; acks=1 was given\n"


def test_an_unreachable_cluster_is_one_line_after_the_timeout(capsys, root: Path) -> None:
    port = closed_port()
    code, out, err = run_cli(
        capsys, "mirror", str(root), "-b", f"127.0.0.1:{port}", "--timeout", "0.5"
    )
    assert code == 1
    assert out == ""
    prefix = f"logstore: cannot reach the Kafka cluster at 127.0.0.1:{port} within 0.5 s: "
    assert err.startswith(prefix), err
    assert "Connection refused" in err
    assert err.count("\n") == 1


def test_an_unknown_topic_is_one_line(capsys, root: Path) -> None:
    # The root is checked before the cluster is asked anything that could time out.
    code, _out, err = run_cli(
        capsys, "mirror", str(root), "-b", f"127.0.0.1:{closed_port()}", "-t", "nope"
    )
    assert code == 1
    assert err == f"logstore: no topic 'nope' in {root}\n"


def test_without_confluent_kafka(root: Path) -> None:
    """logstore imports without the client; the command says how to install it."""
    done = run_python(
        """
        import sys
        sys.modules["confluent_kafka"] = None  # as if it were not installed
        import logstore
        from logstore import cli
        cli.main(["mirror", sys.argv[1], "-b", "127.0.0.1:9"])
        """,
        str(root),
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        "logstore: mirroring to Kafka needs the confluent-kafka package: "
        "pip install 'logstore[kafka]'\n"
    )


def test_the_library_without_confluent_kafka(root: Path) -> None:
    done = run_python(
        """
        import sys
        sys.modules["confluent_kafka"] = None
        import logstore
        try:
            logstore.mirror.mirror(sys.argv[1], "127.0.0.1:9")
        except logstore.MirrorError as exc:
            print(exc)
        """,
        str(root),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "mirroring to Kafka needs the confluent-kafka package: pip install 'logstore[kafka]'\n"
    )


def test_a_missing_root_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        mirror.mirror(tmp_path / "absent", "127.0.0.1:9")
    assert not (tmp_path / "absent").exists()


# ---------------------------------------------------------------- positions


def test_acknowledged_prefix_is_contiguous() -> None:
    state = mirror.PartitionProgress("t", 0, 10)
    for offset in (10, 11, 13, 14):  # 12 was compacted away: offsets need not be dense
        state.sending(offset, 5)
    state.delivered(11, None)
    assert (state.next, state.records) == (10, 0)  # 10 not yet: nothing is
    state.delivered(13, None)
    state.delivered(10, None)
    assert (state.next, state.records, state.bytes, state.pending) == (14, 3, 15, 1)
    state.delivered(14, None)
    assert (state.next, state.pending) == (15, 0)


def test_nothing_past_a_failed_record_counts() -> None:
    state = mirror.PartitionProgress("t", 3, 0)
    for offset in range(4):
        state.sending(offset, 1)
    state.delivered(0, None)
    state.delivered(1, "Broker: Message size too large")
    state.delivered(2, None)
    state.delivered(3, None)
    assert (state.next, state.records, state.pending) == (1, 1, 3)
    assert state.failure == (1, "Broker: Message size too large")


def test_the_commit_carries_the_cluster_offset_of_the_acknowledged_prefix() -> None:
    state = mirror.PartitionProgress("t", 0, 10, kafka_start=500)
    assert state.commit_position() == logstore.OffsetAndMetadata(10, "kafka-offset=500")
    for offset in (10, 11, 13):  # 12 compacted away: one cluster offset per record sent
        state.sending(offset, 1)
    state.delivered(11, None)
    assert state.commit_position() == logstore.OffsetAndMetadata(10, "kafka-offset=500")
    state.delivered(10, None)
    assert state.commit_position() == logstore.OffsetAndMetadata(12, "kafka-offset=502")
    state.delivered(13, None)
    assert state.commit_position() == logstore.OffsetAndMetadata(14, "kafka-offset=503")


@pytest.mark.parametrize(
    ("metadata", "kafka_offset"),
    [
        ("kafka-offset=0", 0),
        ("kafka-offset=1234", 1234),
        ("", None),
        ("kafka-offset=", None),
        ("kafka-offset=-1", None),
        ("kafka-offset=01", None),
        ("kafka-offset=5 ", None),
    ],
)
def test_the_metadata_format(metadata: str, kafka_offset: int | None) -> None:
    assert mirror.kafka_offset_of(metadata) == kafka_offset
    if kafka_offset is not None:
        assert mirror.metadata_for(kafka_offset) == metadata


def committed(offset: int, kafka_offset: int) -> logstore.OffsetAndMetadata:
    return logstore.OffsetAndMetadata(offset, f"kafka-offset={kafka_offset}")


@pytest.mark.parametrize(
    ("commit", "kafka_end", "expected"),
    [
        # Never committed: from the log start, the cluster's end being where it goes.
        (None, 0, mirror.Resume(5, 0, 0)),
        (None, 30, mirror.Resume(5, 30, 0)),
        # The commit and the cluster agree: nothing taken after it.
        (committed(40, 70), 70, mirror.Resume(40, 70, 0)),
        # The cluster took 17 records after the commit (acknowledged or not).
        (committed(40, 70), 87, mirror.Resume(40, 70, 17)),
    ],
)
def test_resume_point(
    commit: logstore.OffsetAndMetadata | None, kafka_end: int, expected: mirror.Resume
) -> None:
    got = mirror.resume_point("t", 0, committed=commit, log_start=5, kafka_end=kafka_end)
    assert got == expected


def test_a_cluster_partition_shorter_than_the_commit_is_refused() -> None:
    with pytest.raises(logstore.MirrorError) as raised:
        mirror.resume_point("t", 2, committed=committed(40, 70), log_start=0, kafka_end=69)
    assert str(raised.value) == (
        "t-2: the cluster partition ends at offset 69, before the 70 the mirror committed: was "
        "the topic recreated or truncated? (--start-over copies the partition again from the "
        "source's start)"
    )
    again = mirror.resume_point(
        "t", 2, committed=committed(40, 70), log_start=3, kafka_end=0, start_over=True
    )
    assert again == mirror.Resume(3, 0, 0)


def test_a_commit_without_the_mirrors_metadata_is_refused() -> None:
    plain = logstore.OffsetAndMetadata(40, "")
    with pytest.raises(logstore.MirrorError) as raised:
        mirror.resume_point("t", 1, committed=plain, log_start=0, kafka_end=10)
    assert str(raised.value) == (
        "t-1: the group's commit (offset 40) has no kafka-offset= metadata: not a mirror's "
        "commit (use another group, or --start-over to copy the partition again)"
    )
    again = mirror.resume_point("t", 1, committed=plain, log_start=0, kafka_end=10, start_over=True)
    assert again == mirror.Resume(0, 10, 0)


@pytest.fixture
def gappy(tmp_path: Path) -> Iterator[logstore.Log]:
    """A compacted log with a gap: offsets 0-4 and 15-22 (5-14 superseded by 18-22)."""
    config = logstore.LogConfig(fsync="never", cleanup_policy="compact")
    log = logstore.Log.open(tmp_path / "t-0", config, maintenance_interval_ms=None)
    log.append_many(logstore.Message(b"x", key=b"own-%d" % i) for i in range(5))
    log.append_many(logstore.Message(b"%d" % i, key=b"k%d" % (i % 5)) for i in range(5, 15))
    log.append_many(logstore.Message(b"x", key=b"own-%d" % i) for i in range(5, 8))
    log.append_many(logstore.Message(b"%d" % i, key=b"k%d" % (i % 5)) for i in range(18, 23))
    log.roll()
    log.compact()
    yield log
    log.close()


def test_skip_held_counts_records_not_offsets(gappy: logstore.Log) -> None:
    assert [r.offset for r in gappy.scan()] == [0, 1, 2, 3, 4, *range(15, 23)]
    # From a commit at 3, the cluster took 4 records: 3, 4, 15 and 16.
    position, last = mirror.skip_held(gappy, "t", 0, mirror.Resume(3, 100, 4))
    assert (position, last) == (17, gappy.read(16, max_records=1)[0])
    assert mirror.skip_held(gappy, "t", 0, mirror.Resume(17, 104, 0)) == (17, None)
    assert mirror.skip_held(gappy, "t", 0, mirror.Resume(0, 100, 13))[0] == 23


def test_skip_held_refuses_more_than_the_source_has(gappy: logstore.Log) -> None:
    with pytest.raises(logstore.MirrorError) as raised:
        mirror.skip_held(gappy, "t", 0, mirror.Resume(20, 100, 4))
    assert str(raised.value) == (
        "t-0: the cluster took 4 record(s) after the commit at offset 20, but the source has "
        "only 3 from there: is the mirror the only writer of the topic?"
    )


def test_skip_held_refuses_records_retention_deleted(tmp_path: Path) -> None:
    with logstore.Log.open(tmp_path / "t-0", logstore.LogConfig(fsync="never")) as log:
        log.append_many(logstore.Message(b"%d" % i) for i in range(20))
        log.delete_before(10)
        assert mirror.skip_held(log, "t", 0, mirror.Resume(2, 0, 0)) == (10, None)
        with pytest.raises(logstore.MirrorError, match="retention deleted the source up to"):
            mirror.skip_held(log, "t", 0, mirror.Resume(2, 0, 1))


def test_the_last_record_skipped_must_be_the_clusters_last() -> None:
    ours = logstore.Record(18, 1000, b"k3", b"v", ())
    mirror.check_held("t", 0, ours, (b"k3", b"v", 1000), kafka_offset=103)
    mirror.check_held("t", 0, ours, None, kafka_offset=103)  # gone from the cluster: unchecked
    untimed = logstore.Record(18, 0, b"k3", b"v", ())  # the producer gave it its own time
    mirror.check_held("t", 0, untimed, (b"k3", b"v", 1_700_000_000_000), kafka_offset=103)
    with pytest.raises(logstore.MirrorError) as raised:
        mirror.check_held("t", 0, ours, (b"k3", b"v", 999), kafka_offset=103)
    assert str(raised.value) == (
        "t-0: the cluster's record at offset 103 is not the source's record at offset 18 "
        "(key, value or timestamp differ): was the source compacted since, or did something "
        "else write to the topic? (--start-over copies the partition again)"
    )


def test_help_states_the_only_writer_rule(capsys) -> None:
    code, out, _err = run_cli(capsys, "mirror", "--help")
    assert code == 0
    assert "The mirror must be the only writer to its target topics" in " ".join(out.split())


# ---------------------------------------------------------------- the summary


def test_summary_lines() -> None:
    summary = mirror.MirrorSummary(
        (
            mirror.PartitionSummary("logs", 0, 1200, 120_000, 1500, 1500),
            mirror.PartitionSummary("logs", 1, 0, 0, 700, 900),
        ),
        seconds=2.0,
        interrupted=True,
    )
    assert (summary.records, summary.bytes, summary.lag) == (1200, 120_000, 200)
    assert summary_lines(summary, bootstrap="k:9092") == [
        "mirrored 1,200 record(s), 120,000 bytes to k:9092 in 2.0 s (600 records/s, 0.1 MB/s);"
        " stopped, lag 200",
        "partition     records         bytes    position       lag",
        "logs-0          1,200       120,000       1,500         0",
        "logs-1              0             0         700       200",
    ]
