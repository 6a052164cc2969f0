"""``_fs``: the directory lock, the bounded cache of open files, the shared ``Closing`` check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig

from .conftest import FakeClock, OpenLog, run_python
from .helpers_broker import _broker, drain, open_broker

# ---------------------------------------------------------------- 11. max_open_files
CHILD_FD_LIMIT = """
import json, os, resource, sys
import logstore
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
root = sys.argv[1]
def fds():
    return len(os.listdir("/proc/self/fd"))
peak = fds()
out = {}
with logstore.Broker.open(
    root, logstore.LogConfig(fsync="never"), max_open_files=16, maintenance_interval_ms=None
) as broker:
    topic = broker.topic("m")
    peak = max(peak, fds())
    scanned = {}
    for p in range(2):
        rows = []
        for r in topic.partition(p).scan():
            rows.append([r.offset, r.value.decode()])
            if r.offset % 50 == 0:
                peak = max(peak, fds())
        scanned[p] = rows
    jumps = []
    for i in range(300):  # alternate partitions and far-apart segments
        p = i % 2
        offset = (i * 379) % 1000
        [r] = topic.partition(p).read(offset, max_records=1)
        jumps.append([p, r.offset, r.value.decode()])
        peak = max(peak, fds())
    produced = broker.produce_many("m", [b"new-%d" % i for i in range(100)])
    peak = max(peak, fds())
    readback = []
    for p, o in produced:
        [r] = topic.partition(p).read(o, max_records=1)
        readback.append(r.value.decode())
    peak = max(peak, fds())
    segments = [len(topic.partition(p).segments) for p in range(2)]
print(json.dumps({"scanned": scanned, "jumps": jumps, "produced": produced,
                  "readback": readback, "peak": peak, "segments": segments, "after": fds()}))
"""


def test_more_segments_than_max_open_files(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        topic = broker.create_topic("m", 2, {"segment_messages": 5})
        result = broker.produce_many("m", [b"v%d" % i for i in range(2000)])
        expected = {p: [[o, f"v{i}"] for i, (q, o) in enumerate(result) if q == p] for p in (0, 1)}
        assert [len(expected[p]) for p in (0, 1)] == [1000, 1000]
        assert [len(topic.partition(p).segments) for p in (0, 1)] == [200, 200]

    with open_broker(root, clock, max_open_files=16) as broker:
        topic = broker.topic("m")
        for p in (0, 1):
            assert [[r.offset, r.value.decode()] for r in topic.partition(p).scan()] == expected[p]

    done = run_python(CHILD_FD_LIMIT, str(root))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["scanned"] == {str(p): expected[p] for p in (0, 1)}
    assert report["jumps"] == [
        [i % 2, (i * 379) % 1000, expected[i % 2][(i * 379) % 1000][1]] for i in range(300)
    ]
    assert report["readback"] == [f"new-{i}" for i in range(100)]
    assert sorted(o for p, o in report["produced"] if p == 0) == list(range(1000, 1050))
    assert report["segments"] == [210, 210]
    assert report["peak"] < 64
    assert report["after"] < 64

    with open_broker(root, clock) as broker:
        topic = broker.topic("m")
        assert [topic.partition(p).end_offset for p in (0, 1)] == [1050, 1050]
        news = [r.value for p in (0, 1) for r in topic.partition(p).scan(1000)]
        assert sorted(news) == sorted(b"new-%d" % i for i in range(100))  # type: ignore[type-var]


def _open_log_files(root: Path) -> list[str]:
    """The ``.log`` files under ``root`` this process holds open now."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)) and target.endswith(".log"):
            out.append(target)
    return out


