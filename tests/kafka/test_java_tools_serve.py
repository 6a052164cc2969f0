"""Kafka's own command-line tools (Kafka 4.4's jars) against ``logstore serve``.

``kafka-topics`` creates, lists and describes a topic; ``kafka-console-producer``
sends keyed lines from stdin (``parse.key``); ``kafka-console-consumer`` reads
them back in a group, printing partition, offset and key;
``kafka-consumer-groups --describe`` gives the group's offsets and lag;
``kafka-configs`` alters and describes the topic's settings. Every output is
asserted exactly, and the root is read back with the embedded ``Broker`` once
the server closed. A JVM start costs a second or two: nine tool runs in all.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import logstore
from logstore.partitioner import partition_for

from .harness import KafkaTools, _die_with_parent

pytest.importorskip("kio")

TOPICS = "org.apache.kafka.tools.TopicCommand"
PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
CONFIGS = "org.apache.kafka.tools.ConfigCommand"  # kafka.admin.ConfigCommand before 4.x

TOPIC, GROUP = "java-tools", "java-group"
# Keys routed by the Java producer's murmur2 partitioner: both partitions get records.
FIRST = [
    ("alpha", "one"),
    ("epsilon", "two"),
    ("beta", "three"),
    ("zeta", "four"),
    ("alpha", "five"),
]
LATER = [("epsilon", "six"), ("zeta", "seven")]


def _run(tools: KafkaTools, main_class: str, *args: str, stdin: str | None = None) -> str:
    """A tool's stdout; a failure shows its stderr and the tools' log."""
    done = subprocess.run(
        tools.argv(main_class, *args),
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
        cwd=tools.work,
        preexec_fn=_die_with_parent,
    )
    log = tools.log_file.read_text() if tools.log_file.exists() else ""
    assert done.returncode == 0, f"{main_class} {args}: {done.stdout}{done.stderr}{log[-4000:]}"
    return done.stdout


def _produce(tools: KafkaTools, bootstrap: str, records: list[tuple[str, str]]) -> None:
    lines = "".join(f"{k}:{v}\n" for k, v in records)
    _run(
        tools,
        PRODUCER,
        *("--bootstrap-server", bootstrap, "--topic", TOPIC),
        *("--reader-property", "parse.key=true", "--reader-property", "key.separator=:"),
        *("--producer-property", "acks=all"),
        stdin=lines,
    )


def _placed(records: list[tuple[str, str]], start: dict[int, int]) -> list[str]:
    """The consumer's lines for ``records``: partition by murmur2, offsets from ``start``."""
    lines, next_offset = [], dict(start)
    for key, value in records:
        p = partition_for(key.encode(), 2)
        lines.append(f"Partition:{p}\tOffset:{next_offset[p]}\t{key}\t{value}")
        next_offset[p] += 1
    return lines


def test_kafka_tools_create_produce_consume_describe_and_configure(
    kafka_tools: KafkaTools, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    with logstore.serve(root, listen="127.0.0.1:0") as server:
        bootstrap = "{}:{}".format(*server.address)
        out = _run(
            kafka_tools,
            TOPICS,
            *("--bootstrap-server", bootstrap, "--create", "--topic", TOPIC),
            *("--partitions", "2", "--config", "retention.ms=3600000"),
        )
        assert out == f"Created topic {TOPIC}.\n"
        out = _run(kafka_tools, TOPICS, "--bootstrap-server", bootstrap, "--list")
        assert out == f"__consumer_offsets\n{TOPIC}\n"

        _produce(kafka_tools, bootstrap, FIRST)
        out = _run(
            kafka_tools,
            CONSUMER,
            *("--bootstrap-server", bootstrap, "--topic", TOPIC, "--group", GROUP),
            *("--from-beginning", "--max-messages", str(len(FIRST)), "--timeout-ms", "30000"),
            *("--formatter-property", "print.key=true"),
            *("--formatter-property", "print.partition=true"),
            *("--formatter-property", "print.offset=true"),
        )
        assert sorted(out.splitlines()) == sorted(_placed(FIRST, {0: 0, 1: 0}))
        counts = {p: sum(partition_for(k.encode(), 2) == p for k, _ in FIRST) for p in (0, 1)}
        assert counts == {0: 3, 1: 2}

        _produce(kafka_tools, bootstrap, LATER)  # both to partition 1: a lag of 2 there
        out = _run(
            kafka_tools, GROUPS, "--bootstrap-server", bootstrap, "--describe", "--group", GROUP
        )
        rows = [line.split() for line in out.splitlines() if line.strip()]
        assert rows == [
            [
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID",
            ],
            [GROUP, TOPIC, "0", "3", "3", "0", "-", "-", "-"],
            [GROUP, TOPIC, "1", "2", "4", "2", "-", "-", "-"],
        ]

        out = _run(
            kafka_tools,
            CONFIGS,
            *("--bootstrap-server", bootstrap, "--entity-type", "topics", "--entity-name", TOPIC),
            *("--alter", "--add-config", "segment.bytes=1048576,cleanup.policy=[compact,delete]"),
            *("--delete-config", "retention.ms"),
        )
        assert out == f"Completed updating config for topic {TOPIC}.\n"
        out = _run(
            kafka_tools,
            CONFIGS,
            *("--bootstrap-server", bootstrap, "--entity-type", "topics", "--entity-name", TOPIC),
            "--describe",
        )
        assert out.splitlines() == [
            f"Dynamic configs for topic {TOPIC} are:",
            "  cleanup.policy=compact,delete sensitive=false synonyms="
            "{DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete, DEFAULT_CONFIG:log.cleanup.policy=delete}",
            "  segment.bytes=1048576 sensitive=false synonyms="
            "{DYNAMIC_TOPIC_CONFIG:segment.bytes=1048576, DEFAULT_CONFIG:log.segment.bytes=1073741824}",
        ]
        out = _run(
            kafka_tools, TOPICS, "--bootstrap-server", bootstrap, "--describe", "--topic", TOPIC
        )
        assert [line.split("\t") for line in out.splitlines()] == [
            [
                f"Topic: {TOPIC}",
                "PartitionCount: 2",
                "ReplicationFactor: 1",
                "Configs: cleanup.policy=compact,delete,segment.bytes=1048576",
            ],
            *(
                [
                    "",
                    f"Topic: {TOPIC}",
                    f"Partition: {p}",
                    "Leader: 0",
                    "Replicas: 0",
                    "Isr: 0",
                    "Elr: N/A",
                    "LastKnownElr: N/A",
                ]
                for p in (0, 1)
            ),
        ]
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        assert broker.committed_offsets() == {(GROUP, TOPIC, 0): 3, (GROUP, TOPIC, 1): 2}
        stored = {
            p: [(r.key, r.value) for r in broker.topic(TOPIC).partition(p).read(0)] for p in (0, 1)
        }
        assert stored == {
            p: [
                (k.encode(), v.encode())
                for k, v in FIRST + LATER
                if partition_for(k.encode(), 2) == p
            ]
            for p in (0, 1)
        }
        config = broker.topic(TOPIC).config
        assert (config.segment_bytes, config.cleanup_policy, config.retention_ms) == (
            1048576,
            "compact,delete",
            None,
        )
