"""Store limits (NATS Streaming's ``StoreLimits``): every refusal is exact and changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import logstore

from .helpers import run


def _open(root: Path, **options: object) -> logstore.Broker:
    return logstore.Broker.open(root, maintenance_interval_ms=None, **options)  # type: ignore[arg-type]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (recursively), with each file's bytes: what a refusal must keep."""
    out: dict[str, bytes | None] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(directory, name), root)] = None
        for name in files:
            if name.endswith(".lock"):
                continue
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("limit", ["max_topics", "max_groups"])
@pytest.mark.parametrize("value", [-1, "3", 2.0, True])
def test_a_broker_limit_must_be_an_int_at_least_0(
    tmp_path: Path, limit: str, value: object
) -> None:
    with pytest.raises(logstore.ConfigError) as info:
        _open(tmp_path / "root", **{limit: value})
    assert str(info.value) == f"{limit} must be an integer >= 0 or None, got {value!r}"
    assert not (tmp_path / "root").exists()  # refused before the root is made


@pytest.mark.parametrize("value", [-1, "3", 1.5])
def test_max_consumers_per_group_must_be_an_int_at_least_0(value: object) -> None:
    with pytest.raises(logstore.ConfigError) as info:
        logstore.LogConfig(max_consumers_per_group=value)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"max_consumers_per_group must be an integer >= 0 or None, got {value!r}"
    )


@pytest.mark.parametrize("unlimited", [None, 0])
def test_none_and_0_are_unlimited(tmp_path: Path, unlimited: int | None) -> None:
    config = logstore.LogConfig(max_consumers_per_group=unlimited)
    with _open(tmp_path, default_config=config, max_topics=unlimited, max_groups=unlimited) as b:
        assert (b.max_topics, b.max_groups) == (None, None)
        for i in range(5):
            b.create_topic(f"t{i}")
        consumers = [b.consumer(f"g{i}", "t0") for i in range(5)]
        consumers += [b.consumer("g0", "t0") for _ in range(5)]
        assert len(b.topics()) == 5
        for c in consumers:
            c.close()


def test_limits_are_exported() -> None:
    assert "LimitExceededError" in logstore.__all__
    assert issubclass(logstore.LimitExceededError, logstore.LogStoreError)
    error = logstore.LimitExceededError("max_topics", 10, "cannot create topic 'x'")
    assert (error.limit, error.value, str(error)) == (
        "max_topics",
        10,
        "max_topics=10 reached: cannot create topic 'x'",
    )


# ---------------------------------------------------------------- max_topics


def test_max_topics_refuses_the_next_topic_and_writes_nothing(tmp_path: Path) -> None:
    with _open(tmp_path, max_topics=2) as broker:
        broker.create_topic("a")
        broker.create_topic("b", 3)
        before = _snapshot(tmp_path)
        with pytest.raises(logstore.LimitExceededError) as info:
            broker.create_topic("c", 2)
        assert str(info.value) == "max_topics=2 reached: cannot create topic 'c'"
        assert (info.value.limit, info.value.value) == ("max_topics", 2)
        assert _snapshot(tmp_path) == before  # no directory, no metadata written
        assert broker.topics() == ["a", "b"]
        with pytest.raises(logstore.UnknownTopicError):
            broker.topic("c")
    with _open(tmp_path, max_topics=2) as broker:  # and nothing comes back at the next open
        assert broker.topics() == ["a", "b"]


def test_max_topics_does_not_count_the_offsets_topic(tmp_path: Path) -> None:
    with _open(tmp_path, max_topics=1) as broker:
        assert broker.topics(include_internal=True) == ["__consumer_offsets"]
        broker.create_topic("only")
        with pytest.raises(logstore.LimitExceededError, match=r"^max_topics=1 reached"):
            broker.create_topic("second")


def test_an_existing_topic_is_refused_as_existing_before_the_limit(tmp_path: Path) -> None:
    with _open(tmp_path, max_topics=1) as broker:
        broker.create_topic("a")
        with pytest.raises(logstore.TopicExistsError):
            broker.create_topic("a")


def test_deleting_a_topic_frees_its_place(tmp_path: Path) -> None:
    with _open(tmp_path, max_topics=1) as broker:
        broker.create_topic("a")
        broker.delete_topic("a")
        broker.create_topic("b")
        assert broker.topics() == ["b"]


