"""``logstore produce``: nothing read is lost, bad lines are reported, slow input is stored.

Each test runs ``python -m logstore produce`` as a child process with stdin a
pipe, as ``tail -f access.log | logstore produce ...`` does. While the child
holds the broker root, the test reads the partition's segment files directly
(``logstore.diagnostics`` takes no lock) to see what is stored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import logstore
from logstore import diagnostics

from .conftest import REPO, child_env

CONFIG = logstore.LogConfig(fsync="never")


def produce_argv(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "logstore", "produce", str(root), *args]


def stored_values(partition: Path) -> list[bytes | None]:
    """Values of the complete batches in a partition's segments, read without its lock."""
    if not partition.is_dir():
        return []
    values: list[bytes | None] = []
    for base in diagnostics.segment_bases(str(partition)):
        for item in diagnostics.iter_segment_records(str(partition), base):
            if isinstance(item, logstore.CorruptLogError):
                break  # a batch being written: not stored yet
            values.append(item.value)
    return values


def wait_for_values(partition: Path, count: int, child: subprocess.Popen[bytes]) -> list[bytes]:
    """Poll (bounded) until ``count`` records are stored; the child must still be running."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        values = stored_values(partition)
        if len(values) >= count:
            return values  # type: ignore[return-value]
        assert child.poll() is None, child.stderr.read() if child.stderr else b""
        time.sleep(0.02)
    raise AssertionError(f"{count} records not stored in 20 s: {stored_values(partition)!r}")


def all_values(root: Path, topic: str) -> dict[int, list[bytes]]:
    """Every partition's values, in offset order, read through an opened broker."""
    with logstore.Broker.open(root, CONFIG, maintenance_interval_ms=None) as broker:
        t = broker.topic(topic)
        return {
            p: [r.value for r in t.partition(p).scan() if r.value is not None]
            for p in range(t.partitions)
        }


def access_lines(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"user": f"u{i % 7}", "n": i}).encode() for i in range(start, start + n)]


def test_a_bad_line_ends_the_run_after_writing_every_line_before_it(tmp_path: Path) -> None:
    good = access_lines(2500)
    data = b"\n".join([*good, b'{"nouser": 1}', *access_lines(10, 2500)]) + b"\n"
    argv = produce_argv(tmp_path, "access", "--partitions", "3", "--key-field", "user")
    done = subprocess.run(argv, input=data, capture_output=True, env=child_env(), cwd=REPO)
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr == (
        b"logstore: wrote 2,500 lines; line 2,501: not a JSON object with field 'user': "
        b"b'{\"nouser\": 1}'\n"
    )
    stored = all_values(tmp_path, "access")
    assert sorted(v for values in stored.values() for v in values) == sorted(good)
    for values in stored.values():  # each partition holds its lines once, in input order
        numbers = [json.loads(v)["n"] for v in values]
        assert numbers == sorted(numbers)


def test_skip_bad_goes_on_and_counts_the_bad_lines(tmp_path: Path) -> None:
    lines = [*access_lines(3), b"not json", *access_lines(2, 3), b'{"n": 5}', *access_lines(1, 6)]
    argv = produce_argv(tmp_path, "access", "--partitions", "1", "--key-field", "user")
    done = subprocess.run(
        [*argv, "--skip-bad"],
        input=b"\n".join(lines),  # no newline after the last line: still a line
        capture_output=True,
        env=child_env(),
        cwd=REPO,
    )
    assert done.stderr == (
        b"wrote 6 lines to access, skipped 2 bad lines "
        b"(first: line 4: not a JSON object with field 'user': b'not json')\n"
    )
    assert done.returncode == 0
    assert all_values(tmp_path, "access") == {0: access_lines(5) + access_lines(1, 6)}
    help_text = subprocess.run(
        [*argv, "--help"], capture_output=True, text=True, env=child_env(), cwd=REPO
    ).stdout
    assert "--skip-bad" in help_text and "count them" in help_text
    assert "--linger-ms" in help_text


def test_lines_are_stored_within_the_linger_while_stdin_stays_open(tmp_path: Path) -> None:
    argv = produce_argv(tmp_path, "t", "--partitions", "1", "--linger-ms", "100")
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=REPO
    ) as child:
        assert child.stdin is not None and child.stderr is not None
        child.stdin.write(b"first\nsecond\n")
        child.stdin.flush()
        assert wait_for_values(tmp_path / "t-0", 2, child) == [b"first", b"second"]
        child.stdin.write(b"third\n")
        child.stdin.flush()
        assert wait_for_values(tmp_path / "t-0", 3, child) == [b"first", b"second", b"third"]
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        assert child.stderr.read() == b"wrote 3 lines to t\n"
    assert all_values(tmp_path, "t") == {0: [b"first", b"second", b"third"]}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_writes_every_line_read_and_closes_cleanly(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    # Batches of 5 and a linger of 10 minutes: of the 12 lines sent in one write
    # (atomic in a pipe, so read in one chunk), 10 are stored as two batches and
    # 2 wait in memory when the signal comes; the unfinished line is not a line.
    argv = produce_argv(tmp_path, "t", "--partitions", "1", "--batch", "5", "--linger-ms", "600000")
    lines = [b"line-%d" % i for i in range(12)]
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # even if we ignore it
    ) as child:
        assert child.stdin is not None and child.stderr is not None
        child.stdin.write(b"".join(line + b"\n" for line in lines) + b"unfinis")
        child.stdin.flush()
        assert wait_for_values(tmp_path / "t-0", 10, child) == lines[:10]
        child.send_signal(signum)
        assert child.wait(timeout=30) == code
        assert (
            child.stderr.read()
            == (
                f"stopped by {signum.name}: wrote 12 lines to t; "
                "an unfinished last line (7 bytes) was not written\n"
            ).encode()
        )
        child.stdin.close()
    assert (tmp_path / "t-0" / ".kafka_cleanshutdown").exists()  # closed, not killed
    assert all_values(tmp_path, "t") == {0: lines}


