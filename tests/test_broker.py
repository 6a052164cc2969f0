"""``Broker``: topics created and deleted, crashes inside them, the offsets topic's config."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig

from .conftest import FakeClock, run_python
from .helpers_broker import CONFIG, METADATA, OFFSETS_DIR, drain, open_broker, triples


def test_topic_errors(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        with pytest.raises(logstore.TopicExistsError):
            broker.create_topic("t", 2)
        with pytest.raises(logstore.TopicExistsError):
            broker.create_topic("t", 5)
        with pytest.raises(logstore.TopicExistsError):
            broker.create_topic("__consumer_offsets")
        assert broker.topic("t").partitions == 2
        with pytest.raises(logstore.UnknownTopicError):
            broker.topic("missing")
        with pytest.raises(logstore.UnknownTopicError):
            broker.produce("missing", b"x")
        with pytest.raises(logstore.UnknownTopicError):
            broker.produce_many("missing", [b"x"])
        with pytest.raises(logstore.UnknownTopicError):
            broker.consumer("g", ["missing"])
        with pytest.raises(logstore.UnknownTopicError):
            broker.delete_topic("missing")
        assert not (tmp_path / "root" / "missing-0").exists()


def test_delete_topic_removes_files_metadata_and_offsets(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        broker.create_topic("t", 3, {"segment_messages": 2})
        broker.create_topic("keep", 1)
        for i in range(12):
            broker.produce("t", b"v%d" % i, partition=i % 3)
        broker.produce("keep", b"k")
        with broker.consumer("g", ["t", "keep"]) as c:
            assert len(drain(c)) == 13
            c.commit()
        assert broker.committed_offsets() == {
            ("g", "keep", 0): 1,
            ("g", "t", 0): 4,
            ("g", "t", 1): 4,
            ("g", "t", 2): 4,
        }
        broker.delete_topic("t")
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [OFFSETS_DIR, "keep-0"]
        assert "t" not in json.loads((root / METADATA).read_text())["topics"]
        assert broker.topics() == ["keep"]
        assert broker.committed_offsets() == {("g", "keep", 0): 1}
        with pytest.raises(logstore.UnknownTopicError):
            broker.topic("t")
        with pytest.raises(logstore.UnknownTopicError):
            broker.produce("t", b"x")

    with open_broker(root, clock) as broker:  # the deletion and the forgotten offsets last
        assert broker.topics() == ["keep"]
        assert broker.committed_offsets() == {("g", "keep", 0): 1}
        fresh = broker.create_topic("t", 2)
        assert fresh.partition(0).config == CONFIG  # the old override is gone
        assert [fresh.partition(p).end_offset for p in range(2)] == [0, 0]
        assert broker.produce("t", b"new", partition=1) == (1, 0)
        with broker.consumer("g", "t") as c:
            assert c.committed("t", 0) is None
            assert c.committed("t", 1) is None
            assert triples(drain(c)) == [(1, 0, b"new")]


CHILD_DELETE_CRASH = """
import os, signal, sys
import logstore
broker = logstore.Broker.open(sys.argv[1], logstore.LogConfig(fsync="never"), maintenance_interval_ms=None)
broker.create_topic("t", 2, {"segment_messages": 3})
broker.create_topic("keep")
for i in range(10):
    broker.produce("t", b"v%d" % i, partition=i % 2)
c = broker.consumer("g", "t")
c.poll()
c.commit()
real_rename = os.rename
def rename(src, dst, *args, **kwargs):  # the process dies as the first directory is renamed
    if str(dst).endswith("-delete"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst, *args, **kwargs)
os.rename = rename
broker.delete_topic("t")
"""


def test_delete_topic_interrupted_by_a_crash_stays_deleted(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A crash inside ``delete_topic`` (the metadata already marks the topic as being
    deleted) is finished by the next open: the topic, its files and offsets are gone."""
    root = tmp_path / "root"
    done = run_python(CHILD_DELETE_CRASH, str(root), timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert json.loads((root / METADATA).read_text())["topics"]["t"]["deleting"] is True
    with open_broker(root, clock) as broker:
        assert broker.topics() == ["keep"]
        assert broker.committed_offsets() == {}
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [OFFSETS_DIR, "keep-0"]


def test_failed_create_topic_leaves_no_partition_open(tmp_path: Path, clock: FakeClock) -> None:
    """A partition directory held by someone else makes ``create_topic`` fail; once it
    is free, the topic can be created (nothing of the failed attempt stays locked)."""
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        holder = logstore.Log.open(root / "t-1", CONFIG)
        try:
            with pytest.raises(logstore.LogLockedError):
                broker.create_topic("t", 2)
        finally:
            holder.close()
        assert broker.topics() == []
        topic = broker.create_topic("t", 2)
        assert topic.partitions == 2
        assert broker.produce("t", b"v", partition=0) == (0, 0)
    with open_broker(root, clock) as broker:
        assert broker.topics() == ["t"]


def test_offsets_of_a_topic_the_metadata_lost_are_forgotten_at_open(tmp_path: Path) -> None:
    """A crash after an interrupted delete was finished in the metadata but before its
    offsets were tombstoned: the next open forgets them, so a new topic of the same
    name starts with no committed offsets."""
    import json
    import shutil

    root = tmp_path / "root"
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 1)
        broker.produce_many("t", [b"a", b"b", b"c"])
        with broker.consumer("g", ["t"], start="earliest") as consumer:
            assert len(consumer.poll(max_records=10, timeout_ms=0)) == 3
            consumer.commit()
    meta_path = root / "logstore-topics.json"
    meta = json.loads(meta_path.read_text())
    del meta["topics"]["t"]
    meta_path.write_text(json.dumps(meta))
    shutil.rmtree(root / "t-0")
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 1)
        broker.produce("t", b"new")
        with broker.consumer("g", ["t"], start="earliest") as consumer:
            assert [i.record.value for i in consumer.poll(max_records=10, timeout_ms=0)] == [b"new"]


