"""A mirror's position in each partition: its commit, the resume, the acknowledged prefix.

Owns the rules ``logstore.mirror`` rests on (its docstring says why they
make a restart exact): the commit metadata ``kafka-offset=<K>`` kept with a
partition's committed source offset, where a partition resumes given that
commit and the cluster partition's end offset (``resume_point``, then
``skip_held`` over the source's records and ``check_held`` against the
cluster's last one), and the contiguous prefix of acknowledged records that
may be committed (``PartitionProgress``). Pure: reads a source ``Log`` but
knows no Kafka client and no broker.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from .errors import MirrorError
from .log import Log
from .model import OffsetAndMetadata, Record

logger = logging.getLogger(__name__)

#: The commit metadata: ``kafka-offset=<K>``, K the cluster offset of the committed source offset.
METADATA_PREFIX = "kafka-offset="
_METADATA = re.compile(re.escape(METADATA_PREFIX) + r"(0|[1-9][0-9]*)")
_CHUNK = 2000  # records per read when skipping what the cluster holds


def metadata_for(kafka_offset: int) -> str:
    """The commit metadata of a position: the cluster offset its source offset goes to."""
    return f"{METADATA_PREFIX}{kafka_offset}"


def kafka_offset_of(metadata: str) -> int | None:
    """The cluster offset in a mirror's commit metadata; ``None`` if it is not the mirror's."""
    found = _METADATA.fullmatch(metadata)
    return None if found is None else int(found.group(1))


@dataclass(frozen=True)
class Resume:
    """Where a partition's copy starts before counting what the cluster already holds."""

    #: The source's next offset, and the cluster offset it corresponds to.
    position: int
    kafka_offset: int
    #: Records the cluster took after that commit: skipped in the source from ``position``.
    held: int


def resume_point(
    topic: str,
    partition: int,
    *,
    committed: OffsetAndMetadata | None,
    log_start: int,
    kafka_end: int,
    start_over: bool = False,
) -> Resume:
    """A partition's resume from its commit and the cluster partition's end offset.

    No commit: from the log start, the cluster's end being where it goes.
    ``start_over`` turns a refusal into that same start (the partition is
    copied again, after what the cluster holds).

    Raises:
        MirrorError: the commit is not the mirror's (no ``kafka-offset=``
            metadata), or the cluster holds fewer records than it counts.
    """
    fresh = Resume(log_start, kafka_end, 0)
    if committed is None:
        if kafka_end:
            logger.warning(
                "%s-%d: the group has no commit but the cluster partition holds %d record(s): "
                "copying from the source's start after them",
                topic,
                partition,
                kafka_end,
            )
        return fresh
    kafka_offset = kafka_offset_of(committed.metadata)
    if kafka_offset is None:
        problem = (
            f"{topic}-{partition}: the group's commit (offset {committed.offset}) has no "
            f"{METADATA_PREFIX} metadata: not a mirror's commit (use another group, or "
            "--start-over to copy the partition again)"
        )
    elif kafka_end < kafka_offset:
        problem = (
            f"{topic}-{partition}: the cluster partition ends at offset {kafka_end}, before the "
            f"{kafka_offset} the mirror committed: was the topic recreated or truncated? "
            "(--start-over copies the partition again from the source's start)"
        )
    else:
        return Resume(committed.offset, kafka_offset, kafka_end - kafka_offset)
    if not start_over:
        raise MirrorError(problem)
    logger.warning("%s; starting over from offset %d", problem.split(" (", 1)[0], log_start)
    return fresh


def skip_held(log: Log, topic: str, partition: int, resume: Resume) -> tuple[int, Record | None]:
    """The source offset after the ``resume.held`` records from ``resume.position``, and the
    last of them (``None`` when none), read from the log: offsets may have gaps.

    Raises:
        MirrorError: the source has fewer records there than the cluster took
            (another writer?), or retention deleted some of them.
    """
    position, count = resume.position, resume.held
    if count == 0:
        return min(max(position, log.start_offset), log.end_offset), None
    if position < log.start_offset:
        raise MirrorError(
            f"{topic}-{partition}: the cluster took {count} record(s) after the commit at offset "
            f"{position}, and retention deleted the source up to {log.start_offset} since: "
            "cannot tell where to resume (--start-over copies the partition again)"
        )
    last: Record | None = None
    remaining = count
    while remaining:
        records = log.read(position, max_records=min(remaining, _CHUNK))
        if not records:
            raise MirrorError(
                f"{topic}-{partition}: the cluster took {count} record(s) after the commit at "
                f"offset {resume.position}, but the source has only {count - remaining} from "
                "there: is the mirror the only writer of the topic?"
            )
        remaining -= len(records)
        last = records[-1]
        position = last.offset + 1
    return position, last


def check_held(
    topic: str,
    partition: int,
    ours: Record,
    theirs: tuple[bytes | None, bytes | None, int] | None,
    *,
    kafka_offset: int,
) -> None:
    """The last record skipped must be the cluster's last one: same key, value, timestamp.

    ``theirs`` ``None`` (the cluster's retention or compaction removed it) is
    not checked. A record with no timestamp (0 or less) got the producer's
    time, so only its key and value are compared.

    Raises:
        MirrorError: they differ: the source was compacted since the records
            were sent, or something else wrote to the topic.
    """
    if theirs is None:
        logger.debug(
            "%s-%d: the cluster's record at offset %d is gone: the resume is not checked",
            topic,
            partition,
            kafka_offset,
        )
        return
    key, value, timestamp = theirs
    if (
        key == ours.key
        and value == ours.value
        and (ours.timestamp <= 0 or timestamp == ours.timestamp)
    ):
        return
    raise MirrorError(
        f"{topic}-{partition}: the cluster's record at offset {kafka_offset} is not the source's "
        f"record at offset {ours.offset} (key, value or timestamp differ): was the source "
        "compacted since, or did something else write to the topic? (--start-over copies the "
        "partition again)"
    )


class PartitionProgress:
    """One partition's sent records and the contiguous prefix the cluster acknowledged.

    ``next`` is the offset after the last record of that prefix: what may be
    committed, with ``kafka_next``, the cluster offset the record at ``next``
    goes to (the cluster's end when the run started, plus each record of the
    prefix: the mirror is the only writer). Delivery reports may come in any
    order; a failed record stays at the front forever, so nothing past it is
    ever counted as delivered.
    """

    __slots__ = (
        "acked",
        "bytes",
        "failure",
        "kafka_start",
        "next",
        "partition",
        "records",
        "sent",
        "topic",
    )

    def __init__(self, topic: str, partition: int, position: int, kafka_start: int = 0) -> None:
        self.topic, self.partition = topic, partition
        self.next = position
        self.kafka_start = kafka_start
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

    @property
    def kafka_next(self) -> int:
        return self.kafka_start + self.records

    def commit_position(self) -> OffsetAndMetadata:
        """What to commit: ``next``, with ``kafka_next`` in the metadata."""
        return OffsetAndMetadata(self.next, metadata_for(self.kafka_next))
