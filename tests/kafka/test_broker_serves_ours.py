"""A Kafka broker serves segments logstore wrote, to a real client (librdkafka).

A topic is created through the admin API; with the broker stopped, its
partition's files are replaced with segments logstore wrote (Kafka's
``partition.metadata`` kept); the broker starts again and a consumer reads
every record from the earliest offset, from sampled offsets and by
timestamp (``offsetsForTimes``), each equal to what logstore holds: offset,
timestamp, key, value and headers. Once with Kafka's clean-shutdown marker
(``.kafka_cleanshutdown`` in the log dir root) kept, so the broker trusts
our indexes, and once without it and with the partition's recovery point
reset to 0 in the root's ``recovery-point-offset-checkpoint``, so it
recovers (re-validates and re-indexes) every segment. Either way: no
warning about the partition in the broker's log (no truncation, not marked
stray) and ListOffsets says the log start and end logstore says.

A compacted topic logstore compacted (tombstones, emptied batches, gaps) is
then compacted again by Kafka's own cleaner: the latest value of every key
stays what logstore had.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, Message

from . import clients, scenarios
from .harness import KafkaBroker

CLEAN_SHUTDOWN = ".kafka_cleanshutdown"  # Kafka's marker in the log dir root
RECOVERY_POINTS = "recovery-point-offset-checkpoint"


def expected(log: logstore.Log) -> list[clients.Got]:
    return [
        clients.Got(r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
        for r in log.read(log.start_offset, max_records=1 << 30)
    ]


def write_mixed(path: Path, rng: random.Random) -> None:
    """One partition, every codec in turn (a reopen per codec), many small segments."""
    for codec in scenarios.codecs():
        config = LogConfig(compression=codec, segment_bytes=8000, index_interval_bytes=500)
        with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
            scenarios.append(log, [], rng, 120)


@pytest.fixture
def stopped(kafka_broker: KafkaBroker) -> Iterator[KafkaBroker]:
    """The broker, stopped; started again after the test whatever happens."""
    kafka_broker.stop()
    try:
        yield kafka_broker
    finally:
        if kafka_broker.process is None:
            kafka_broker.start()


def swap_in(broker: KafkaBroker, topic: str, ours: Path, *, clean: bool) -> str:
    """Our segments into the stopped broker's partition; start it; what it logged meanwhile."""
    copied = clients.replace_segments(broker.log_dir / f"{topic}-0", ours)
    assert any(name.endswith(".log") for name in copied)
    if not clean:
        (broker.log_dir / CLEAN_SHUTDOWN).unlink()
        points = broker.log_dir / RECOVERY_POINTS
        entries = clients.read_checkpoint(points)
        entries[(topic, 0)] = 0
        clients.write_checkpoint(points, entries)
    else:
        assert (broker.log_dir / CLEAN_SHUTDOWN).is_file()
    before = len(broker.log())
    broker.start()
    return broker.log()[before:]


def assert_quiet(log_text: str, topic: str) -> None:
    """No warning or error about ``topic``; nothing truncated or marked stray anywhere."""
    lines = [line for line in log_text.splitlines() if "Kafka Server started" not in line]
    about = [line for line in lines if topic in line or "stray" in line.lower()]
    assert about == [], "\n".join(about)
    assert not [line for line in lines if "truncat" in line.lower()], log_text


def sampled_times(records: list[clients.Got], rng: random.Random) -> list[int]:
    times = sorted({r.timestamp for r in records})
    picks = [*rng.sample(times, 12), times[0] - 1, times[-1], times[-1] + 1]
    return picks + [t + 1 for t in picks[:6]]


