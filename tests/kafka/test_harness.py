"""The harness itself: the jar cache, skip or fail, and the broker's stop and start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from . import conftest, harness


def test_a_stamped_cache_is_used_without_maven(kafka_jars: Path, tmp_path: Path) -> None:
    """Offline with the cache present: no Maven call at all (this mvn would fail)."""
    mvn = tmp_path / "mvn"
    mvn.write_text("#!/bin/sh\necho called >&2\nexit 1\n")
    mvn.chmod(0o755)
    assert harness.ensure_jars(mvn=str(mvn)) == kafka_jars
    assert any(kafka_jars.glob("kafka_2.13-*.jar"))
    assert any(kafka_jars.glob("log4j-slf4j2-impl-*.jar"))


def test_a_failed_fetch_says_why_and_leaves_no_stamp(tmp_path: Path) -> None:
    mvn = tmp_path / "mvn"
    mvn.write_text("#!/bin/sh\necho 'Could not resolve dependencies' >&2\nexit 1\n")
    mvn.chmod(0o755)
    with pytest.raises(harness.KafkaUnavailable) as caught:
        harness.ensure_jars(root=tmp_path / "cache", version="4.4.0", mvn=str(mvn))
    assert str(caught.value) == (
        "fetching Kafka 4.4.0's jars failed (mvn exit 1):\nCould not resolve dependencies"
    )
    assert not (tmp_path / "cache" / "4.4.0" / "stamp").exists()


def test_no_cache_and_no_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(harness.KafkaUnavailable, match=r"^no mvn on PATH to fetch Kafka 4\.4\.0"):
        harness.ensure_jars(root=tmp_path / "cache", version="4.4.0")


def test_the_cache_location_and_version_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGSTORE_KAFKA_CACHE", str(tmp_path / "jars"))
    monkeypatch.setenv("LOGSTORE_KAFKA_VERSION", "4.3.1")
    assert (harness.cache_root(), harness.kafka_version()) == (tmp_path / "jars", "4.3.1")


@pytest.mark.parametrize(("setting", "outcome"), [("required", "fail"), ("", "skip")])
def test_unavailable_fails_only_where_kafka_is_required(
    setting: str, outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGSTORE_KAFKA", setting)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected) as caught:
        conftest.unavailable("no java on PATH")
    prefix = "LOGSTORE_KAFKA=required, but " if outcome == "fail" else ""
    assert str(caught.value.msg) == prefix + "no java on PATH"


def records(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes, list]]:
    """The first ``count`` records of partition 0, read from the earliest offset."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=30_000,  # only if fewer than ``count`` come
    )
    try:
        got = []
        for message in consumer:
            got.append((message.offset, message.key, message.value, message.headers))
            if len(got) == count:
                break
        return got
    finally:
        consumer.close()


def test_the_broker_serves_and_survives_a_restart(kafka_broker: harness.KafkaBroker) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics([NewTopic("harness-smoke", 1, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    for i in range(3):
        producer.send("harness-smoke", key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"x")])
    producer.flush()
    producer.close()
    sent = [(i, b"k%d" % i, b"v%d" % i, [("h", b"x")]) for i in range(3)]
    assert records(kafka_broker.bootstrap, "harness-smoke", 3) == sent

    kafka_broker.stop()
    try:
        partition = kafka_broker.log_dir / "harness-smoke-0"
        assert (kafka_broker.log_dir / ".kafka_cleanshutdown").is_file()
        assert (partition / "partition.metadata").is_file()
        assert sorted(p.name for p in partition.glob("*.log")) == ["00000000000000000000.log"]
    finally:
        kafka_broker.start()
    assert records(kafka_broker.bootstrap, "harness-smoke", 3) == sent
    assert "ERROR" not in kafka_broker.log()
    assert os.path.isdir(kafka_broker.metadata_dir)
