"""Mirroring a broker root's topics onto a Kafka cluster, resumably and in order.

Owns the copy: topics created on the cluster with the source's partition
counts (or checked), every record produced to the same partition number with
its key, value, headers and timestamp, and the mirror's position kept as a
consumer group of the root, committed only up to what the cluster
acknowledged. Knows the ``Broker`` and its consumers, and a Kafka client
(confluent-kafka, imported only when a mirror runs, so the package works
without it); knows no command line.

Why a restart neither loses nor repeats a record, without altering one (the
cluster gets each record's own key, value, headers and timestamp):

1. The producer is idempotent with ``acks=all`` and librdkafka's gapless
   guarantee: within one run the cluster holds each partition's records once,
   in the order produced, with no gap before an acknowledged one.
2. The mirror is the only writer of its target topics, so a cluster
   partition's offsets are dense and each record produced takes the next one.
3. A partition's position is ONE commit in the root's group: the source's
   next offset ``S`` and, in the commit's metadata (``kafka-offset=<K>``,
   decimal), the cluster partition's offset ``K`` that record ``S`` goes to.
   One record holds both, so they always agree. It advances only to the
   highest *contiguously* acknowledged record; a delivery error stops the
   mirror, and nothing at or past the failed record is committed.
4. At the start the cluster's end offset ``E`` says how many records it took
   after the commit, acknowledged or not: ``n = E - K``. Those are the first
   ``n`` records of the source from ``S`` (read and counted: a compacted
   source has gaps), so the copy resumes after them, and the last of them
   must equal the cluster's record at ``E - 1`` (key, value, timestamp),
   which catches a source compacted since, or another writer. A partition
   never committed gets ``(its log start, E)`` committed before anything is
   produced to it, so a kill before its next commit is resumed exactly too.
5. ``E < K`` means the cluster lost records (the topic recreated or
   truncated): refused, unless ``start_over`` copies that partition again
   from the source's start.

``offset_header`` (off by default) adds each record's source offset as a
header, for provenance only: the resume does not read it.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .broker import Broker
from .consumer import Consumer
from .errors import LogLockedError, MirrorError
from .kafkacluster import Cluster, import_client
from .mirrorposition import (
    METADATA_PREFIX,
    PartitionProgress,
    Resume,
    check_held,
    kafka_offset_of,
    metadata_for,
    resume_point,
    skip_held,
)
from .model import ConsumedRecord, Record
from .topic import Topic

__all__ = [
    "DEFAULT_GROUP",
    "METADATA_PREFIX",
    "MirrorSummary",
    "PartitionProgress",
    "PartitionSummary",
    "Resume",
    "check_held",
    "import_client",
    "kafka_offset_of",
    "metadata_for",
    "mirror",
    "resume_point",
    "skip_held",
]

logger = logging.getLogger(__name__)

DEFAULT_GROUP = "logstore-mirror"
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


class _Run:
    """One ``mirror`` call: positions and counts across the passes over the root."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        group: str,
        topics: Sequence[str] | None,
        offset_header: str | None,
        start_over: bool,
        commit_interval_s: float,
        stop: threading.Event,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.cluster = cluster
        self.start_over = start_over
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
        missing: set[str] = set()
        if new:
            missing = set(self.cluster.missing_topics({n: sources[n].partitions for n in new}))
        if not names:
            return
        with broker.consumer(self.group, names, start="earliest") as consumer:
            # Every new topic's resume is found (or refused) before the cluster changes.
            plans = {
                name: self._plan(consumer, sources[name], exists=name not in missing)
                for name in new
            }
            if missing:
                self.cluster.create_topics(
                    {n: (sources[n].partitions, sources[n].config.cleanup_policy) for n in missing}
                )
            for name, plan in plans.items():
                self._begin(consumer, name, plan)
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
                self._drain(consumer)
                self._commit(consumer)
                for name in names:
                    for p in range(sources[name].partitions):
                        self.ends[(name, p)] = sources[name].partition(p).end_offset
            self._raise_failures()

    def _plan(self, consumer: Consumer, topic: Topic, *, exists: bool) -> list[tuple[int, int]]:
        """Each partition's (source position, cluster offset) to start from: after what the
        cluster took past the commit, checked against the cluster's last record."""
        name = topic.name
        ends = self.cluster.end_offsets(name, topic.partitions) if exists else {}
        plan: list[tuple[int, int]] = []
        last_skipped: dict[int, Record] = {}
        for p in range(topic.partitions):
            log = topic.partition(p)
            kafka_end = ends.get(p, 0)
            resume = resume_point(
                name,
                p,
                committed=consumer.committed_metadata(name, p),
                log_start=log.start_offset,
                kafka_end=kafka_end,
                start_over=self.start_over,
            )
            position, last = skip_held(log, name, p, resume)
            if last is not None:
                last_skipped[p] = last
                logger.info(
                    "%s-%d: the cluster holds %d record(s) past the commit at offset %d "
                    "(%s%d): resuming at offset %d",
                    name,
                    p,
                    resume.held,
                    resume.position,
                    METADATA_PREFIX,
                    resume.kafka_offset,
                    position,
                )
            plan.append((position, kafka_end))
        theirs = self.cluster.records_at(name, {p: ends[p] - 1 for p in last_skipped})
        for p, ours in last_skipped.items():
            check_held(name, p, ours, theirs[p], kafka_offset=ends[p] - 1)
        return plan

    def _begin(self, consumer: Consumer, name: str, plan: list[tuple[int, int]]) -> None:
        """Seek to the plan and commit it (with the cluster offsets) before producing."""
        for p, (position, kafka_end) in enumerate(plan):
            consumer.seek(name, p, position)
            self.states[(name, p)] = PartitionProgress(name, p, position, kafka_end)
        consumer.commit(
            {(name, p): self.states[(name, p)].commit_position() for p in range(len(plan))}
        )

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

    def _drain(self, consumer: Consumer) -> None:
        """Wait for every delivery report (each record fails by itself after the timeout),
        committing as they come: the client may hold a whole pass's records at once."""
        producer = self.cluster.producer
        now = time.monotonic()
        deadline = now + self.cluster.timeout_s + 5
        last_commit = now
        while any(s.pending for s in self.states.values()) and now < deadline:
            producer.poll(min(0.1, max(self.commit_interval_s, 0.001)))
            if self.cluster.fatal is not None:
                break
            self._report()
            now = time.monotonic()
            if now - last_commit >= self.commit_interval_s:
                self._commit(consumer)
                last_commit = now
        self._report()

    def _commit(self, consumer: Consumer) -> None:
        positions = {
            tp: s.commit_position() for tp, s in self.states.items() if tp[0] in consumer.topics
        }
        consumer.commit(positions)
        logger.debug(
            "committed %s: %s",
            self.group,
            " ".join(f"{t}-{p}={o.offset}/{o.metadata}" for (t, p), o in sorted(positions.items())),
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
    offset_header: str | None = None,
    start_over: bool = False,
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

    The mirror must be the only writer of its target topics: its resume
    counts the records a cluster partition holds past its commit (see the
    module's docstring). Records go as they are; ``offset_header`` names a
    header to add with each record's source offset (provenance only).
    ``start_over`` copies a partition the mirror cannot resume exactly (its
    cluster partition shorter than the commit says, the commit not a
    mirror's) again from the source's start, after what the cluster holds,
    instead of refusing it.

    A record whose timestamp is 0 or less gets the producer's current time
    (librdkafka's rule for "no timestamp").

    Raises:
        MirrorError: the client is missing, the cluster unreachable within
            ``timeout_s``, a topic's partition count differs, a partition
            cannot be resumed exactly (and ``start_over`` is off), or a record failed.
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
        start_over=start_over,
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
