"""``logstore mirror`` without a Kafka cluster: arguments, errors, positions, the summary.

The copy itself is tested against a real broker in ``tests/kafka/test_mirror.py``.
"""

from __future__ import annotations

import socket
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


@pytest.mark.parametrize(
    ("position", "mirrored", "expected"),
    [
        (0, None, 0),  # an empty cluster partition: the group's position
        (40, None, 40),
        (40, 39, 40),  # the commit and the cluster agree
        (40, 57, 58),  # acknowledged after the last commit: not sent again
        (40, 20, 21),  # the cluster lost records: copied again
        (40, 2, 5),  # ... but never below the log start
    ],
)
def test_resume_position(position: int, mirrored: int | None, expected: int) -> None:
    got = mirror.resume_position("t", 0, position=position, start=5, end=100, mirrored=mirrored)
    assert got == expected


def test_a_cluster_ahead_of_the_source_is_refused() -> None:
    with pytest.raises(logstore.MirrorError) as raised:
        mirror.resume_position("t", 2, position=0, start=0, end=100, mirrored=100)
    assert str(raised.value) == (
        "t-2: the cluster already holds source offset 100, but the source ends at 100: "
        "was it mirrored from another root?"
    )


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
