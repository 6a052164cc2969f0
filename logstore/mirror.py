"""Mirroring a broker root's topics onto a Kafka cluster, resumably and in order.

Owns the copy: topics created on the cluster with the source's partition
counts (or checked), every record produced to the same partition number with
its key, value, headers and timestamp, and the mirror's position kept as a
consumer group of the root, committed only up to what the cluster
acknowledged. Knows the ``Broker`` and its consumers, and a Kafka client
(confluent-kafka, imported only when a mirror runs, so the package works
without it); knows no command line.

Why a restart neither loses nor repeats a record:

1. The producer is idempotent with ``acks=all`` and librdkafka's gapless
   guarantee: within one run the cluster holds each partition's records once,
   in the order produced, with no gap before an acknowledged one.
2. A partition's commit advances only to the highest *contiguously*
   acknowledged source offset; a delivery error stops the mirror, and nothing
   at or past the failed record is committed.
3. Each mirrored record carries its source offset in a header
   (``logstore.offset``, decimal ASCII). A run killed after the cluster
   acknowledged records but before their commit leaves them there: at the
   next start the last record of each cluster partition says where the copy
   really is, and the mirror resumes after it instead of sending them again.
   Without the header (``offset_header=None``) a restart is at least once.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .broker import Broker
from .consumer import Consumer
from .errors import LogLockedError, MirrorError
from .kafkacluster import Cluster, import_client
from .model import ConsumedRecord

logger = logging.getLogger(__name__)

DEFAULT_GROUP = "logstore-mirror"
#: The header that carries each mirrored record's source offset.
OFFSET_HEADER = "logstore.offset"
_CHUNK = 2000  # records per poll of the root: between two services of the client


@dataclass(frozen=True)
class PartitionSummary:
    """One source partition after a mirror: what this run copied and what is left."""

    topic: str
    partition: int
    #: Records (and their key, value and header bytes) acknowledged in this run.
    records: int
    bytes: int
    #: The group's committed next offset, and the source partition's end offset.
    position: int
    end_offset: int

    @property
    def lag(self) -> int:
        """Offsets of the source not yet mirrored (records, unless compaction left gaps)."""
        return max(self.end_offset - self.position, 0)


@dataclass(frozen=True)
class MirrorSummary:
    """What a ``mirror`` run did, partition by partition (sorted)."""

    partitions: tuple[PartitionSummary, ...]
    seconds: float
    #: Whether ``stop`` ended it (a signal) rather than catching up.
    interrupted: bool

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


def resume_position(
    topic: str, partition: int, *, position: int, start: int, end: int, mirrored: int | None
) -> int:
    """Where to copy a partition from: after the last source offset the cluster holds.

    ``position`` is the group's (committed, else the log start); ``mirrored``
    the source offset in the cluster partition's last record (``None``: empty,
    or not written by a mirror). The cluster is the judge of what it holds: a
    run killed before its commit is resumed past what was acknowledged, and a
    cluster that lost records (a topic recreated) gets them again.

    Raises:
        MirrorError: the cluster holds an offset past the source's end (another source?).
    """
    if mirrored is None:
        return position
    if mirrored >= end:
        raise MirrorError(
            f"{topic}-{partition}: the cluster already holds source offset {mirrored}, but the "
            f"source ends at {end}: was it mirrored from another root?"
        )
    after = max(mirrored + 1, start)
    if after < position:
        logger.warning(
            "%s-%d: the cluster holds source offsets up to %d only, below the committed %d: "
            "copying again from %d",
            topic,
            partition,
            mirrored,
            position,
            after,
        )
    elif after > position:
        logger.info(
            "%s-%d: the cluster holds source offsets up to %d, past the committed %d: "
            "resuming at %d",
            topic,
            partition,
            mirrored,
            position,
            after,
        )
    return after


class PartitionProgress:
    """One partition's sent records and the contiguous prefix the cluster acknowledged.

    ``next`` is the offset after the last record of that prefix: what may be
    committed. Delivery reports may come in any order; a failed record stays
    at the front forever, so nothing past it is ever counted as delivered.
    """

    __slots__ = ("acked", "bytes", "failure", "next", "partition", "records", "sent", "topic")

    def __init__(self, topic: str, partition: int, position: int) -> None:
        self.topic, self.partition = topic, partition
        self.next = position
        self.sent: deque[tuple[int, int]] = deque()  # (offset, size) in production order
        self.acked: set[int] = set()
        self.records = self.bytes = 0
        self.failure: tuple[int, str] | None = None

    def sending(self, offset: int, size: int) -> None:
        """``offset`` (``size`` bytes) was handed to the client; reports must follow."""
        self.sent.append((offset, size))

    def delivered(self, offset: int, error: Any, _message: Any = None) -> None:
        """A delivery report (the client's ``on_delivery(error, message)`` for ``offset``)."""
        sent = self.sent
        if error is None and not self.acked and sent and sent[0][0] == offset:
            self.next = offset + 1  # in order, as the reports almost always come
            self.records += 1
            self.bytes += sent.popleft()[1]
            return
        if error is not None:
            text = error if isinstance(error, str) else error.str()
            if self.failure is None or offset < self.failure[0]:
                self.failure = (offset, text)
            return
        acked = self.acked
        acked.add(offset)
        while sent and sent[0][0] in acked:
            done, size = sent.popleft()
            acked.discard(done)
            self.next = done + 1
            self.records += 1
            self.bytes += size

    @property
    def pending(self) -> int:
        return len(self.sent)


class _Run:
    """One ``mirror`` call: positions and counts across the passes over the root."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        group: str,
        topics: Sequence[str] | None,
        offset_header: str | None,
        commit_interval_s: float,
        stop: threading.Event,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.cluster = cluster
        self.group = group
        self.topics = None if topics is None else list(dict.fromkeys(topics))
        self.offset_header = offset_header
        self.commit_interval_s = commit_interval_s
        self.stop = stop
        self.progress = progress
        self.states: dict[tuple[str, int], PartitionProgress] = {}
        self.ends: dict[tuple[str, int], int] = {}
        self.checked: set[str] = set()
        self.copied = 0
        self.total = 0
        self.connected = False

    def copy(self, broker: Broker) -> None:
        """One pass: copy everything the root holds now, wait for the cluster, commit."""
        names = self.topics if self.topics is not None else broker.topics()
        sources = {name: broker.topic(name) for name in names}  # UnknownTopicError first
        if not self.connected:
            self.cluster.connect()
            self.connected = True
        new = [name for name in names if name not in self.checked]
        created: set[str] = set()
        if new:
            wanted = {n: (sources[n].partitions, sources[n].config.cleanup_policy) for n in new}
            created = set(self.cluster.ensure_topics(wanted))
        if not names:
            return
        with broker.consumer(self.group, names, start="earliest") as consumer:
            for name in new:
                self._start_topic(consumer, broker, name, probe=name not in created)
                self.checked.add(name)
            backlog = 0
            for name in names:
                for p in range(sources[name].partitions):
                    state = self.states[(name, p)]
                    state.next = consumer.position(name, p)
                    backlog += max(sources[name].partition(p).end_offset - state.next, 0)
            self.total = self.copied + backlog
            self._report()
            try:
                self._produce_all(consumer)
            finally:
                self._drain()
                self._commit(consumer)
                for name in names:
                    for p in range(sources[name].partitions):
                        self.ends[(name, p)] = sources[name].partition(p).end_offset
            self._raise_failures()

    def _start_topic(self, consumer: Consumer, broker: Broker, name: str, *, probe: bool) -> None:
        """Resume each partition after what the cluster holds; commit where that moved it."""
        topic = broker.topic(name)
        mirrored: dict[int, int | None] = {}
        if probe and self.offset_header is not None:
            mirrored = self.cluster.last_mirrored(name, topic.partitions, self.offset_header)
        moved: dict[tuple[str, int], int] = {}
        for p in range(topic.partitions):
            log = topic.partition(p)
            position = consumer.position(name, p)
            resume = resume_position(
                name,
                p,
                position=position,
                start=log.start_offset,
                end=log.end_offset,
                mirrored=mirrored.get(p),
            )
            if resume != position or consumer.committed(name, p) is None:
                consumer.seek(name, p, resume)
                moved[(name, p)] = resume
            self.states[(name, p)] = PartitionProgress(name, p, resume)
        consumer.commit(moved)

    def _produce_all(self, consumer: Consumer) -> None:
        producer = self.cluster.producer
        last_commit = time.monotonic()
        while not self.stop.is_set():
            records = consumer.poll(_CHUNK)
            if not records:
                return
            self._produce_chunk(producer, records)
            producer.poll(0)
            self.cluster.check_fatal()
            if self._failed():
                return
            self._report()
            now = time.monotonic()
            if now - last_commit >= self.commit_interval_s:
                self._commit(consumer)
                last_commit = now

    def _produce_chunk(self, producer: Any, records: list[ConsumedRecord]) -> None:
        """Hand each record to the client, in order (the per-record loop: locals only)."""
        produce, states, header = producer.produce, self.states, self.offset_header
        partial = functools.partial
        for topic, partition, record in records:
            state = states[(topic, partition)]
            key, value, offset, headers = record.key, record.value, record.offset, record.headers
            size = (len(key) if key else 0) + (len(value) if value else 0)
            if headers:
                size += sum(len(name) + (len(data) if data else 0) for name, data in headers)
            if header is not None:
                headers = (*headers, (header, b"%d" % offset))
            state.sent.append((offset, size))
            listed = list(headers) if headers else None
            callback = partial(state.delivered, offset)
            try:
                produce(
                    topic,
                    value,
                    key,
                    partition,
                    timestamp=record.timestamp,
                    headers=listed,
                    on_delivery=callback,
                )
            except BufferError:  # the client's queue is full: let it send some
                arguments = {"timestamp": record.timestamp, "headers": listed}
                self._produce_when_room(
                    producer, (topic, value, key, partition), {**arguments, "on_delivery": callback}
                )

    def _produce_when_room(
        self, producer: Any, positional: tuple[Any, ...], arguments: dict[str, Any]
    ) -> None:
        while True:
            producer.poll(0.05)
            self.cluster.check_fatal()
            try:
                producer.produce(*positional, **arguments)
                return
            except BufferError:
                continue

    def _drain(self) -> None:
        """Wait for every delivery report (each record fails by itself after the timeout)."""
        producer = self.cluster.producer
        deadline = time.monotonic() + self.cluster.timeout_s + 5
        while any(s.pending for s in self.states.values()) and time.monotonic() < deadline:
            producer.poll(0.1)
            if self.cluster.fatal is not None:
                break
        self._report()

    def _commit(self, consumer: Consumer) -> None:
        positions = {tp: s.next for tp, s in self.states.items() if tp[0] in consumer.topics}
        consumer.commit(positions)
        logger.debug(
            "committed %s: %s",
            self.group,
            " ".join(f"{t}-{p}={o}" for (t, p), o in sorted(positions.items())),
        )

    def _failed(self) -> bool:
        return any(s.failure is not None for s in self.states.values())

    def _raise_failures(self) -> None:
        self.cluster.check_fatal()
        for state in self.states.values():
            if state.failure is not None:
                offset, error = state.failure
                raise MirrorError(
                    f"{state.topic}-{state.partition} offset {offset}: the cluster did not take "
                    f"the record: {error}; committed up to {state.next}"
                )
        stuck = sum(s.pending for s in self.states.values())
        if stuck:
            raise MirrorError(
                f"{stuck} record(s) not acknowledged by the cluster within "
                f"{self.cluster.timeout_s:g} s; committed what was"
            )

    def _report(self) -> None:
        self.copied = sum(s.records for s in self.states.values())
        if self.progress is not None:
            self.progress(self.copied, max(self.total, self.copied))

    def summary(self, seconds: float) -> MirrorSummary:
        return MirrorSummary(
            tuple(
                PartitionSummary(t, p, s.records, s.bytes, s.next, self.ends.get((t, p), s.next))
                for (t, p), s in sorted(self.states.items())
            ),
            seconds,
            self.stop.is_set(),
        )


def mirror(
    source: Broker | str | os.PathLike[str],
    bootstrap_servers: str,
    *,
    topics: Sequence[str] | None = None,
    group: str = DEFAULT_GROUP,
    follow: bool = False,
    stop: threading.Event | None = None,
    poll_interval_s: float = 1.0,
    commit_interval_s: float = 1.0,
    timeout_s: float = 30.0,
    offset_header: str | None = OFFSET_HEADER,
    replication_factor: int | None = None,
    properties: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MirrorSummary:
    """Copy ``topics`` (default: every topic) of a broker root to the Kafka cluster.

    ``source`` is an open ``Broker`` or the path of a root (opened here, and in
    follow mode closed between passes so that other processes can write to it:
    a root another process holds is waited for). ``follow`` copies new records
    every ``poll_interval_s`` until ``stop`` is set; without it the mirror ends
    when caught up, or at ``stop``. Either way every record acknowledged is
    committed in ``group`` before this returns. ``properties`` are librdkafka
    settings (security, say); ``acks`` and ``enable.idempotence`` stay as the
    guarantees need. ``progress(copied, known)`` is called as records are acknowledged.

    A record whose timestamp is 0 or less gets the producer's current time
    (librdkafka's rule for "no timestamp").

    Raises:
        MirrorError: the client is missing, the cluster unreachable within
            ``timeout_s``, a topic's partition count differs, or a record failed.
        UnknownTopicError: a topic of ``topics`` is not in the root.
        LogLockedError: the root is held by another process at the start.
    """
    if isinstance(source, Broker):
        path = None
    else:
        path = os.fspath(source)
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "no broker root there", path)
    if isinstance(topics, str):
        topics = [topics]
    kafka = import_client()
    stop = threading.Event() if stop is None else stop
    started = time.monotonic()
    cluster = Cluster(
        kafka,
        bootstrap_servers,
        timeout_s=timeout_s,
        properties=dict(properties or {}),
        replication_factor=replication_factor,
    )
    run = _Run(
        cluster,
        group=group,
        topics=topics,
        offset_header=offset_header,
        commit_interval_s=commit_interval_s,
        stop=stop,
        progress=progress,
    )
    try:
        first = True
        while True:
            if isinstance(source, Broker):
                run.copy(source)
            else:
                assert path is not None
                try:
                    broker = Broker.open(path, maintenance_interval_ms=None)
                except LogLockedError:
                    if first:
                        raise
                    logger.debug("%s is held by another process: waiting", path)
                else:
                    with broker:
                        run.copy(broker)
            first = False
            if not follow or stop.wait(poll_interval_s):
                break
    finally:
        cluster.close()
    return run.summary(time.monotonic() - started)