def test_topics_over_a_lowered_limit_stay_but_no_new_one_comes(tmp_path: Path) -> None:
    with _open(tmp_path) as broker:
        for name in ("a", "b", "c"):
            broker.create_topic(name)
    with _open(tmp_path, max_topics=2) as broker:
        assert broker.topics() == ["a", "b", "c"]
        before = _snapshot(tmp_path)
        with pytest.raises(logstore.LimitExceededError) as info:
            broker.create_topic("d")
        assert str(info.value) == "max_topics=2 reached: cannot create topic 'd'"
        assert _snapshot(tmp_path) == before


def test_an_invalid_name_is_refused_before_the_limit(tmp_path: Path) -> None:
    with _open(tmp_path, max_topics=0) as broker, pytest.raises(logstore.InvalidTopicName):
        broker.create_topic("bad/name")


# ---------------------------------------------------------------- max_groups


def test_max_groups_refuses_a_new_group_of_consumers(tmp_path: Path) -> None:
    with _open(tmp_path, max_groups=2) as broker:
        broker.create_topic("t", 2)
        a = broker.consumer("a", "t")
        b = broker.consumer("b", "t")
        before = _snapshot(tmp_path)
        with pytest.raises(logstore.LimitExceededError) as info:
            broker.consumer("c", "t")
        assert str(info.value) == "max_groups=2 reached: cannot create group 'c'"
        assert (info.value.limit, info.value.value) == ("max_groups", 2)
        assert _snapshot(tmp_path) == before
        a2 = broker.consumer("a", "t")  # a known group takes more members
        assert sorted(a.assignment + a2.assignment) == [("t", 0), ("t", 1)]
        b.close()  # b never committed: its place is free again
        broker.consumer("c", "t").close()
        a.close()
        a2.close()


def test_a_group_that_committed_counts_without_members(tmp_path: Path) -> None:
    with _open(tmp_path, max_groups=1) as broker:
        broker.create_topic("t")
        broker.produce("t", b"v")
        consumer = broker.consumer("a", "t")
        assert len(consumer.poll()) == 1
        consumer.commit()
        consumer.close()
        with pytest.raises(logstore.LimitExceededError, match=r"^max_groups=1 reached: .*'b'$"):
            broker.consumer("b", "t")
        broker.consumer("a", "t").close()  # its own group always comes back
    # Committed groups count after a reopen too.
    with _open(tmp_path, max_groups=1) as broker, pytest.raises(logstore.LimitExceededError):
        broker.consumer("b", "t")


def test_max_groups_refuses_a_commit_of_a_new_group_and_writes_nothing(tmp_path: Path) -> None:
    with _open(tmp_path, max_groups=1) as broker:
        broker.create_topic("t", 2)
        broker.commit_offsets("a", {("t", 0): 0})
        before = _snapshot(tmp_path)
        with pytest.raises(logstore.LimitExceededError) as info:
            broker.commit_offsets("b", {("t", 0): 0, ("t", 1): 0})
        assert str(info.value) == "max_groups=1 reached: cannot create group 'b'"
        assert _snapshot(tmp_path) == before  # nothing in __consumer_offsets
        assert broker.committed_offsets() == {("a", "t", 0): 0}
        broker.commit_offsets("a", {("t", 1): 5})  # a known group commits on
        assert broker.committed_offsets() == {("a", "t", 0): 0, ("a", "t", 1): 5}


def test_a_group_with_live_members_counts_for_commits(tmp_path: Path) -> None:
    with _open(tmp_path, max_groups=1) as broker:
        broker.create_topic("t")
        with broker.consumer("live", "t"):
            with pytest.raises(logstore.LimitExceededError, match=r"cannot create group 'x'$"):
                broker.commit_offsets("x", {("t", 0): 0})
            broker.commit_offsets("live", {("t", 0): 0})
        assert broker.committed_offsets() == {("live", "t", 0): 0}


# ---------------------------------------------------------------- max_consumers_per_group


