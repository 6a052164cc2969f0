"""Consumer groups: membership and range assignment, positions, durable committed offsets.

Owns what a group of consumers inside one process shares: who is in it,
which partitions each member reads (Kafka's range assignor), and the
committed offsets, kept in the compacted internal ``__consumer_offsets`` log
in Kafka's record format (fsync on every commit). Knows partition logs only
through a lookup the broker gives it; never routes or creates topics.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from . import _offsets
from ._fs import Closing
from ._native import speedups
from ._offsets import GroupPartition
from .errors import (
    ConfigError,
    LogClosedError,
    OffsetOutOfRange,
    PartitionNotAssignedError,
    WrongTypeError,
)
from .log import Log
from .model import AtOffset, ConsumedRecord, Message, OffsetAndMetadata

logger = logging.getLogger(__name__)

#: Where a group without committed offsets starts: the log's start or end, its
#: last stored record, an explicit offset, a timestamp in ms, or that long ago
#: (NATS Streaming's start positions).
Start = Literal["earliest", "latest", "last"] | AtOffset | int | datetime.timedelta
_START_NAMES = ("earliest", "latest", "last")
_START_FORMS = (
    "'earliest', 'latest', 'last', an AtOffset, a timestamp in ms (int) or a datetime.timedelta"
)
PartitionsOf = Callable[[str], Sequence[Log]]
TopicPartition = tuple[str, int]


def _py_wrap(records: list[Any], topic: str, partition: int, kind: type) -> list[Any]:
    """``kind(topic, partition, record)`` for each record (the compiled ``wrap``'s twin).

    ``kind`` is a tuple subclass (``ConsumedRecord``): built with
    ``tuple.__new__``, a C loop, because a NamedTuple's own ``__new__`` is a
    Python call per record.
    """
    if not (isinstance(kind, type) and issubclass(kind, tuple)):
        raise TypeError("the wrapper type must be a tuple subclass")
    return list(
        map(
            tuple.__new__,
            itertools.repeat(kind),
            zip(itertools.repeat(topic), itertools.repeat(partition), records),
        )
    )


#: ``ConsumedRecord``s for a poll: the compiled loop, else its pure twin.
_wrap: Callable[[list[Any], str, int, type], list[Any]] = (
    _py_wrap if speedups is None else speedups.wrap
)


class OffsetStore:
    """Committed offsets of every group, backed by the ``__consumer_offsets`` log."""

    def __init__(self, log: Log, clock: Callable[[], int]) -> None:
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        live = _offsets.replay((r.key, r.value) for r in log.scan())
        self._committed = {
            e: OffsetAndMetadata(c.offset, c.metadata) for e, c in _offsets.committed(live).items()
        }
        self._rewrite(live)

    def _rewrite(self, live: dict[bytes, _offsets.LiveKey]) -> None:
        """Leave only Kafka's keys live: records written before the Kafka format, once.

        One batch, durable before the store is used: a crash before it leaves the
        old records to be rewritten at the next open; after it, the old keys'
        tombstones let compaction remove them, so no old record can outlive a
        later tombstone of its entry and bring it back.
        """
        records, dropped = _offsets.rewrites(live)
        if not records:
            return
        self._log.append_many([Message(value, key=key) for key, value in records])
        if self._log.config.fsync != "always":
            self._log.flush()
        for group, topic, partition in dropped:
            logger.warning(
                "group %r (%d characters): committed offset of %s-%d forgotten: the names "
                "do not fit Kafka's offsets schema (at most 32767 bytes of UTF-8, an int32)",
                group[:40],
                len(group),
                topic,
                partition,
            )
            del self._committed[(group, topic, partition)]

    def get(self, group: str, topic: str, partition: int) -> OffsetAndMetadata | None:
        with self._lock:
            return self._committed.get((group, topic, partition))

    def commit(self, group: str, positions: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Write every position, with its metadata, in one batch; durable when this returns.

        The metadata must have passed ``_offsets.metadata_error`` (the consumer checks it).
        """
        if not positions:
            return
        now = self._clock()
        messages = [
            Message(
                _offsets.encode_value(position.offset, now, position.metadata),
                key=_offsets.encode_key(group, t, p),
            )
            for (t, p), position in sorted(positions.items())
        ]
        with self._lock:
            self._log.append_many(messages)
            if self._log.config.fsync != "always":
                self._log.flush()
            for (t, p), position in positions.items():
                self._committed[(group, t, p)] = position

    def forget_topic(self, topic: str) -> None:
        """Tombstone every group's offsets of a deleted topic."""
        with self._lock:
            doomed = [e for e in self._committed if e[1] == topic]
            if doomed:
                self._log.append_many(
                    [Message(None, key=_offsets.encode_key(*entry)) for entry in doomed]
                )
                for entry in doomed:
                    del self._committed[entry]

    def group(self, group: str) -> dict[TopicPartition, OffsetAndMetadata]:
        """One group's committed positions with their metadata, ``(topic, partition) -> ...``."""
        with self._lock:
            return {(t, p): pos for (g, t, p), pos in self._committed.items() if g == group}

    def groups(self) -> dict[GroupPartition, int]:
        with self._lock:
            return {entry: position.offset for entry, position in self._committed.items()}


def range_assignment(
    members: Sequence[tuple[str, Sequence[str]]], partition_counts: dict[str, int]
) -> dict[str, list[TopicPartition]]:
    """Kafka's range assignor: per topic, members in id order take contiguous ranges."""
    out: dict[str, list[TopicPartition]] = {member: [] for member, _ in members}
    for topic, count in sorted(partition_counts.items()):
        subscribed = sorted(m for m, topics in members if topic in topics)
        if not subscribed:
            continue
        each, extra = divmod(count, len(subscribed))
        start = 0
        for i, member in enumerate(subscribed):
            take = each + (1 if i < extra else 0)
            out[member] += [(topic, p) for p in range(start, start + take)]
            start += take
    return out


#: ``admit(group, topics, the group's members' topics, the groups with members)``.
Admit = Callable[[str, Sequence[str], list[tuple[str, ...]], set[str]], None]


class GroupCoordinator:
    """The members of every group in this process, and their assignments."""

    def __init__(self, partitions_of: PartitionsOf, admit: Admit | None = None) -> None:
        self._partitions_of = partitions_of
        #: Called under the lock before a member is added; refuses by raising (the limits).
        self._admit = admit
        self._lock = threading.RLock()
        self._members: dict[str, list[Consumer]] = {}
        self._ids = itertools.count()

    def next_member_id(self, group: str) -> str:
        return f"{group}-{next(self._ids):06d}"

    def join(self, consumer: Consumer) -> None:
        """Add ``consumer`` to its group, unless ``admit`` refuses it (then nothing changes)."""
        with self._lock:
            if self._admit is not None:
                live = {group for group, members in self._members.items() if members}
                members = self._members.get(consumer.group, [])
                self._admit(consumer.group, consumer.topics, [m.topics for m in members], live)
            self._members.setdefault(consumer.group, []).append(consumer)
            self._rebalance(consumer.group)

    def leave(self, consumer: Consumer) -> None:
        with self._lock:
            members = self._members.get(consumer.group, [])
            if consumer in members:
                members.remove(consumer)
                self._rebalance(consumer.group)

    def rebalance_all(self) -> None:
        """After topics change: every group's assignment is computed again."""
        with self._lock:
            for group in list(self._members):
                self._rebalance(group)

    def close_all(self) -> None:
        """Close every member (the broker is closing)."""
        with self._lock:
            everyone = [m for members in self._members.values() for m in members]
        for member in everyone:
            member.close()

    def groups(self) -> set[str]:
        """The groups with members now."""
        with self._lock:
            return {group for group, members in self._members.items() if members}

    def members(self, group: str) -> list[Consumer]:
        with self._lock:
            return list(self._members.get(group, []))

    def _rebalance(self, group: str) -> None:
        members = self._members.get(group, [])
        counts: dict[str, int] = {}
        for member in members:
            for topic in member.topics:
                try:
                    counts[topic] = len(self._partitions_of(topic))
                except (LookupError, LogClosedError):  # deleted, or the broker is closing
                    counts[topic] = 0
        plan = range_assignment([(m.member_id, m.topics) for m in members], counts)
        for member in members:
            member._assign(plan[member.member_id])


def checked_position(topic: str, partition: int, given: object) -> OffsetAndMetadata:
    """A commit's next offset (an int or an ``OffsetAndMetadata``), checked as Kafka checks it.

    Raises:
        WrongTypeError: the offset is not an int >= 0, or the metadata not a str.
        ConfigError: the metadata is over 4096 bytes of UTF-8 or not encodable.
    """
    position = given if isinstance(given, OffsetAndMetadata) else OffsetAndMetadata(given)  # type: ignore[arg-type]
    offset, metadata = position
    if type(offset) is not int or offset < 0:
        raise WrongTypeError(f"offset must be an int >= 0, got {offset!r}")
    problem = _offsets.metadata_error(metadata)
    if problem is not None:
        kind = WrongTypeError if not isinstance(metadata, str) else ConfigError
        raise kind(f"the commit metadata of {topic}-{partition} {problem}")
    return position


class Consumer(Closing):
    """Reads records of its group's share of ``topics``; commits positions durably.

    Use one ``Consumer`` from one thread at a time (as with Kafka's consumer);
    several consumers of one group split the partitions and rebalance when one
    joins or closes. Delivery is at least once: records after the last commit
    are delivered again after a restart or a rebalance.
    """

    def __init__(
        self,
        group: str,
        topics: Sequence[str],
        *,
        start: Start,
        partitions_of: PartitionsOf,
        store: OffsetStore,
        coordinator: GroupCoordinator,
        data_ready: threading.Condition,
        clock: Callable[[], int],
    ) -> None:
        if not isinstance(group, str) or not group:
            raise WrongTypeError(f"group must be a non-empty str, got {group!r}")
        if not _offsets.fits(group):
            raise ConfigError(
                f"group {group[:40]!r} ({len(group)} characters) does not fit Kafka's offsets "
                f"schema: it must encode as at most {_offsets.MAX_STRING_BYTES} bytes of UTF-8"
            )
        if isinstance(topics, str):
            topics = [topics]
        if isinstance(start, AtOffset):
            if type(start.offset) is not int or start.offset < 0:
                raise WrongTypeError(f"AtOffset needs an int offset >= 0, got {start.offset!r}")
        elif isinstance(start, bool) or not isinstance(start, (str, int, datetime.timedelta)):
            raise WrongTypeError(f"start must be {_START_FORMS}, not {type(start).__name__}")
        elif isinstance(start, str) and start not in _START_NAMES:
            raise ConfigError(f"start {start!r} is not one of {_START_FORMS}")
        self.group = group
        self.topics = tuple(topics)
        self._start = start
        self._partitions_of = partitions_of
        self._store = store
        self._coordinator = coordinator
        self._data_ready = data_ready
        self._clock = clock
        self._lock = threading.RLock()
        self._positions: dict[TopicPartition, int] = {}
        self._next = 0
        self._closed = False
        for topic in self.topics:
            logs = partitions_of(topic)  # UnknownTopicError now, not at the first poll
            if isinstance(start, AtOffset):
                self._check_start_offset(topic, logs, start.offset)
        self.member_id = coordinator.next_member_id(group)
        coordinator.join(self)

    def _check_start_offset(self, topic: str, logs: Sequence[Log], offset: int) -> None:
        """Refuse a start offset past the end of a partition the group would start in.

        Checked here, not at assignment (which a rebalance runs in another
        member's call), so the caller that asked for the offset gets the error.
        Only partitions the group never committed count: the others resume.
        """
        for partition, log in enumerate(logs):
            if self._store.get(self.group, topic, partition) is not None:
                continue
            if offset > log.end_offset:
                raise OffsetOutOfRange(
                    f"start offset {offset} is beyond the end of {topic}-{partition}: "
                    f"its records are at offsets [{log.start_offset}, {log.end_offset}) "
                    f"and the next one will be at {log.end_offset}"
                )

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this member reads now, sorted."""
        with self._lock:
            return sorted(self._positions)

    def position(self, topic: str, partition: int) -> int:
        """The next offset this consumer will read from an assigned partition.

        Raises:
            PartitionNotAssignedError: the partition is not assigned to this member.
        """
        with self._lock:
            self._check_assigned(topic, partition)
            return self._positions[(topic, partition)]

    def _check_assigned(self, topic: str, partition: int) -> None:
        if (topic, partition) not in self._positions:
            assigned = ", ".join(f"{t}-{p}" for t, p in sorted(self._positions)) or "none"
            raise PartitionNotAssignedError(
                f"{topic}-{partition} is not assigned to consumer {self.member_id} "
                f"of group {self.group} (assigned: {assigned})",
                topic=topic,
                partition=partition,
            )

    def _assign(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            kept = {tp: pos for tp, pos in self._positions.items() if tp in partitions}
            for tp in partitions:
                if tp not in kept:
                    kept[tp] = self._initial_position(*tp)
            self._positions = kept

    def _initial_position(self, topic: str, partition: int) -> int:
        log = self._partitions_of(topic)[partition]
        committed = self._store.get(self.group, topic, partition)
        if committed is not None:
            return self._checked(topic, partition, log, committed.offset)
        start = self._start
        if start == "earliest":
            return log.start_offset
        if start == "latest":
            return log.end_offset
        if start == "last":  # empty: the end, as latest
            return max(log.start_offset, log.end_offset - 1)
        if isinstance(start, AtOffset):
            return self._start_offset(topic, partition, log, start.offset)
        if isinstance(start, datetime.timedelta):
            start = self._clock() - int(start.total_seconds() * 1000)
        assert isinstance(start, int)
        found = log.offset_for_timestamp(start)
        return log.end_offset if found is None else found

    def _start_offset(self, topic: str, partition: int, log: Log, offset: int) -> int:
        """An explicit start: below the log start (deleted by retention) it is the log
        start, as Kafka's ``auto.offset.reset=earliest``; past the end, which the
        constructor refused, the end (the log can only have been truncated since)."""
        if offset < log.start_offset:
            logger.warning(
                "group %s: start offset %d of %s-%d is below the log start %d "
                "(deleted by retention); starting there",
                self.group,
                offset,
                topic,
                partition,
                log.start_offset,
            )
            return log.start_offset
        return min(offset, log.end_offset)

    def _checked(self, topic: str, partition: int, log: Log, offset: int) -> int:
        if offset < log.start_offset:
            logger.warning(
                "group %s: committed offset %d of %s-%d was deleted by retention; "
                "resuming at the log start %d",
                self.group,
                offset,
                topic,
                partition,
                log.start_offset,
            )
            return log.start_offset
        if offset > log.end_offset:
            logger.warning(
                "group %s: committed offset %d of %s-%d is past the log end %d; resuming there",
                self.group,
                offset,
                topic,
                partition,
                log.end_offset,
            )
            return log.end_offset
        return offset

    def poll(self, max_records: int = 500, timeout_ms: int = 0) -> list[ConsumedRecord]:
        """Up to ``max_records`` records from the assigned partitions, waiting at most
        ``timeout_ms`` for some to arrive. Partitions are served in turn, so one
        busy partition does not starve the others."""
        if type(max_records) is not int or max_records < 1:
            raise WrongTypeError(f"max_records must be a positive int, got {max_records!r}")
        deadline = time.monotonic() + max(timeout_ms, 0) / 1000
        while True:
            out = self._fetch(max_records)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            with self._data_ready:
                # Producers through the broker notify; appends made directly to a
                # partition's Log do not, so wake up now and then to look.
                self._data_ready.wait(min(remaining, 0.05))

    def _fetch(self, max_records: int) -> list[ConsumedRecord]:
        with self._lock:
            self._check_open()
            assigned = sorted(self._positions)
            if not assigned:
                return []
            out: list[ConsumedRecord] = []
            first = self._next % len(assigned)
            self._next += 1
            for topic, partition in assigned[first:] + assigned[:first]:
                want = max_records - len(out)
                if want <= 0:
                    break
                log = self._partitions_of(topic)[partition]
                position = self._positions[(topic, partition)]
                if position < log.start_offset:
                    position = self._checked(topic, partition, log, position)
                end = log.end_offset
                if position >= end:
                    continue
                try:
                    records = log.read(position, max_records=want)
                except OffsetOutOfRange:  # retention moved the start meanwhile
                    position = self._checked(topic, partition, log, position)
                    records = log.read(position, max_records=want)
                if records:
                    out += _wrap(records, topic, partition, ConsumedRecord)
                    self._positions[(topic, partition)] = records[-1].offset + 1
                else:
                    # Nothing deliverable below ``end``: only offsets no read serves
                    # (Kafka's transaction markers, aborted transactions). Step over
                    # them as Kafka's consumer does, so the position, the lag and
                    # the commits reach the end.
                    self._positions[(topic, partition)] = end
            return out

    def commit(
        self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None
    ) -> None:
        """Commit every assigned partition's position; durable when this returns.

        ``offsets`` commits those next offsets instead (Kafka's
        ``commitSync(offsets)``), for a reader whose work on a record ends
        after the poll, such as a mirror that commits only what a cluster
        acknowledged. Each is an int, or an ``OffsetAndMetadata`` whose
        metadata string is kept with the offset (a plain int or ``commit()``
        keeps ``""``, as Kafka's commits without metadata do). Every partition
        in it must be assigned to this member; nothing is written unless all are valid.

        Raises:
            PartitionNotAssignedError: a partition of ``offsets`` is not assigned.
            WrongTypeError: an offset is not an int >= 0, or metadata not a str.
            ConfigError: metadata over 4096 bytes of UTF-8 (Kafka's
                ``offset.metadata.max.bytes``) or not encodable.
        """
        with self._lock:
            self._check_open()
            if offsets is None:
                positions = {tp: OffsetAndMetadata(o) for tp, o in self._positions.items()}
                self._store.commit(self.group, positions)
                return
            chosen: dict[TopicPartition, OffsetAndMetadata] = {}
            for (topic, partition), given in offsets.items():
                position = checked_position(topic, partition, given)
                self._check_assigned(topic, partition)
                chosen[(topic, partition)] = position
            self._store.commit(self.group, chosen)

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed next offset for a partition, as in Kafka; ``None`` if none."""
        found = self._store.get(self.group, topic, partition)
        return None if found is None else found.offset

    def committed_metadata(self, topic: str, partition: int) -> OffsetAndMetadata | None:
        """The group's commit of a partition with its metadata (Kafka's
        ``committed()`` answer, an ``OffsetAndMetadata``); ``None`` if none."""
        return self._store.get(self.group, topic, partition)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read an assigned partition from ``offset`` next.

        Raises:
            PartitionNotAssignedError: the partition is not assigned to this member.
            OffsetOutOfRange: ``offset`` is outside the partition's log.
        """
        if type(offset) is not int:
            raise WrongTypeError(f"offset must be an int, not {type(offset).__name__}")
        with self._lock:
            self._check_open()
            self._check_assigned(topic, partition)
            log = self._partitions_of(topic)[partition]
            if not log.start_offset <= offset <= log.end_offset:
                raise OffsetOutOfRange(
                    f"offset {offset} is outside {topic}-{partition}'s range "
                    f"[{log.start_offset}, {log.end_offset}]"
                )
            self._positions[(topic, partition)] = offset

    def close(self) -> None:
        """Leave the group (its partitions go to the other members). Does not commit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._positions = {}
        self._coordinator.leave(self)

    def _closed_message(self) -> str:
        return f"consumer {self.member_id} is closed"
