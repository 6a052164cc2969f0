"""A consumer group failing over across processes against ``logstore serve``.

confluent-kafka's idempotent producer sends 100,000 records with
``acks=all``, keyed by 50 hostnames (each value the key's own sequence
number), into 8 partitions. Three consumer processes
(``tests/serve_group_member.py``) share them in one group with manual
commits, each logging what it was given. One is SIGKILLed mid-way: the two
others take over its partitions once its session timeout has passed. Then
one of those leaves cleanly (``close()``) and the last takes everything.

Checked from the logs: every record delivered at least once, as produced;
within each assignment of each consumer every partition is delivered as one
run of consecutive offsets, starting exactly at the offset committed when the
assignment began (so redelivery comes only from the last commit), and each
key's sequence numbers follow one another; after a clean handover the new
owner starts exactly past the last record the old owner was given (nothing
committed is delivered again); the group's final commits are the end offsets.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import logstore
from tests.helpers_serve import ServeProcess, need

ck = need("confluent_kafka")
need("kio")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC, GROUP = "hosts", "failover"
PARTITIONS, RECORDS = 8, 100_000
HOSTS = [f"host-{i:02d}.example.org" for i in range(50)]
SESSION_MS = 6000  # Kafka's group.min.session.timeout.ms
MEMBER = Path(__file__).with_name("serve_group_member.py")


def _produce(address: str) -> tuple[dict[tuple[int, int], tuple[str, str]], float]:
    """RECORDS records, idempotent and acks=all: where each went, and records/s."""
    producer = ck.Producer(
        {
            "bootstrap.servers": address,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
        }
    )
    placed: dict[tuple[int, int], tuple[str, str]] = {}
    failures: list[Any] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(err)
        else:
            placed[(msg.partition(), msg.offset())] = (msg.key().decode(), msg.value().decode())

    started = time.perf_counter()
    for i in range(RECORDS):
        host = HOSTS[i % len(HOSTS)]
        while True:
            try:
                producer.produce(
                    TOPIC, key=host, value=f"{host}:{i // len(HOSTS)}", on_delivery=report
                )
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0
    rate = RECORDS / (time.perf_counter() - started)
    assert failures == []
    assert len(placed) == RECORDS
    return placed, rate


class _Member:
    def __init__(self, name: str, address: str, directory: Path) -> None:
        self.name = name
        self.path = directory / f"{name}.jsonl"
        self._events: list[dict[str, Any]] = []
        #: (partition, offset) of every record this member was given.
        self.delivered: set[tuple[int, int]] = set()
        self._read = 0
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(MEMBER),
                address,
                TOPIC,
                GROUP,
                str(self.path),
                str(SESSION_MS),
                str(directory / "fast"),
            ],
            stderr=open(directory / f"{name}.stderr", "wb"),  # noqa: SIM115
        )

    def events(self) -> list[dict[str, Any]]:
        """The complete lines logged so far (a line being written is left for later)."""
        if self.path.exists():
            with open(self.path, "rb") as f:
                f.seek(self._read)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._read += len(complete)
            for line in complete.splitlines():
                event = json.loads(line)
                self._events.append(event)
                if event["ev"] == "m":
                    self.delivered.add((event["p"], event["o"]))
        return self._events

    def assigned_and_consuming(self, at_least: int) -> bool:
        """Holding partitions and given ``at_least`` records since its last assignment."""
        count, assigned = 0, False
        for e in self.events():
            if e["ev"] == "assign":
                count, assigned = 0, bool(e["committed"])
            elif e["ev"] in ("revoke", "lost"):
                count, assigned = 0, False
            elif e["ev"] == "m":
                count += 1
        return assigned and count >= at_least

    def owned(self) -> set[int]:
        owned: set[int] = set()
        for e in self.events():
            if e["ev"] == "assign":
                owned = {int(p) for p in e["committed"]}
            elif e["ev"] in ("revoke", "lost"):
                owned = set()
        return owned


def _wait(condition: Any, what: str, timeout: float = 60, alive: Sequence[_Member] = ()) -> float:
    """Poll ``condition``; fail on the timeout, or at once when a member that should run died."""
    deadline = time.monotonic() + timeout
    while not condition():
        for m in alive:
            if m.proc.poll() is not None:
                err = (m.path.parent / f"{m.name}.stderr").read_text(errors="replace")
                raise AssertionError(f"member {m.name} exited {m.proc.returncode}: {err[-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.time()


class _Segment:
    """One assignment of one consumer: what it was given until revoked, lost or killed."""

    def __init__(self, member: str, start: float, committed: dict[str, int]) -> None:
        self.member = member
        self.start = start
        self.end: float | None = None
        self.ended = "running"
        self.committed = {int(p): o for p, o in committed.items()}
        self.records: dict[int, list[tuple[int, str, str]]] = {p: [] for p in self.committed}


def _segments(name: str, events: list[dict[str, Any]], killed_at: float | None) -> list[_Segment]:
    segments: list[_Segment] = []
    current: _Segment | None = None
    for e in events:
        if e["ev"] == "assign":
            current = _Segment(name, e["t"], e["committed"])
            segments.append(current)
        elif e["ev"] == "m":
            assert current is not None and e["p"] in current.records, (name, e)
            current.records[e["p"]].append((e["o"], e["k"], e["v"]))
        elif e["ev"] in ("revoke", "lost", "closed") and current is not None:
            current.end, current.ended = e["t"], e["ev"]
            current = None
        elif e["ev"] in ("commit_failed", "error"):
            raise AssertionError(f"{name}: {e}")
    if current is not None and killed_at is not None:
        current.end, current.ended = killed_at, "killed"
    return segments


def test_a_group_of_three_processes_fails_over_after_sigkill_and_hands_over_cleanly(
    tmp_path,
) -> None:
    serve = ServeProcess(tmp_path / "root").start()
    members: list[_Member] = []
    try:
        admin = AdminClient({"bootstrap.servers": serve.address})
        for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
            assert f.result(timeout=10) is None
        placed, rate = _produce(serve.address)
        print(f"\nproduced {RECORDS} records at {rate:,.0f} records/s")
        ends = collections.Counter(p for p, _ in placed)
        assert len(ends) == PARTITIONS

        members = [_Member(n, serve.address, tmp_path) for n in ("a", "b", "c")]
        a, b, c = members
        _wait(
            lambda: (
                all(m.assigned_and_consuming(400) for m in members)
                and set().union(*(m.owned() for m in members)) == set(range(PARTITIONS))
            ),
            "three members consuming",
            alive=members,
        )
        c_owned = c.owned()
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(timeout=10)
        killed_at = time.time()
        taken_over = _wait(
            lambda: c_owned <= a.owned() | b.owned() and a.owned() and b.owned(),
            "a and b to take over c's partitions",
            alive=[a, b],
        )
        _wait(lambda: b.assigned_and_consuming(400), "b consuming after the takeover", alive=[a, b])
        b_owned = b.owned()
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(timeout=30) == 0
        left_at = time.time()
        handed_over = _wait(
            lambda: a.owned() == set(range(PARTITIONS)), "a to take everything", alive=[a]
        )
        (tmp_path / "fast").touch()  # the rest at full speed
        everything = set(placed)

        def all_delivered() -> bool:
            for m in members:
                m.events()
            return set().union(*(m.delivered for m in members)) == everything

        _wait(all_delivered, "every record delivered", 90, alive=[a])
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(timeout=30) == 0
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait()
        serve.stop()

    # The others waited for c's session timeout (less at most one heartbeat interval);
    # b's LeaveGroup was acted on at once.
    assert taken_over - killed_at > SESSION_MS / 1000 - 1.0
    assert handed_over - left_at < SESSION_MS / 1000 - 1.0

    # Every record at least once, as produced; per assignment, exact runs from the commit.
    segments = [
        s for m in members for s in _segments(m.name, m.events(), killed_at if m is c else None)
    ]
    delivered: set[tuple[int, int]] = set()
    for s in segments:
        for p, records in s.records.items():
            if not records:
                continue
            start = s.committed[p] if s.committed[p] >= 0 else 0
            assert [o for o, _, _ in records] == list(range(start, start + len(records))), (
                s.member,
                p,
            )
            by_key: dict[str, list[int]] = collections.defaultdict(list)
            for o, k, v in records:
                assert placed[(p, o)] == (k, v)
                delivered.add((p, o))
                host, seq = v.rsplit(":", 1)
                by_key[host].append(int(seq))
            for host, seqs in by_key.items():
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (s.member, p, host)
    assert delivered == set(placed)

    # Each partition's owners one after another; a clean handover redelivers nothing.
    cleanly_handed = 0
    for p in range(PARTITIONS):
        owners = sorted((s for s in segments if p in s.committed), key=lambda s: s.start)
        for before, after in itertools.pairwise(owners):
            assert before.end is not None and before.end <= after.start, (p, before.member)
            given = before.records[p]
            next_offset = given[-1][0] + 1 if given else before.committed[p]
            if before.ended == "killed":
                assert after.committed[p] <= next_offset  # from its last commit on
            else:
                assert before.ended == "revoke", (p, before.member, before.ended)
                assert after.committed[p] == next_offset, (p, before.member, after.member)
                if before.member == "b" and p in b_owned and after.records[p]:
                    cleanly_handed += 1
    # b left with records still to read in its partitions: the handover was not vacuous.
    assert cleanly_handed > 0

    # The group's commits: every partition read to its end.
    with logstore.Broker.open(tmp_path / "root") as broker:
        offsets = broker.group_offsets(GROUP)
        assert {p: offsets[(TOPIC, p)].offset for p in range(PARTITIONS)} == dict(ends)
    assert os.path.getsize(a.path) > 0


def test_a_member_commits_while_a_rebalance_is_prepared_not_while_it_completes(tmp_path) -> None:
    """Kafka's rule, which the revoke-time commit of a clean handover depends on."""
    import asyncio

    from logstore.server.codec import ErrorCode
    from logstore.server.groups import Groups

    def join(groups: Groups, member_id: str) -> Any:
        return groups.join(
            "g",
            member_id,
            client_id="c",
            client_host="h",
            session_timeout_ms=SESSION_MS,
            rebalance_timeout_ms=SESSION_MS,
            protocol_type="consumer",
            protocols=[("range", b"")],
        )

    async def scenario(broker: logstore.Broker) -> list[Any]:
        groups = Groups(broker)
        first = (await join(groups, ""))["member_id"]
        completing = groups.check_commit("g", first, 1)  # joined, not synced yet
        await groups.sync("g", first, 1, {first: b"a"})
        stable = groups.check_commit("g", first, 1)
        second = join(groups, "")  # a new member: the rebalance is prepared
        preparing = groups.check_commit("g", first, 1)
        rejoined = join(groups, first)
        await asyncio.gather(second, rejoined)
        old_generation = groups.check_commit("g", first, 1)
        groups.stop()
        return [completing, stable, preparing, old_generation]

    with logstore.Broker.open(tmp_path) as broker:
        assert asyncio.run(scenario(broker)) == [
            ErrorCode.rebalance_in_progress,
            None,
            None,
            ErrorCode.illegal_generation,
        ]
