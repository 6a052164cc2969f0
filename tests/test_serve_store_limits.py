"""The store limits through the Kafka protocol: CreateTopics, JoinGroup and OffsetCommit.

``max_topics`` refuses a CreateTopics topic with POLICY_VIOLATION (44), Kafka's
answer when its create-topic policy refuses one; a JoinGroup over a topic's
``max_consumers_per_group`` (or a new group over ``max_groups``) gets
GROUP_MAX_SIZE_REACHED (81), Kafka's answer over ``group.max.size``.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import logstore

pytest.importorskip("kio")
from logstore.server.codec import ErrorCode
from logstore.server.groupapi import handle_offset_commit
from logstore.server.groups import Groups, subscription
from logstore.server.topics import handle_create_topics


def _open(root: Path, **options: Any) -> logstore.Broker:
    return logstore.Broker.open(root, maintenance_interval_ms=None, **options)


def _listing(root: Path) -> list[str]:
    return sorted(os.listdir(root))


def _create_request(names: list[str], *, validate_only: bool = False) -> SimpleNamespace:
    topics = [
        SimpleNamespace(
            name=name, num_partitions=2, replication_factor=1, assignments=(), configs=()
        )
        for name in names
    ]
    return SimpleNamespace(topics=topics, validate_only=validate_only)


def _create(broker: logstore.Broker, names: list[str], **options: bool) -> list[tuple[Any, ...]]:
    state = SimpleNamespace(broker=broker, default_partitions=1)
    request = _create_request(names, **options)
    answer = asyncio.run(handle_create_topics(state, None, request))  # type: ignore[arg-type]
    return [
        (t["name"], t.get("error_code", ErrorCode.none), t.get("error_message"))
        for t in answer["topics"]
    ]


@pytest.mark.parametrize("validate_only", [False, True])
def test_create_topics_over_max_topics_is_a_policy_violation(
    tmp_path: Path, validate_only: bool
) -> None:
    with _open(tmp_path, max_topics=1) as broker:
        broker.create_topic("a")
        before = (_listing(tmp_path), (tmp_path / "logstore-topics.json").read_bytes())
        answers = _create(broker, ["b"], validate_only=validate_only)
        assert answers == [
            ("b", ErrorCode.policy_violation, "max_topics=1 reached: cannot create topic 'b'")
        ]
        assert int(ErrorCode.policy_violation) == 44
        assert (_listing(tmp_path), (tmp_path / "logstore-topics.json").read_bytes()) == before
        assert broker.topics() == ["a"]


def test_create_topics_refuses_only_the_topics_past_the_limit(tmp_path: Path) -> None:
    with _open(tmp_path, max_topics=2) as broker:
        answers = _create(broker, ["a", "b", "c"])
        assert answers == [
            ("a", ErrorCode.none, None),
            ("b", ErrorCode.none, None),
            ("c", ErrorCode.policy_violation, "max_topics=2 reached: cannot create topic 'c'"),
        ]
        assert broker.topics() == ["a", "b"]


def _metadata(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0: version, topics, null user data."""
    body = struct.pack(">hi", 0, len(topics))
    for topic in topics:
        body += struct.pack(">h", len(topic)) + topic.encode()
    return body + struct.pack(">i", -1)


def test_subscription_reads_the_topics_and_nothing_from_other_bytes() -> None:
    assert subscription([("range", _metadata("a", "bb"))]) == ["a", "bb"]
    assert subscription([("range", _metadata())]) == []
    assert subscription([]) == []
    assert subscription([("range", b"")]) == []
    assert subscription([("range", _metadata("abc")[:-6])]) == []  # cut inside the name
    assert subscription([("range", b"\x00\x00\x00\x00\x00\x01\x00\x01\xff")]) == []


async def _joins(
    broker: logstore.Broker, joins: list[tuple[str, tuple[str, ...]]]
) -> tuple[list[Any], dict[str, int]]:
    """Join each ``(group, topics)`` as a new member; the codes of the answers given at once."""
    groups = Groups(broker)
    futures = [
        groups.join(
            group,
            "",
            client_id="c",
            client_host="h",
            session_timeout_ms=10_000,
            rebalance_timeout_ms=10_000,
            protocol_type="consumer",
            protocols=[("range", _metadata(*topics))],
        )
        for group, topics in joins
    ]
    await asyncio.sleep(0)
    codes = [f.result()["error_code"] if f.done() else "waiting" for f in futures]
    members = {name: len(g.members) for name, g in groups.groups.items()}
    groups.stop()
    return codes, members


