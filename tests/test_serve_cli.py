"""``logstore serve`` as a process: its one ready line, SIGTERM, and a root already served."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

pytest.importorskip("kio")
ck = pytest.importorskip("confluent_kafka")
import confluent_kafka.admin  # noqa: E402, F401  (ck.admin exists only once imported)


def _start(root) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "logstore", "serve", str(root), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
    assert match, line
    return proc, f"127.0.0.1:{match.group(1)}"


def test_serve_prints_one_line_serves_and_stops_cleanly_on_sigterm(tmp_path) -> None:
    proc, address = _start(tmp_path)
    try:
        producer = ck.Producer({"bootstrap.servers": address, "acks": "all"})
        admin = ck.admin.AdminClient({"bootstrap.servers": address})
        for f in admin.create_topics([ck.admin.NewTopic("t", 2, 1)]).values():
            assert f.result(timeout=10) is None
        producer.produce("t", value=b"v", partition=1)
        assert producer.flush(10) == 0
        # A second serve of the same root: the lock error, one line, status 1.
        second = subprocess.run(
            [sys.executable, "-m", "logstore", "serve", str(tmp_path), "--listen", "127.0.0.1:0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert (
            second.stderr
            == f"logstore: {tmp_path} is already open (lock held on {tmp_path}/.lock)\n"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert rest == ""  # nothing after the ready line
    for name in ("t-0", "t-1", "__consumer_offsets-0"):
        assert os.path.exists(tmp_path / name / ".kafka_cleanshutdown"), name
    import logstore

    with logstore.Broker.open(tmp_path) as broker:
        assert [r.value for r in broker.topic("t").partition(1).read(0)] == [b"v"]


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "example.org:9092"])
def test_a_non_loopback_address_needs_insecure(tmp_path, listen: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "logstore", "serve", str(tmp_path), "--listen", listen],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"--listen {listen} is not a loopback address" in done.stderr
    assert "pass --insecure to allow it" in done.stderr
