"""Kafka's ``DumpLogSegments --offsets-decoder`` decodes the commits logstore writes.

The decoder is Kafka's own group-coordinator serde, the one its broker loads
``__consumer_offsets`` with: every commit must come out as an OffsetCommitKey
(record type 1) and an OffsetCommitValue version 3 equal to what was
committed, and a forgotten topic's entries as tombstones (``<DELETE>``).
Records it cannot decode are printed as "Error at offset N, skipping." or
"Unknown record type T at offset N, skipping.", never as an exit status, so
the output is parsed.

Runs the tool through the harness's ``kafka_tools`` fixture (``conftest.py``):
a Kafka main class and its arguments in, ``(returncode, stdout, stderr)`` out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import logstore
from logstore import Message, _offsets

from ..conftest import FakeClock
from . import dump
from .harness import DUMP_LOG_SEGMENTS, KafkaTools

#: A record line; a record the decoder skips has a key (the reason) and no payload.
_RECORD = re.compile(
    r"^\| offset: (?P<offset>\d+) .*? key: (?P<key>.*?)(?: payload: (?P<value>.*))?$"
)


def decoded(kafka_tools: KafkaTools, root: Path) -> list[tuple[int, Any, Any]]:
    """``(offset, key, value)`` of each record of the root's offsets segments, as Kafka decodes
    them: JSON, ``"<DELETE>"`` for a tombstone, ``None`` for a record it skipped."""
    segments = sorted((root / f"{_offsets.OFFSETS_TOPIC}-0").glob("*.log"))
    code, out, err = kafka_tools(
        DUMP_LOG_SEGMENTS, "--offsets-decoder", "--files", ",".join(map(str, segments))
    )
    assert code == 0, err
    _, others = dump.non_consecutive(err)  # a compacted log has gaps; nothing else is allowed
    assert others == []
    assert "Error at offset" not in out
    assert "invalid bytes" not in out
    records = []
    for line in out.splitlines():
        if line.startswith("baseOffset: "):
            assert "isvalid: true" in line, line
        elif line.startswith("|"):
            match = _RECORD.match(line)
            assert match is not None, line
            key, value = match["key"], match["value"]
            if value is not None and value != "<DELETE>":
                value = json.loads(value)
            records.append(
                (int(match["offset"]), json.loads(key) if key.startswith("{") else key, value)
            )
    return records


def as_kafka_prints(key: bytes, value: bytes | None) -> tuple[Any, Any]:
    """A record of ours as the decoder prints it, from our own reading of its bytes."""
    entry = _offsets.decode_key(key)
    assert entry is not None
    group, topic, partition = entry
    printed_key = {"type": "1", "data": {"group": group, "topic": topic, "partition": partition}}
    if value is None:
        return printed_key, "<DELETE>"
    commit = _offsets.decode_value(key, value)
    assert commit is not None
    data = {
        "offset": commit.offset,
        "leaderEpoch": -1,
        "metadata": "",
        "commitTimestamp": commit.commit_ms,
    }
    return printed_key, {"version": "3", "data": data}


def stored(broker: logstore.Broker) -> list[tuple[int, Any, Any]]:
    log = broker.topic(_offsets.OFFSETS_TOPIC).partition(0)
    return [
        (r.offset, *as_kafka_prints(r.key, r.value))
        for r in log.read(log.start_offset, max_records=100_000)
        if r.key is not None
    ]


def test_kafka_decodes_every_commit_and_tombstone(
    kafka_tools: KafkaTools, tmp_path: Path, clock: FakeClock
) -> None:
    with logstore.Broker.open(tmp_path, clock=clock, maintenance_interval_ms=None) as broker:
        broker.create_topic("access-log", 3)
        broker.create_topic("gone")
        keys = [b"web-%03d.example.com" % i for i in range(30)]
        broker.produce_many("access-log", [Message(b"GET /", key=k) for k in keys])
        broker.produce("gone", b"x")
        for group in ("archiver", "indexer"):
            with broker.consumer(group, ["access-log", "gone"]) as consumer:
                consumer.poll(max_records=10)
                consumer.commit()
                clock.advance(1000)
                consumer.poll(max_records=100)
                consumer.commit()
        broker.delete_topic("gone")
        ours = stored(broker)
    assert sum(value == "<DELETE>" for _, _, value in ours) == 2
    assert len(ours) == 2 * 2 * 4 + 2
    assert decoded(kafka_tools, tmp_path) == ours


def test_kafka_decodes_the_commits_a_json_root_moved_into_its_format(
    kafka_tools: KafkaTools, tmp_path: Path, clock: FakeClock
) -> None:
    """The JSON records of an earlier release stay until compaction removes them;
    Kafka skips them as a record type it does not know (0x5b22, the bytes '["')."""
    with logstore.Broker.open(tmp_path, clock=clock, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 2)
        broker.produce_many("t", [b"a", b"b", b"c"], partition=0)
    path = tmp_path / f"{_offsets.OFFSETS_TOPIC}-0"
    config = logstore.LogConfig(cleanup_policy="compact")
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        log.append_many(
            [
                Message(b'{"offset":3,"commit_ms":1000}', key=b'["g","t",0]'),
                Message(b'{"offset":0,"commit_ms":1000}', key=b'["g","t",1]'),
            ]
        )
    with logstore.Broker.open(tmp_path, clock=clock, maintenance_interval_ms=None) as broker:
        assert broker.committed_offsets() == {("g", "t", 0): 3, ("g", "t", 1): 0}
        log = broker.topic(_offsets.OFFSETS_TOPIC).partition(0)
        records = log.read(0, max_records=100)
    ours = [
        (r.offset, *as_kafka_prints(r.key, r.value))
        for r in records
        if r.key is not None and not r.key.startswith(b"[")
    ]
    skipped = [
        (r.offset, f"Unknown record type 23330 at offset {r.offset}, skipping.", None)
        for r in records
        if r.key is not None and r.key.startswith(b"[")
    ]
    assert len(ours) == 2 and len(skipped) == 4  # two JSON commits, their two tombstones
    assert decoded(kafka_tools, tmp_path) == sorted(ours + skipped)
