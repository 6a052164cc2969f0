"""``topicmeta``: a broker root's layout and metadata file, read back on reopen."""

from __future__ import annotations

import json
from pathlib import Path

import logstore

from .conftest import FakeClock
from .helpers_broker import CONFIG, METADATA, OFFSETS_DIR, open_broker


# ---------------------------------------------------------------- 1. layout and metadata
def test_layout_metadata_and_reopen(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "root"
    with open_broker(root, clock) as broker:
        t = broker.create_topic("t", 3, {"segment_bytes": 4096})
        broker.create_topic("u", 2, logstore.LogConfig(fsync="never", segment_messages=7))
        broker.create_topic("v")
        assert (t.name, t.partitions) == ("t", 3)
        dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
        assert dirs == [OFFSETS_DIR, "t-0", "t-1", "t-2", "u-0", "u-1", "v-0"]
        assert broker.topics() == ["t", "u", "v"]
        assert broker.topics(include_internal=True) == ["__consumer_offsets", "t", "u", "v"]
        meta = json.loads((root / METADATA).read_text())["topics"]
        assert meta["t"] == {"partitions": 3, "config": {"segment_bytes": 4096}}
        assert meta["u"] == {"partitions": 2, "config": {"segment_messages": 7}}
        assert meta["v"] == {"partitions": 1, "config": {}}
        assert meta["__consumer_offsets"]["partitions"] == 1
        assert broker.produce("t", b"x", partition=2) == (2, 0)

    with open_broker(root, clock) as broker:
        assert broker.topics() == ["t", "u", "v"]
        assert broker.topics(include_internal=True) == ["__consumer_offsets", "t", "u", "v"]
        t, u, v = broker.topic("t"), broker.topic("u"), broker.topic("v")
        assert (t.partitions, u.partitions, v.partitions) == (3, 2, 1)
        assert [t.partition(p).config.segment_bytes for p in range(3)] == [4096] * 3
        assert [u.partition(p).config.segment_messages for p in range(2)] == [7, 7]
        assert u.partition(0).config.segment_bytes == CONFIG.segment_bytes
        assert v.partition(0).config == CONFIG
        assert [r.value for r in t.partition(2).scan()] == [b"x"]