def test_join_group_over_max_consumers_per_group_is_group_max_size_reached(
    tmp_path: Path,
) -> None:
    with _open(tmp_path) as broker:
        broker.create_topic("t", 4, config={"max_consumers_per_group": 2})
        broker.create_topic("free", 4)
        codes, members = asyncio.run(
            _joins(
                broker,
                [
                    ("g", ("t",)),
                    ("g", ("t",)),
                    ("g", ("t",)),  # the third on t: refused
                    ("g", ("free",)),  # members count per topic: admitted
                    ("h", ("t",)),  # another group has its own count
                    ("g", ("free", "t")),  # refused for t
                ],
            )
        )
    assert int(ErrorCode.group_max_size_reached) == 81
    refused = ErrorCode.group_max_size_reached
    assert codes == [ErrorCode.none, "waiting", refused, "waiting", ErrorCode.none, refused]
    assert members == {"g": 3, "h": 1}


def test_join_group_of_a_new_group_over_max_groups_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path, max_groups=2) as broker:
        broker.create_topic("t")
        broker.commit_offsets("committed", {("t", 0): 0})
        codes, members = asyncio.run(
            _joins(broker, [("a", ("t",)), ("b", ("t",)), ("committed", ("t",)), ("a", ("t",))])
        )
    refused = ErrorCode.group_max_size_reached
    assert codes == [ErrorCode.none, refused, ErrorCode.none, "waiting"]
    assert members == {"a": 2, "committed": 1}  # no group "b" left behind


def test_offset_commit_of_a_new_group_over_max_groups_writes_nothing(tmp_path: Path) -> None:
    with _open(tmp_path, max_groups=1) as broker:
        broker.create_topic("t")
        broker.commit_offsets("a", {("t", 0): 3})

        async def commit(group: str) -> list[Any]:
            groups = Groups(broker)
            state = SimpleNamespace(broker=broker, groups=groups)
            partition = SimpleNamespace(
                partition_index=0, committed_offset=7, committed_metadata=None
            )
            request = SimpleNamespace(
                group_id=group,
                member_id="",
                generation_id_or_member_epoch=-1,
                topics=[SimpleNamespace(name="t", partitions=[partition])],
            )
            answer = await handle_offset_commit(state, None, request)  # type: ignore[arg-type]
            return [p["error_code"] for t in answer["topics"] for p in t["partitions"]]

        assert asyncio.run(commit("b")) == [ErrorCode.group_max_size_reached]
        assert broker.committed_offsets() == {("a", "t", 0): 3}
        assert asyncio.run(commit("a")) == [ErrorCode.none]
        assert broker.committed_offsets() == {("a", "t", 0): 7}


def test_serve_takes_the_broker_limits(tmp_path: Path) -> None:
    with logstore.serve(tmp_path, listen="127.0.0.1:0", max_topics=3, max_groups=4) as server:
        broker = server._state.broker
        assert (broker.max_topics, broker.max_groups) == (3, 4)
    with pytest.raises(logstore.ConfigError, match=r"^max_topics must be an integer >= 0"):
        logstore.serve(tmp_path, listen="127.0.0.1:0", max_topics=-1)


def test_a_settings_file_gives_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        "max_topics = 5\nmax_groups = 0\n[topic_defaults]\nmax_consumers_per_group = 3\n"
    )
    options = logstore.load_serve_settings(path)
    assert (options["max_topics"], options["max_groups"]) == (5, 0)
    assert options["config"].max_consumers_per_group == 3


def test_a_kafka_admin_client_sees_the_policy_violation(tmp_path: Path) -> None:
    ck = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    with logstore.serve(tmp_path, listen="127.0.0.1:0", max_topics=1) as server:
        host, port = server.address
        admin = AdminClient({"bootstrap.servers": f"{host}:{port}"})
        futures = admin.create_topics([NewTopic("a", 1, 1)])
        assert futures["a"].result(timeout=10) is None
        futures = admin.create_topics([NewTopic("b", 1, 1)])
        with pytest.raises(ck.KafkaException) as info:
            futures["b"].result(timeout=10)
        error = info.value.args[0]
        assert (error.code(), error.str()) == (
            ck.KafkaError.POLICY_VIOLATION,
            "max_topics=1 reached: cannot create topic 'b'",
        )
        assert server._state.broker.topics() == ["a"]