@pytest.mark.parametrize("fsync", ["never", "always"])
def test_max_open_files_bounds_every_segment_handle_active_ones_too(
    tmp_path: Path, clock: FakeClock, fsync: str
) -> None:
    # Fewer handles than partitions: writing to all 8 must close and reopen
    # active segments as well, and every record must still land and read back.
    root = tmp_path / "root"
    config = logstore.LogConfig(fsync=fsync, segment_messages=20)  # type: ignore[arg-type]
    peak = 0
    with open_broker(root, clock, config, max_open_files=4) as broker:
        broker.create_topic("t", 8)
        produced = []
        for i in range(30):
            produced += broker.produce_many("t", [b"v%d-%d" % (i, j) for j in range(40)])
            peak = max(peak, len(_open_log_files(root)))
        with broker.consumer("g", ["t"]) as consumer:
            got = {(r.partition, r.record.offset): r.record.value for r in drain(consumer, 100)}
            peak = max(peak, len(_open_log_files(root)))
        segments = sum(len(broker.topic("t").partition(p).segments) for p in range(8))
    assert segments > 8 * 6  # many sealed and 8 active segments behind 4 handles
    assert peak <= 4
    assert got == {(p, o): b"v%d-%d" % divmod(n, 40) for n, (p, o) in enumerate(produced)}


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


def test_second_open_in_the_same_process_is_locked(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log()
    log.append(b"a")
    with pytest.raises(logstore.LogLockedError):
        logstore.Log.open(log_dir, logstore.LogConfig(fsync="never"))
    # The failed open did not disturb the owner.
    assert log.append(b"b") == 1
    log.close()
    with logstore.Log.open(log_dir, logstore.LogConfig(fsync="never")) as again:
        assert [r.value for r in again.read(0)] == [b"a", b"b"]


LOCK_PROBE = """
    import sys
    import logstore
    try:
        log = logstore.Log.open(sys.argv[1], logstore.LogConfig(fsync="never"))
    except Exception as exc:
        print(type(exc).__name__)
    else:
        print("opened", log.end_offset)
        log.close()
"""


def test_second_open_from_another_process_is_locked(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log()
    log.append(b"a")
    probe = run_python(LOCK_PROBE, str(log_dir))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "LogLockedError"
    log.close()
    probe = run_python(LOCK_PROBE, str(log_dir))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "opened 1"


# ---------------------------------------------------------------- open files
def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _hundred_segments(log_dir: Path) -> None:
    with logstore.Log.open(log_dir, logstore.LogConfig(fsync="never")) as log:
        for i in range(100):
            log.append(b"v%03d" % i)
            log.roll()
        assert len(log.segments) == 101


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_standalone_log_bounds_its_open_files(log_dir: Path) -> None:
    _hundred_segments(log_dir)
    before = _open_fds()
    log = logstore.Log.open(log_dir, logstore.LogConfig(fsync="never"), max_open_files=8)
    try:
        assert [r.value for r in log.scan()] == [b"v%03d" % i for i in range(100)]
        assert _open_fds() - before <= 8 + 1  # the handles, plus the lock file
        # reads after eviction reopen the files and still give the right records
        for offset in (0, 57, 3, 99, 0):
            assert [(r.offset, r.value) for r in log.read(offset, max_records=1)] == [
                (offset, b"v%03d" % offset)
            ]
        assert log.offset_for_timestamp(0) == 0
        assert log.append(b"new") == 100
        assert [r.value for r in log.scan(98)] == [b"v098", b"v099", b"new"]
        assert _open_fds() - before <= 8 + 1
    finally:
        log.close()
    assert _open_fds() == before


def test_standalone_log_is_bounded_by_default(log_dir: Path) -> None:
    _hundred_segments(log_dir)
    with logstore.Log.open(log_dir, logstore.LogConfig(fsync="never")) as log:
        assert [r.offset for r in log.scan()] == list(range(100))
        handles = log._local.segments._handles
        assert handles is not None and handles.limit == 1024  # Broker.open's default
        assert len(handles) == 100  # each sealed segment read counts (the empty active: unopened)


def test_atomic_write_gives_the_new_file_its_mode_even_over_a_leftover(tmp_path) -> None:
    from logstore._fs import ATOMIC_TMP_SUFFIX, atomic_write

    target = str(tmp_path / "users")
    leftover = target + ATOMIC_TMP_SUFFIX
    with open(leftover, "wb") as f:  # a crash's leftover, readable by everyone
        f.write(b"old")
    os.chmod(leftover, 0o644)
    atomic_write(target, b"secret\n", mode=0o600)
    with open(target, "rb") as f:
        assert (os.stat(target).st_mode & 0o777, f.read()) == (0o600, b"secret\n")
    assert not os.path.exists(leftover)