def test_max_consumers_per_group_from_the_defaults(tmp_path: Path) -> None:
    config = logstore.LogConfig(max_consumers_per_group=2)
    with _open(tmp_path, default_config=config) as broker:
        broker.create_topic("t", 4)
        first, second = broker.consumer("g", "t"), broker.consumer("g", "t")
        assignment = (first.assignment, second.assignment)
        with pytest.raises(logstore.LimitExceededError) as info:
            broker.consumer("g", "t")
        assert str(info.value) == (
            "max_consumers_per_group=2 reached: group 'g' already has 2 consumer(s) of topic 't'"
        )
        assert (info.value.limit, info.value.value) == ("max_consumers_per_group", 2)
        assert (first.assignment, second.assignment) == assignment  # no rebalance happened
        other = broker.consumer("other", "t")  # per group: another group has its own
        assert len(other.assignment) == 4
        second.close()
        third = broker.consumer("g", "t")  # a place freed by a close
        assert sorted(first.assignment + third.assignment) == [("t", p) for p in range(4)]
        for c in (first, third, other):
            c.close()


def test_max_consumers_per_group_overridden_per_topic(tmp_path: Path) -> None:
    config = logstore.LogConfig(max_consumers_per_group=3)
    with _open(tmp_path, default_config=config) as broker:
        broker.create_topic("one", config={"max_consumers_per_group": 1})
        broker.create_topic("free", config={"max_consumers_per_group": 0})
        broker.create_topic("three")
        assert broker.topic_overrides("one") == {"max_consumers_per_group": 1}
        member = broker.consumer("g", ["three", "one"])
        with pytest.raises(logstore.LimitExceededError) as info:
            broker.consumer("g", ["three", "one"])  # the first topic is fine, the second is not
        assert str(info.value) == (
            "max_consumers_per_group=1 reached: group 'g' already has 1 consumer(s) of topic 'one'"
        )
        # Members count per topic: one reading only "three" is admitted.
        others = [broker.consumer("g", "three") for _ in range(2)]
        with pytest.raises(logstore.LimitExceededError, match=r"^max_consumers_per_group=3 "):
            broker.consumer("g", "three")
        free = [broker.consumer("g", "free") for _ in range(10)]
        for c in (member, *others, *free):
            c.close()


def test_alter_topic_changes_max_consumers_per_group(tmp_path: Path) -> None:
    with _open(tmp_path) as broker:
        broker.create_topic("t")
        first = broker.consumer("g", "t")
        config = broker.alter_topic("t", {"max_consumers_per_group": 1})
        assert config.max_consumers_per_group == 1
        with pytest.raises(logstore.LimitExceededError, match=r"^max_consumers_per_group=1 "):
            broker.consumer("g", "t")
        with pytest.raises(logstore.ConfigError, match="max_consumers_per_group must be"):
            broker.alter_topic("t", {"max_consumers_per_group": -2})
        assert broker.topic("t").config.max_consumers_per_group == 1
        broker.alter_topic("t", reset=["max_consumers_per_group"])
        broker.consumer("g", "t").close()
        first.close()
    with _open(tmp_path) as broker:
        assert broker.topic_overrides("t") == {}


def test_the_limit_survives_a_reopen(tmp_path: Path) -> None:
    with _open(tmp_path) as broker:
        broker.create_topic("t", config={"max_consumers_per_group": 1})
    with _open(tmp_path) as broker:
        assert broker.topic("t").config.max_consumers_per_group == 1
        with broker.consumer("g", "t"), pytest.raises(logstore.LimitExceededError):
            broker.consumer("g", "t")


def test_the_cli_shows_and_sets_max_consumers_per_group(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with _open(tmp_path) as broker:
        broker.create_topic("t")
    code, out, err = run(capsys, "config", str(tmp_path), "t")
    assert (code, err) == (0, "")
    assert "max_consumers_per_group=none" in out.splitlines()
    code, out, err = run(capsys, "config", str(tmp_path), "t", "--set", "max_consumers_per_group=4")
    assert (code, err) == (0, "")
    assert "max_consumers_per_group=4  (topic)" in out.splitlines()
    code, out, err = run(
        capsys, "config", str(tmp_path), "t", "--set", "max_consumers_per_group=-1"
    )
    assert code == 2
    assert "max_consumers_per_group must be an integer >= 0 or None, got -1" in err
    with _open(tmp_path) as broker:
        assert broker.topic("t").config.max_consumers_per_group == 4
        assert broker.topic_overrides("t") == {"max_consumers_per_group": 4}


def test_a_broker_closes_with_several_members_of_a_group_open(tmp_path: Path) -> None:
    """The members leave as it closes: their rebalance must not need the closed broker."""
    broker = _open(tmp_path, max_groups=1)
    broker.create_topic("t", 2)
    first, second = broker.consumer("g", "t"), broker.consumer("g", "t")
    broker.close()
    assert (first.assignment, second.assignment) == ([], [])
