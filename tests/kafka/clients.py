"""A real Kafka client (confluent-kafka, i.e. librdkafka) against the test broker.

What the tests that put logstore's segments under a broker, and read a
broker's segments with logstore, need of a client: topics created through
the admin API, producing with delivery reports (the offsets the broker gave),
consuming a partition from an offset to its end, ``offsetsForTimes`` and the
watermarks (ListOffsets earliest and latest), and the files of a stopped
broker's partition moved about. Knows nothing of logstore.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
admin_module = pytest.importorskip("confluent_kafka.admin")

Header = tuple[str, bytes | None]
#: librdkafka's timestamp type of a record a producer timestamped (CreateTime).
CREATE_TIME = confluent_kafka.TIMESTAMP_CREATE_TIME


class Got(NamedTuple):
    """A record as a consumer saw it: what logstore's ``Record`` says, in the same order."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


def create_topic(bootstrap: str, name: str, *, config: dict[str, str] | None = None) -> None:
    """One partition, one replica, through the admin API; waits until it is done."""
    admin = admin_module.AdminClient({"bootstrap.servers": bootstrap})
    topic = admin_module.NewTopic(name, num_partitions=1, replication_factor=1, config=config or {})
    for future in admin.create_topics([topic], operation_timeout=30).values():
        future.result(60)


def alter_config(bootstrap: str, kind: str, name: str, settings: dict[str, str]) -> None:
    """Set dynamic settings of a ``"topic"`` or a ``"broker"`` (by id); kept in the
    metadata log, so they outlive a restart."""
    admin = admin_module.AdminClient({"bootstrap.servers": bootstrap})
    entries = [
        admin_module.ConfigEntry(k, v, incremental_operation=admin_module.AlterConfigOpType.SET)
        for k, v in settings.items()
    ]
    resource = admin_module.ConfigResource(
        admin_module.ResourceType[kind.upper()], name, incremental_configs=entries
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(60)


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None, Sequence[Header], int]],
    **settings: Any,
) -> list[int]:
    """Send ``(key, value, headers, timestamp)`` each; return the offsets the broker acknowledged."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all", **settings}
    )
    offsets: list[int | None] = []

    def delivered(i: int):
        def report(err: Any, msg: Any) -> None:
            assert err is None, f"delivery failed: {err}"
            offsets[i] = msg.offset()

        return report

    for i, (key, value, headers, ts) in enumerate(messages):
        offsets.append(None)
        producer.produce(
            topic,
            key=key,
            value=value,
            headers=list(headers) or None,
            timestamp=ts,
            partition=0,
            on_delivery=delivered(i),
        )
        producer.poll(0)
    assert producer.flush(60) == 0, "messages left unsent"
    assert None not in offsets
    return [o for o in offsets if o is not None]


def transactional_producer(bootstrap: str, transactional_id: str) -> Any:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5}
    )
    producer.init_transactions(60)
    return producer


def _got(msg: Any) -> Got:
    kind, ts = msg.timestamp()
    assert kind == CREATE_TIME, f"timestamp type {kind} at offset {msg.offset()}"
    return Got(msg.offset(), ts, msg.key(), msg.value(), tuple(msg.headers() or ()))


def consume(
    bootstrap: str,
    topic: str,
    *,
    start: int | None = None,
    isolation: str = "read_committed",
    limit: int | None = None,
    timeout: float = 60,
) -> list[Got]:
    """Records of partition 0 from ``start`` (the earliest if ``None``) to its end (or ``limit``).

    The end is the high watermark (or the last stable offset under
    ``read_committed``) when the consumer first asks: reached when the
    partition's end-of-partition event comes.
    """
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"logstore-tests-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )
    offset = confluent_kafka.OFFSET_BEGINNING if start is None else start
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, offset)])
    out: list[Got] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(f"consumer error: {msg.error()}")
            out.append(_got(msg))
            if limit is not None and len(out) >= limit:
                return out
        raise AssertionError(f"{topic}: no end of partition within {timeout}s, {len(out)} read")
    finally:
        consumer.close()


def offsets_for_times(bootstrap: str, topic: str, timestamps: Sequence[int]) -> list[int]:
    """``offsetsForTimes`` (ListOffsets by timestamp) for each; -1 where no record is that late."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "times"})
    try:
        asked = [confluent_kafka.TopicPartition(topic, 0, ts) for ts in timestamps]
        # One partition per request: the answers are per partition.
        return [consumer.offsets_for_times([tp], timeout=30)[0].offset for tp in asked]
    finally:
        consumer.close()


#: Errors a broker answers while it is still taking up its partitions after a start.
_NOT_YET = ("NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PART")


def watermarks(bootstrap: str, topic: str, *, timeout: float = 60) -> tuple[int, int]:
    """(log start offset, log end offset): ListOffsets earliest and latest.

    A broker just started answers "not leader" until it has loaded its
    partitions; that is waited out (up to ``timeout`` s), any other error raises.
    """
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "marks"})
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    confluent_kafka.TopicPartition(topic, 0), timeout=30, cached=False
                )
                return int(low), int(high)
            except confluent_kafka.KafkaException as exc:
                error = exc.args[0]
                if error.name() not in _NOT_YET or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


#: What a partition directory of Kafka's holds besides its segments, kept or dropped.
KAFKA_KEPT = ("partition.metadata",)


def replace_segments(partition: Path, ours: Path) -> list[str]:
    """Swap a stopped broker's partition files for logstore's segments; return the names copied.

    Keeps Kafka's ``partition.metadata`` (the topic id: without it the log is
    stray), drops everything else (its empty segment, producer snapshots,
    ``leader-epoch-checkpoint``), and copies logstore's ``.log``, ``.index``
    and ``.timeindex`` files.
    """
    for path in partition.iterdir():
        if path.name not in KAFKA_KEPT:
            path.unlink()
    copied = []
    for path in sorted(ours.iterdir()):
        if path.suffix in (".log", ".index", ".timeindex"):
            shutil.copy2(path, partition / path.name)
            copied.append(path.name)
    return copied


def read_checkpoint(path: Path) -> dict[tuple[str, int], int]:
    """A root checkpoint file of Kafka's (version 0): (topic, partition) -> offset."""
    lines = path.read_text().splitlines()
    assert lines[0] == "0" and int(lines[1]) == len(lines) - 2, path
    return {(t, int(p)): int(o) for t, p, o in (line.split() for line in lines[2:])}


def write_checkpoint(path: Path, entries: dict[tuple[str, int], int]) -> None:
    body = "".join(f"{t} {p} {o}\n" for (t, p), o in sorted(entries.items()))
    path.write_text(f"0\n{len(entries)}\n{body}")