def test_a_compacted_topic_needs_a_key(tmp_path: Path) -> None:
    with logstore.Broker.open(tmp_path, CONFIG, maintenance_interval_ms=None) as broker:
        broker.create_topic("keys", 1, {"cleanup_policy": "compact"})
    done = subprocess.run(
        produce_argv(tmp_path, "keys"), input=b"a\n", capture_output=True, env=child_env()
    )
    assert (done.returncode, done.stderr) == (
        2,
        b"logstore: topic keys is compacted: give --key or --key-field\n",
    )
    done = subprocess.run(
        produce_argv(tmp_path, "keys", "--key-field", "1"),
        input=b"k1 a\n\nk2 b\n",
        capture_output=True,
        env=child_env(),
    )
    assert (done.returncode, done.stderr) == (
        1,
        b"logstore: wrote 1 line; line 2: no field 1: b''\n",
    )
    assert all_values(tmp_path, "keys") == {0: [b"k1 a"]}


def test_batches_are_per_partition_and_a_refused_line_is_counted_exactly(tmp_path: Path) -> None:
    lines = access_lines(40)
    argv = produce_argv(tmp_path, "access", "--partitions", "2", "--key-field", "user")
    done = subprocess.run(
        [*argv, "--batch", "5", "--linger-ms", "600000"],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        env=child_env(),
        cwd=REPO,
    )
    assert (done.returncode, done.stderr) == (0, b"wrote 40 lines to access\n")
    with logstore.Broker.open(tmp_path, CONFIG, maintenance_interval_ms=None) as broker:
        for p in range(2):
            log = broker.topic("access").partition(p)
            data = log.read_batches(0, max_bytes=1 << 20)
            counts, pos = [], 0
            while pos < len(data):  # each stored batch's record count, from its header
                counts.append(int.from_bytes(data[pos + 57 : pos + 61], "big"))
                pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "big")
            assert max(counts) <= 5 and sum(counts) == log.end_offset
    # A line over max_message_bytes (1 MiB) is refused at once; every line before it is stored.
    huge = b'{"user": "u1", "pad": "' + b"x" * (1 << 20) + b'"}'
    done = subprocess.run(
        produce_argv(tmp_path, "big", "--partitions", "1", "--key-field", "user"),
        input=b"\n".join([*access_lines(3), huge, *access_lines(2, 3)]) + b"\n",
        capture_output=True,
        env=child_env(),
        cwd=REPO,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        b"logstore: wrote 3 lines; 1 of 4 lines read were not written: "
    ), done.stderr
    assert b"over max_message_bytes 1048576" in done.stderr
    assert all_values(tmp_path, "big") == {0: access_lines(3)}


def test_a_failed_write_ends_the_run_with_the_exact_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from logstore import cli
    from logstore.segment import Segment

    real = Segment.append
    calls = [0]

    def append(seg: Segment, data: object, spans: object, *, record_count: int) -> None:
        if os.path.basename(os.path.dirname(seg.log_path)) == "t-0":
            calls[0] += 1
            if calls[0] == 2:  # the second batch: nothing of it is written
                raise OSError(28, "No space left on device", os.path.dirname(seg.log_path))
        real(seg, data, spans, record_count=record_count)  # type: ignore[arg-type]

    monkeypatch.setattr(Segment, "append", append)
    lines = [b"line-%d" % i for i in range(9)]
    result = CliRunner().invoke(
        cli.cli,
        ["produce", str(tmp_path), "t", "--partitions", "1", "--batch", "3"],
        input=b"\n".join(lines) + b"\n",
    )
    monkeypatch.undo()
    assert result.exit_code == 1
    stored = all_values(tmp_path, "t")[0]
    assert stored[:3] == lines[:3] and lines[3] not in stored  # batch 2 failed whole
    # Every line is accounted for: what it says it wrote is what is stored.
    assert f" wrote {len(stored)} lines; " in result.output, result.output
    read = int(result.output.split(" of ")[1].split(" lines read")[0])
    assert f"; {read - len(stored)} of {read} lines read were not written: " in result.output
    assert result.output.rstrip().endswith("t-0: No space left on device")