@pytest.mark.parametrize("clean", [True, False], ids=["clean-shutdown", "recovered"])
def test_kafka_serves_our_segments(
    kafka_broker: KafkaBroker, tmp_path: Path, clean: bool, request: pytest.FixtureRequest
) -> None:
    topic = f"ours-{'clean' if clean else 'recovered'}"
    clients.create_topic(kafka_broker.bootstrap, topic)
    ours = tmp_path / f"{topic}-0"
    rng = random.Random(topic)
    write_mixed(ours, rng)
    with logstore.Log.open(ours, maintenance_interval_ms=None) as log:
        want = expected(log)
        start, end = log.start_offset, log.end_offset
        segments = len(log.segments)
        times = sampled_times(want, rng)
        by_time = [log.offset_for_timestamp(t) for t in times]
    assert segments >= 5

    broker = request.getfixturevalue("stopped")
    logged = swap_in(broker, topic, ours, clean=clean)
    assert_quiet(logged, topic)
    bootstrap = broker.bootstrap
    assert clients.watermarks(bootstrap, topic) == (start, end)
    assert clients.consume(bootstrap, topic) == want
    for i in sorted(rng.sample(range(len(want)), 8)):
        assert clients.consume(bootstrap, topic, start=want[i].offset, limit=3) == want[i : i + 3]
    answers = clients.offsets_for_times(bootstrap, topic, times)
    assert answers == [-1 if o is None else o for o in by_time]


def test_kafka_compacts_what_logstore_compacted(
    kafka_broker: KafkaBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    topic = "ours-compacted"
    bootstrap = kafka_broker.bootstrap
    settings = {
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "1",  # not yet: first served
        "segment.ms": "100",
        "delete.retention.ms": "100",
    }
    clients.create_topic(bootstrap, topic, config=settings)
    clients.alter_config(bootstrap, "broker", "1", {"log.cleaner.backoff.ms": "200"})
    ours = tmp_path / f"{topic}-0"
    rng = random.Random(topic)
    keys = [f"host-{i:02d}".encode() for i in range(40)]
    config = LogConfig(
        cleanup_policy="compact",
        segment_bytes=6000,
        index_interval_bytes=400,
        delete_retention_ms=0,
        compression="lz4" if "lz4" in scenarios.codecs() else "gzip",
    )
    model: list[tuple[int, Message]] = []
    with logstore.Log.open(ours, config, maintenance_interval_ms=None) as log:
        scenarios.append(log, model, rng, 400, keys=keys)
        doomed = keys[:5]  # tombstones: these keys end deleted
        tombs = [Message(None, key=k, timestamp=scenarios.BASE_TS + log.end_offset) for k in doomed]
        model.extend(zip(log.append_many(tombs), tombs))
        log.roll()
        log.compact()
        scenarios.append(log, model, rng, 200, keys=keys[10:])  # dirty again: Kafka's to clean
        log.roll()
        want = expected(log)
        end = log.end_offset
    latest = {m.key: m.value for _, m in model}
    latest_offset = {m.key: o for o, m in model}
    live = {k: v for k, v in latest.items() if v is not None}
    assert {r.key: r.value for r in want if r.value is not None} != live  # still dirty

    broker = request.getfixturevalue("stopped")
    assert_quiet(swap_in(broker, topic, ours, clean=True), topic)
    # Served as logstore wrote it, unless Kafka's cleaner got there already:
    # every record one of ours, each key's latest value among them.
    by_offset = {r.offset: r for r in want}
    first = clients.consume(bootstrap, topic)
    assert all(by_offset[r.offset] == r for r in first)
    live_offsets = {o for k, o in latest_offset.items() if latest[k] is not None}
    assert live_offsets <= {r.offset for r in first}
    clients.alter_config(bootstrap, "topic", topic, {"min.cleanable.dirty.ratio": "0.01"})
    # A record of now rolls the active segment (our segments are older than
    # segment.ms): all of ours become cleanable.
    clients.produce(bootstrap, topic, [(b"roller", b"r", (), int(time.time() * 1000))])
    got: list[clients.Got] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = clients.consume(bootstrap, topic)
        seen = [r.key for r in got]
        if len(seen) == len(set(seen)):
            break  # every key once: Kafka's cleaner ran over our segments
        time.sleep(0.5)  # the cleaner's thread: nothing to wait on but its effect
    else:
        raise AssertionError(f"Kafka's cleaner did not compact {topic}: {len(got)} records")
    # Tombstones may stay (their delete horizon) but only for deleted keys.
    assert all(latest[r.key] is None for r in got if r.value is None)
    assert {r.key: r.value for r in got if r.key != b"roller" and r.value is not None} == live
    assert [r.offset for r in got][-1] == end
    assert_quiet(broker.log(), topic)
