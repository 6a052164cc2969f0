"""The classic consumer-group protocol's state: members, generations, rebalances.

Owns each group's members (with their session and rebalance timeouts), the
generation, the protocol every member supports, the leader, and the
assignment the leader computed (assignors run in the clients: the server
only carries their bytes). A join starts a rebalance; it completes when
every member known has joined again, or when the longest rebalance timeout
has passed (those that did not rejoin are removed). A member silent for its
session timeout is removed and the group rebalances. Committed offsets are
not kept here but in the root's ``__consumer_offsets`` (``Broker.commit_offsets``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import struct
from typing import Any

from .. import Broker, LimitExceededError
from .codec import ErrorCode

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
)
_EXPIRY_CHECK_S = 0.25


@dataclasses.dataclass
class Member:
    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    last_seen: float
    assignment: bytes = b""
    join: asyncio.Future[dict[str, Any]] | None = None
    sync: asyncio.Future[dict[str, Any]] | None = None


#: Kafka's defaults for group.min.session.timeout.ms and group.max.session.timeout.ms.
MIN_SESSION_TIMEOUT_MS = 6_000
MAX_SESSION_TIMEOUT_MS = 1_800_000


@dataclasses.dataclass
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str = ""
    members: dict[str, Member] = dataclasses.field(default_factory=dict)
    rebalance_deadline: float = 0.0


class Groups:
    """Every group of the server, on its event loop (no locks: one thread touches them)."""

    def __init__(
        self,
        broker: Broker,
        *,
        min_session_timeout_ms: int = MIN_SESSION_TIMEOUT_MS,
        max_session_timeout_ms: int = MAX_SESSION_TIMEOUT_MS,
    ) -> None:
        self.broker = broker
        #: Kafka's group.min/max.session.timeout.ms: a join asking outside is refused.
        self.session_timeout_range = (min_session_timeout_ms, max_session_timeout_ms)
        self.groups: dict[str, Group] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._expire_forever())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for group in self.groups.values():
            for member in group.members.values():
                for future in (member.join, member.sync):
                    if future is not None and not future.done():
                        future.set_result({"error_code": ErrorCode.coordinator_not_available})

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------ join and sync

    def join(
        self,
        group_id: str,
        member_id: str,
        *,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
    ) -> asyncio.Future[dict[str, Any]]:
        """Join (or rejoin) ``group_id``; the future is the JoinGroup answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        low, high = self.session_timeout_range
        if not low <= session_timeout_ms <= high:
            # Checked first, as Kafka's coordinator does: the member is not added.
            future.set_result(_join_error(ErrorCode.invalid_session_timeout, member_id))
            return future
        created = group_id not in self.groups
        group = self.groups.setdefault(group_id, Group(group_id))
        if (
            group.protocol_type is not None
            and group.members
            and protocol_type != group.protocol_type
        ):
            future.set_result(_join_error(ErrorCode.inconsistent_group_protocol, member_id))
            return future
        if member_id and member_id not in group.members:
            future.set_result(_join_error(ErrorCode.unknown_member_id, member_id))
            return future
        if group.members and not _common_protocol(
            [*(m.protocols for m in group.members.values() if m.member_id != member_id), protocols]
        ):
            future.set_result(_join_error(ErrorCode.inconsistent_group_protocol, member_id))
            return future
        if not member_id:
            refusal = self._over_limit(group, protocols)
            if refusal is not None:
                if created:
                    del self.groups[group_id]  # refused: no group left behind
                future.set_result(_join_error(ErrorCode.group_max_size_reached, member_id))
                return future
            member_id = f"{client_id or 'member'}-{next(self._ids)}"
        member = group.members.get(member_id)
        if member is None:
            member = group.members[member_id] = Member(
                member_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                protocol_type,
                protocols,
                self._now(),
            )
        else:
            member.protocols = protocols
            member.session_timeout_ms = session_timeout_ms
            member.rebalance_timeout_ms = rebalance_timeout_ms
            member.last_seen = self._now()
        if member.join is not None and not member.join.done():
            member.join.set_result(_join_error(ErrorCode.rebalance_in_progress, member_id))
        member.join = future
        group.protocol_type = protocol_type
        self._prepare(group)
        self._maybe_complete(group)
        return future

    def _over_limit(
        self, group: Group, protocols: list[tuple[str, bytes]]
    ) -> LimitExceededError | None:
        """The store limit a new member of ``group`` would exceed, if any.

        ``max_groups`` for a group without members (the live ones are this
        server's), and each subscribed topic's ``max_consumers_per_group``
        against the members that subscribe to it: both answered as Kafka answers
        ``group.max.size``, GROUP_MAX_SIZE_REACHED (non-retriable for clients).
        """
        try:
            if not group.members:
                live = {g.group_id for g in self.groups.values() if g.members}
                self.broker.check_group_limit(group.group_id, live)
            subscribed = [subscription(m.protocols) for m in group.members.values()]
            known = set(self.broker.topics())
            for topic in subscription(protocols):
                if topic in known:  # an unknown one is the client's to find out
                    members = sum(1 for topics in subscribed if topic in topics)
                    self.broker.check_consumer_limit(group.group_id, topic, members)
        except LimitExceededError as exc:
            return exc
        return None

    def _prepare(self, group: Group) -> None:
        if group.state != PREPARING:
            group.state = PREPARING
            timeout_ms = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
            group.rebalance_deadline = self._now() + timeout_ms / 1000
            for member in group.members.values():  # a sync waiting is answered: rejoin
                if member.sync is not None and not member.sync.done():
                    member.sync.set_result({"error_code": ErrorCode.rebalance_in_progress})

    def _maybe_complete(self, group: Group, *, deadline_passed: bool = False) -> None:
        if group.state != PREPARING:
            return
        joined = [m for m in group.members.values() if m.join is not None and not m.join.done()]
        if len(joined) < len(group.members) and not deadline_passed:
            return
        for member in [m for m in group.members.values() if m not in joined]:
            del group.members[member.member_id]
        if not group.members:
            group.state, group.protocol, group.leader = EMPTY, None, ""
            group.generation += 1
            return
        group.generation += 1
        group.protocol = _common_protocol([m.protocols for m in joined])
        if group.leader not in group.members:
            group.leader = joined[0].member_id
        group.state = COMPLETING
        for member in joined:
            answer: dict[str, Any] = {
                "error_code": ErrorCode.none,
                "generation_id": group.generation,
                "protocol_type": group.protocol_type,
                "protocol_name": group.protocol,
                "leader": group.leader,
                "member_id": member.member_id,
                "members": [],
            }
            if member.member_id == group.leader:
                answer["members"] = [
                    {"member_id": m.member_id, "metadata": dict(m.protocols)[group.protocol or ""]}
                    for m in group.members.values()
                ]
            assert member.join is not None
            member.join.set_result(answer)
            member.last_seen = self._now()

    def sync(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes],
    ) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        group = self.groups.get(group_id)
        error = self._check(group, member_id, generation)
        if error is not None:
            future.set_result({"error_code": error})
            return future
        assert group is not None
        member = group.members[member_id]
        member.last_seen = self._now()
        if group.state == PREPARING:
            future.set_result({"error_code": ErrorCode.rebalance_in_progress})
            return future
        if group.state == STABLE:
            future.set_result(self._sync_answer(group, member))
            return future
        member.sync = future
        if member_id == group.leader:
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            group.state = STABLE
            for m in group.members.values():
                if m.sync is not None and not m.sync.done():
                    m.sync.set_result(self._sync_answer(group, m))
        return future

    @staticmethod
    def _sync_answer(group: Group, member: Member) -> dict[str, Any]:
        return {
            "error_code": ErrorCode.none,
            "protocol_type": group.protocol_type,
            "protocol_name": group.protocol,
            "assignment": member.assignment,
        }

    def _check(self, group: Group | None, member_id: str, generation: int) -> ErrorCode | None:
        if group is None or member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation != group.generation:
            return ErrorCode.illegal_generation
        return None

    # ------------------------------------------------------------ heartbeat, leave, expiry

    def heartbeat(self, group_id: str, member_id: str, generation: int) -> ErrorCode:
        group = self.groups.get(group_id)
        error = self._check(group, member_id, generation)
        if error is not None:
            return error
        assert group is not None
        group.members[member_id].last_seen = self._now()
        if group.state == PREPARING:
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def check_commit(self, group_id: str, member_id: str, generation: int) -> ErrorCode | None:
        """A commit's standing: a simple commit (generation -1) always, a member's if current."""
        if generation < 0 and not member_id:
            group = self.groups.get(group_id)
            if group is not None and group.members:
                return ErrorCode.unknown_member_id  # the group is managed by its members
            return None
        group = self.groups.get(group_id)
        error = self._check(group, member_id, generation)
        if error is not None:
            return error
        assert group is not None
        group.members[member_id].last_seen = self._now()
        # As Kafka: a member of the current generation commits while a rebalance is
        # prepared (what a consumer does as its partitions are revoked, so that the
        # next owner starts where it stopped); between JoinGroup and SyncGroup not.
        if group.state == COMPLETING:
            return ErrorCode.rebalance_in_progress
        return None

    def leave(self, group_id: str, member_id: str) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None or member_id not in group.members:
            return ErrorCode.unknown_member_id
        self._remove(group, member_id)
        return ErrorCode.none

    def _remove(self, group: Group, member_id: str) -> None:
        member = group.members.pop(member_id)
        for future in (member.join, member.sync):
            if future is not None and not future.done():
                future.set_result({"error_code": ErrorCode.unknown_member_id})
        if not group.members:
            group.state, group.protocol, group.leader = EMPTY, None, ""
            group.generation += 1
            return
        self._prepare(group)
        self._maybe_complete(group)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(_EXPIRY_CHECK_S)
            now = self._now()
            for group in list(self.groups.values()):
                for member in list(group.members.values()):
                    waiting = member.join is not None and not member.join.done()
                    if not waiting and now - member.last_seen > member.session_timeout_ms / 1000:
                        self._remove(group, member.member_id)
                if group.state == PREPARING and now >= group.rebalance_deadline:
                    self._maybe_complete(group, deadline_passed=True)

    # ------------------------------------------------------------ describing

    def describe(self, group_id: str) -> dict[str, Any]:
        group = self.groups.get(group_id)
        if group is None:
            known = any(g == group_id for g, _, _ in self.broker.committed_offsets())
            return {
                "group_id": group_id,
                "group_state": EMPTY if known else DEAD,
                "protocol_type": "consumer" if known else "",
                "protocol_data": "",
                "members": [],
            }
        return {
            "group_id": group_id,
            "group_state": group.state,
            "protocol_type": group.protocol_type or "",
            "protocol_data": group.protocol or "",
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": None,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_metadata": dict(m.protocols).get(group.protocol or "", b""),
                    "member_assignment": m.assignment,
                }
                for m in group.members.values()
            ],
            "authorized_operations": -2147483648,
        }

    def listing(self) -> list[dict[str, Any]]:
        names = {g for g, _, _ in self.broker.committed_offsets()} | set(self.groups)
        answers = []
        for name in sorted(names):
            group = self.groups.get(name)
            answers.append(
                {
                    "group_id": name,
                    "protocol_type": (group.protocol_type if group else None) or "consumer",
                    "group_state": group.state if group else EMPTY,
                    "group_type": "classic",
                }
            )
        return answers


def _join_error(error: ErrorCode, member_id: str) -> dict[str, Any]:
    return {"error_code": error, "generation_id": -1, "member_id": member_id, "leader": ""}


def _common_protocol(choices: list[list[tuple[str, bytes]]]) -> str | None:
    """The first protocol of the first member's list that every member supports."""
    if not choices:
        return None
    for name, _ in choices[0]:
        if all(name in dict(c) for c in choices[1:]):
            return name
    return None


def subscription(protocols: list[tuple[str, bytes]]) -> list[str]:
    """The topics of a consumer's first protocol metadata (ConsumerProtocolSubscription).

    ``version: int16, topics: [string]`` opens every version; bytes that are
    not that subscribe to nothing (another protocol type, or a garbled one).
    """
    if not protocols:
        return []
    data = protocols[0][1]
    try:
        (count,) = struct.unpack_from(">i", data, 2)
        position, topics = 6, []
        for _ in range(count):
            (size,) = struct.unpack_from(">h", data, position)
            topics.append(data[position + 2 : position + 2 + size].decode())
            position += 2 + size
            if position > len(data):
                return []
    except (struct.error, UnicodeDecodeError):
        return []
    return topics