def test_a_broker_default_level_does_not_break_the_offsets_topic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = LogConfig(compression="zstd", compression_level=19, fsync="never")
    with logstore.Broker.open(tmp_path / "root", config, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 1)
        broker.produce("t", b"v")
        with broker.consumer("g", "t") as c:
            assert [r.record.value for r in c.poll()] == [b"v"]
            c.commit()
            assert c.committed("t", 0) == 1


def test_group_offsets_give_back_the_metadata_committed(tmp_path: Path, clock: FakeClock) -> None:
    with open_broker(tmp_path / "root", clock) as broker:
        broker.create_topic("t", 2)
        broker.commit_offsets("g", {("t", 0): logstore.OffsetAndMetadata(5, "note"), ("t", 1): 7})
        broker.commit_offsets("h", {("t", 0): 1})
        assert broker.group_offsets("g") == {
            ("t", 0): logstore.OffsetAndMetadata(5, "note"),
            ("t", 1): logstore.OffsetAndMetadata(7, ""),
        }
        assert broker.group_offsets("none") == {}
    with open_broker(tmp_path / "root", clock) as broker:
        assert broker.group_offsets("g")[("t", 0)] == logstore.OffsetAndMetadata(5, "note")


def test_alter_topic_applies_to_open_partitions_and_lasts(tmp_path: Path, clock: FakeClock) -> None:
    """New settings take effect on the open partitions at once (a roll every 2 records
    from now on), are the topic's own, survive a reopen; a reset follows the default."""
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        broker.create_topic("t", 2, {"retention_ms": 5000})
        for i in range(3):
            broker.produce("t", b"a%d" % i, partition=0)
        config = broker.alter_topic("t", {"segment_messages": 2, "max_message_bytes": 4096})
        assert (config.segment_messages, config.max_message_bytes, config.retention_ms) == (
            2,
            4096,
            5000,
        )
        assert broker.topic("t").config == config
        assert [log.config for log in broker.topic("t").logs] == [config, config]
        assert broker.topic_overrides("t") == {
            "retention_ms": 5000,
            "segment_messages": 2,
            "max_message_bytes": 4096,
        }
        for i in range(4):
            broker.produce("t", b"b%d" % i, key=b"k%d" % i, partition=0)
        assert [s.base_offset for s in broker.topic("t").partition(0).segments] == [0, 3, 5]
    with open_broker(root, clock) as broker:
        assert broker.topic("t").partition(0).config.segment_messages == 2
        assert broker.topic_overrides("t")["max_message_bytes"] == 4096
        config = broker.alter_topic("t", {"retention_ms": None}, reset=["segment_messages"])
        assert config.segment_messages is None and config.retention_ms is None
        assert broker.topic_overrides("t") == {"retention_ms": None, "max_message_bytes": 4096}
        values = [r.value for r in broker.topic("t").partition(0).read(0, max_records=100)]
        assert values == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2", b"b3"]
    meta = json.loads((root / METADATA).read_text())["topics"]["t"]
    assert meta == {"partitions": 2, "config": {"retention_ms": None, "max_message_bytes": 4096}}


def test_alter_topic_refuses_before_changing_anything(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        broker.create_topic("t", 1, {"segment_messages": 3})
        before = (root / METADATA).read_bytes()
        log = broker.topic("t").partition(0)
        with pytest.raises(logstore.ConfigError, match="segment_bytes must be an integer >= 64"):
            broker.alter_topic("t", {"retention_ms": 10, "segment_bytes": 1})
        with pytest.raises(logstore.ConfigError, match=r"unknown LogConfig field.*retention_hours"):
            broker.alter_topic("t", {"retention_hours": 1})
        with pytest.raises(logstore.ConfigError, match=r"unknown LogConfig field.*nope"):
            broker.alter_topic("t", reset=["nope"])
        with pytest.raises(logstore.ConfigError, match="segment_messages: both changed and reset"):
            broker.alter_topic("t", {"segment_messages": 4}, reset=["segment_messages"])
        with pytest.raises(logstore.UnknownTopicError):
            broker.alter_topic("missing", {"retention_ms": 10})
        with pytest.raises(logstore.InvalidTopicName, match="internal"):
            broker.alter_topic("__consumer_offsets", {"retention_ms": 10})
        assert broker.alter_topic("t", {"retention_ms": 10}, dry_run=True).retention_ms == 10
        assert (root / METADATA).read_bytes() == before
        assert broker.topic("t").partition(0) is log and log.config.retention_ms is None
        assert broker.topic_overrides("t") == {"segment_messages": 3}


CHILD_ALTER_CRASH = """
import os, signal, sys
import logstore
from logstore.log import Log
broker = logstore.Broker.open(sys.argv[1], logstore.LogConfig(fsync="always"), maintenance_interval_ms=None)
broker.create_topic("t", 1)
broker.produce("t", b"kept")
def close(self):  # the process dies once the metadata is written, as the partitions close
    os.kill(os.getpid(), signal.SIGKILL)
Log.close = close
broker.alter_topic("t", {"segment_messages": 7})
"""


def test_alter_topic_interrupted_by_a_crash_keeps_the_new_settings(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The metadata is durable before any partition is touched: a crash while the
    partitions are reopened leaves the new settings, and the records, for the next open."""
    root = tmp_path / "root"
    done = run_python(CHILD_ALTER_CRASH, str(root), timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with open_broker(root, clock) as broker:
        assert broker.topic("t").partition(0).config.segment_messages == 7
        assert [r.value for r in broker.topic("t").partition(0).read(0)] == [b"kept"]
