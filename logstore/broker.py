"""``Broker``: topics of partitioned logs under one root directory, with consumer groups.

A broker root is a Kafka log dir: one ``<topic>-<partition>`` directory per
partition (each a ``Log``), plus the broker's own state in files at the root
(``logstore-topics.json``, read and written by ``topicmeta``) and the internal
compacted ``__consumer_offsets`` topic. Owns the topics in memory, the steps
of creating and deleting one, producing, and the shared resources: one handle
cache for every partition, and a maintenance thread that applies retention
and compaction. Knows nothing of bytes on disk; routing is ``Topic``'s.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import _offsets, topicmeta
from ._dirkind import refuse_other_kind
from ._fs import Closing, DirectoryLock, HandleCache, make_dirs
from .checkpoints import partition_dir_name
from .config import LogConfig
from .consumer import Consumer, GroupCoordinator, OffsetStore, Start, checked_position
from .errors import (
    ConfigError,
    InvalidTopicName,
    LogClosedError,
    TopicExistsError,
    UnknownTopicError,
    WrongTypeError,
)
from .limits import StoreLimits, checked_limits
from .loader import RecoveryAction
from .log import Clock, Log, wall_clock_ms
from .maintenance import Maintenance
from .model import AppendItem, Header, Message, OffsetAndMetadata
from .partitioner import number
from .producer import TopicProducing
from .recoverypool import DEFAULT_RECOVERY_THREADS, check_recovery_threads, open_all
from .topic import Topic, check_topic_name, pair_key

logger = logging.getLogger(__name__)


class Broker(Closing, TopicProducing, StoreLimits):
    """Topics of partitioned logs under one root directory, with consumer groups.

    Use ``Broker.open``. Safe to use from several threads; one process per root.
    """

    def __init__(
        self,
        root: str,
        default_config: LogConfig,
        lock: DirectoryLock,
        *,
        max_open_files: int,
        maintenance_interval_ms: int | None,
        clock: Clock,
        limits: tuple[int | None, int | None] = (None, None),
        recovery_threads: int = DEFAULT_RECOVERY_THREADS,
    ) -> None:
        self.root = root
        self.max_topics, self.max_groups = limits  # see logstore.limits
        self._recovery_threads = recovery_threads
        self.default_config = default_config
        self._dir_lock = lock
        self._clock = clock
        self._lock = threading.RLock()
        self._commit_lock = threading.Lock()
        self._closed = False
        self._handles = HandleCache(max_open_files)
        self._topics: dict[str, Topic] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._data_ready = threading.Condition()
        self.recovery_report: dict[str, tuple[RecoveryAction, ...]] = {}
        self._coordinator = GroupCoordinator(lambda name: self.topic(name).logs, self._admit)
        self._stop = threading.Event()
        #: The broker's one housekeeping thread: its maintenance and every partition's fsyncs.
        self._maintenance = Maintenance(f"logstore-maintenance-{root}")
        try:
            self._load()
            offsets = self._internal_offsets_topic()
            self._offsets = OffsetStore(offsets.partition(0), clock)
            # Offsets of a topic the metadata no longer has (a deletion that a crash
            # interrupted, finished by _load) go now, whenever that crash came: a
            # topic of the same name created later must not inherit them.
            known = set(self._metadata)
            for name in sorted({topic for _, topic, _ in self._offsets.groups()} - known):
                self._offsets.forget_topic(name)
        except BaseException:
            self._maintenance.close()
            self._close_logs()
            raise
        if maintenance_interval_ms:
            self._maintenance.every(maintenance_interval_ms, self.run_maintenance, owner=self)

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        default_config: LogConfig | None = None,
        *,
        max_open_files: int = 1024,
        maintenance_interval_ms: int | None = 60_000,
        clock: Clock | None = None,
        max_topics: int | None = None,
        max_groups: int | None = None,
        recovery_threads: int = DEFAULT_RECOVERY_THREADS,
    ) -> Broker:
        """Open (creating if needed) the broker root ``root`` and recover every partition.

        Partitions are opened (and recovered, after an unclean shutdown)
        ``recovery_threads`` at a time (Kafka's ``num.recovery.threads.per.data.dir``;
        1: one after another; ``ConfigError`` unless an int >= 1);
        ``recovery_report`` says per partition what recovery did.
        ``max_open_files`` bounds the open ``.log`` handles of all segments of
        all partitions, active ones included (least recently used closed first;
        a handle whose data waits for an fsync stays open until then); each
        partition also keeps its lock file open. A maintenance thread applies retention
        and compaction to every partition each ``maintenance_interval_ms``
        (``None``: no periodic pass); the same thread runs what a partition's
        roll makes due and its interval fsyncs, and starts when first needed.
        ``max_topics``, ``max_groups``: store limits (``None`` or 0: unlimited; see
        ``logstore.limits``); topics already on disk are kept, even over ``max_topics``.
        """
        if default_config is None:
            default_config = LogConfig()
        elif not isinstance(default_config, LogConfig):
            raise WrongTypeError(
                f"default_config must be a LogConfig, not {type(default_config).__name__}"
            )
        if type(max_open_files) is not int or max_open_files < 1:
            raise ConfigError(f"max_open_files must be an integer >= 1, got {max_open_files!r}")
        limits = checked_limits(max_topics=max_topics, max_groups=max_groups)
        check_recovery_threads(recovery_threads)
        directory = os.fspath(root)
        refuse_other_kind(directory, "broker")
        make_dirs(directory)  # durable: fsyncs each new entry's parent
        lock = DirectoryLock(directory)
        try:
            return cls(
                directory,
                default_config,
                lock,
                max_open_files=max_open_files,
                maintenance_interval_ms=maintenance_interval_ms,
                clock=clock or wall_clock_ms,
                limits=limits,
                recovery_threads=recovery_threads,
            )
        except BaseException:
            lock.release()
            raise

    # ------------------------------------------------------------ loading

    def _load(self) -> None:
        """Read the metadata, add partition directories it does not know, open every log."""
        self._metadata = topicmeta.read(self.root)
        found = topicmeta.scan_partitions(self.root)
        for topic, meta in list(self._metadata.items()):
            if meta.get("deleting"):  # a deletion that a crash interrupted: finish it
                partitions = max(meta["partitions"], found.get(topic, 0))
                topicmeta.remove_partition_dirs(self.root, topic, partitions)
                del self._metadata[topic]
                found.pop(topic, None)
        for topic, count in found.items():
            if topic not in self._metadata:  # e.g. a Kafka log dir: default settings
                self._metadata[topic] = {"partitions": count, "config": {}}
        keys = [
            (n, p) for n, meta in sorted(self._metadata.items()) for p in range(meta["partitions"])
        ]
        logs, errors = open_all(
            keys, lambda k: self._open_log(*k, self._config_for(k[0])), self._recovery_threads
        )
        self._topics = {
            name: Topic(
                name, [logs[(name, p)] for p in range(meta["partitions"])], self._config_for(name)
            )
            for name, meta in self._metadata.items()
            if all((name, p) in logs for p in range(meta["partitions"]))
        }
        if errors:
            raise errors[0]
        for (name, p), log in logs.items():
            self.recovery_report[partition_dir_name(name, p)] = log.recovery_actions
        self._write_metadata()

    def _open_log(self, topic: str, partition: int, config: LogConfig) -> Log:
        return Log.open(
            os.path.join(self.root, partition_dir_name(topic, partition)),
            config,
            clock=self._clock,
            handles=self._handles,
            maintenance_interval_ms=None,  # the broker's own thread maintains every partition
            maintenance=self._maintenance,  # and does their interval fsyncs
        )

    def _config_for(self, topic: str) -> LogConfig:
        overrides = self._metadata.get(topic, {}).get("config", {})
        return topicmeta.topic_config(self.default_config, topic, overrides)

    @staticmethod
    def stored_config(partition_dir: str | os.PathLike[str]) -> LogConfig | None:
        """The config a broker root gives ``partition_dir``, read without opening anything.

        ``None`` unless the directory's parent is a broker root whose metadata
        names its topic and partition. The root's overrides apply over what the
        partition recorded at its last open (``Log.recorded_config``), else over
        the defaults, as ``Broker.open(root)`` would apply them.

        Raises:
            ConfigError: the metadata or the record is unreadable.
        """
        return topicmeta.stored_config(os.fspath(partition_dir), Log.recorded_config)

    def _write_metadata(self) -> None:
        topicmeta.write(self.root, self._metadata)

    def _internal_offsets_topic(self) -> Topic:
        name = _offsets.OFFSETS_TOPIC
        if name not in self._topics:
            self._create(name, 1, {})
        return self._topics[name]

    # ------------------------------------------------------------ topics

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: LogConfig | Mapping[str, Any] | None = None,
    ) -> Topic:
        """Create a topic of ``partitions`` partitions; ``config`` overrides the defaults.

        ``config`` is a ``LogConfig`` (its fields that differ from the broker's
        defaults are stored) or a mapping of field overrides. Overrides that are
        not plain values (an archive callable) last until the broker closes.

        Raises:
            InvalidTopicName: before anything touches the disk.
            TopicExistsError: the topic exists.
            LimitExceededError: ``max_topics`` topics exist (checked before anything is written).
        """
        check_topic_name(name)
        if type(partitions) is not int or partitions < 1:
            raise ConfigError(f"partitions must be a positive int, got {partitions!r}")
        overrides = topicmeta.overrides_of(config, self.default_config)
        dataclasses.replace(self.default_config, **overrides)  # ConfigError now, not later
        with self._lock:
            self._check_open()
            if name in self._topics:
                raise TopicExistsError(f"topic {name} already exists")
            self.check_topic_limit(name)
            topic = self._create(name, partitions, overrides)
        self._coordinator.rebalance_all()
        return topic

    def _create(self, name: str, partitions: int, overrides: dict[str, Any]) -> Topic:
        # 1. The metadata names the topic (atomic_write fsyncs the root). A crash before
        #    this: no topic. A crash after it: the next open creates the missing
        #    partition directories, empty (nothing was produced to them yet).
        self._metadata[name] = {"partitions": partitions, "config": overrides}
        self._write_metadata()
        config = self._config_for(name)
        logs: list[Log] = []
        try:
            # 2. Each partition directory is created and the root fsynced (Log.open's
            #    make_dirs) before the topic is handed out: a record produced to it can
            #    no longer vanish with a directory entry the root never made durable.
            for p in range(partitions):
                logs.append(self._open_log(name, p, config))
        except BaseException:
            for log in logs:  # undo: no partition left open, no topic in the metadata
                log.close()
            del self._metadata[name]
            self._write_metadata()
            raise
        topic = self._topics[name] = Topic(name, logs, config)
        return topic

    def topic(self, name: str) -> Topic:
        """The topic ``name``.

        Raises:
            UnknownTopicError: there is no such topic.
        """
        with self._lock:
            self._check_open()
            try:
                return self._topics[name]
            except KeyError:
                raise UnknownTopicError(f"no topic {name!r} in {self.root}") from None

    def topics(self, *, include_internal: bool = False) -> list[str]:
        """Topic names, sorted; internal ones (``__consumer_offsets``) only if asked."""
        with self._lock:
            self._check_open()
            return sorted(n for n in self._topics if include_internal or not n.startswith("__"))

    def delete_topic(self, name: str) -> None:
        """Delete a topic, its partitions' files and its groups' committed offsets.

        Durable when this returns; crash-safe in the steps commented below.
        """
        check_topic_name(name)
        if name == _offsets.OFFSETS_TOPIC:
            raise InvalidTopicName(f"{name} is internal and cannot be deleted")
        with self._lock:
            topic = self.topic(name)
            # 1. The metadata marks the topic as being deleted (atomic_write fsyncs the
            #    root). A crash before this: the topic is intact. From here on, the next
            #    open finishes the deletion (directories, then offsets, then metadata).
            self._metadata[name]["deleting"] = True
            self._write_metadata()
            del self._topics[name]
            for log in topic.logs:
                log.close()
            # 2. Each partition directory is renamed to <name>-<n>.<uuid>-delete (Kafka's
            #    form), then removed. A crash here: the next open removes what is left.
            topicmeta.remove_partition_dirs(self.root, name, topic.partitions)
            # 3. The groups' offsets of the topic are tombstoned (fsynced). Before the
            #    metadata forgets the topic: otherwise a crash after step 4 would leave
            #    offsets that a topic of the same name, created later, would inherit.
            self._offsets.forget_topic(name)
            # 4. The topic leaves the metadata; this write's fsync of the root also makes
            #    the renames and removals of step 2 durable.
            del self._metadata[name]
            self._write_metadata()
        self._coordinator.rebalance_all()

    def topic_overrides(self, name: str) -> dict[str, Any]:
        """The settings ``name`` has of its own (over the broker's defaults): field -> value.

        What tells a topic's own setting from an inherited one (Kafka's
        ``DYNAMIC_TOPIC_CONFIG`` against a default); ``topic(name).config`` is
        the effective whole.

        Raises:
            UnknownTopicError: there is no such topic.
        """
        with self._lock:
            self.topic(name)
            return dict(self._metadata[name]["config"])

    def alter_topic(
        self,
        name: str,
        config_changes: Mapping[str, Any] | None = None,
        *,
        reset: Iterable[str] = (),
        dry_run: bool = False,
    ) -> LogConfig:
        """Change topic ``name``'s settings; its effective ``LogConfig`` after the change.

        ``config_changes`` maps ``LogConfig`` fields to their new values (the
        topic's own from now on, even where equal to the default); the fields in
        ``reset`` drop the topic's own value and follow the broker's default
        again. Everything is validated before anything changes; with
        ``dry_run`` nothing does. Otherwise the metadata file is replaced
        atomically and fsynced first (a crash before: the old settings; after:
        the new ones at the next open), then the topic's partitions are closed
        (clean) and reopened with the new settings: an append or read already
        inside a partition finishes first, one that took the old ``Log`` after
        that gets ``LogClosedError``.

        Raises:
            UnknownTopicError: there is no such topic.
            InvalidTopicName: the topic is internal (its settings are fixed).
            ConfigError, TypeError: a field is unknown or a value invalid.
        """
        changes = topicmeta.overrides_of(dict(config_changes or {}), self.default_config)
        dropped = set(reset)
        unknown = dropped - {f.name for f in dataclasses.fields(LogConfig)}
        if unknown:
            raise ConfigError(f"unknown LogConfig field(s): {', '.join(sorted(unknown))}")
        if dropped & set(changes):
            both = ", ".join(sorted(dropped & set(changes)))
            raise ConfigError(f"{both}: both changed and reset")
        with self._lock:
            self.topic(name)
            if name.startswith("__"):
                raise InvalidTopicName(f"{name} is internal: its settings cannot be altered")
            old = self._metadata[name]["config"]
            overrides = {k: v for k, v in old.items() if k not in dropped} | changes
            config = topicmeta.topic_config(self.default_config, name, overrides)
            if dry_run or overrides == old:
                return config
            self._metadata[name]["config"] = overrides
            try:
                self._write_metadata()
            except BaseException:
                self._metadata[name]["config"] = old
                raise
            self._reopen(name, config)
            return config

    def _reopen(self, name: str, config: LogConfig) -> None:
        """Under the lock: close topic ``name``'s partitions, open them again with ``config``."""
        old = self._topics.pop(name)
        for log in old.logs:
            log.close()
        logs: list[Log] = []
        try:
            for p in range(old.partitions):
                logs.append(self._open_log(name, p, config))
        except BaseException:
            for log in logs:
                log.close()
            raise
        self._topics[name] = Topic(name, logs, config)
        with self._data_ready:
            self._data_ready.notify_all()  # a consumer waiting on the old logs looks again

    # ------------------------------------------------------------ producing

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[Header] = (),
        timestamp: int | None = None,
        partition: int | None = None,
    ) -> tuple[int, int]:
        """Append one record, routed by key (or to ``partition``); return ``(partition, offset)``."""
        t = self.topic(topic)
        p = t.partition_for(key) if partition is None else partition
        offset = t.partition(p).append(value, key=key, headers=headers, timestamp=timestamp)
        self._notify()
        return p, offset

    def produce_many(
        self, topic: str, messages: Iterable[AppendItem], *, partition: int | None = None
    ) -> list[tuple[int, int]]:
        """Append records, one batch per partition; return ``(partition, offset)`` in input order.

        Items as ``Log.append_many`` takes them: ``bytes`` values, ``Message``s
        and ``(value, key)`` pairs, routed by key. Records of one key keep their
        order (they share a partition and a batch).

        Raises:
            TypeError: an item or field of the wrong type (for a pair: naming its index).
        """
        t = self.topic(topic)
        # route_many copies the list itself (in C): no copy here as well.
        items = messages if type(messages) is list else list(messages)
        if partition is None:
            routed = t.route(items)
            if routed is not None:  # the compiled path: no Python work per record
                fast_routes, per_partition = routed
                starts = [
                    log.append_many(group).start if group else 0
                    for log, group in zip(t.logs, per_partition)
                ]
                self._notify()
                numbered = number(fast_routes, starts)
                assert numbered is not None
                return numbered
        routes: list[int] = []
        groups: dict[int, list[AppendItem]] = {}
        for i, m in enumerate(items):
            key = m.key if isinstance(m, Message) else pair_key(m, i) if type(m) is tuple else None
            p = t.partition_for(key) if partition is None else partition
            routes.append(p)
            groups.setdefault(p, []).append(m)
        offsets: dict[int, Iterable[int]] = {}
        for p, group in groups.items():
            offsets[p] = iter(t.partition(p).append_many(group))
        self._notify()
        return [(p, next(offsets[p])) for p in routes]  # type: ignore[call-overload]

    def _notify(self) -> None:
        with self._data_ready:
            self._data_ready.notify_all()

    # ------------------------------------------------------------ consuming

    def consumer(
        self, group: str, topics: Sequence[str] | str, *, start: Start = "earliest"
    ) -> Consumer:
        """A member of consumer group ``group`` reading ``topics``.

        ``start`` applies to partitions the group never committed: ``"earliest"``,
        ``"latest"``, ``"last"`` (the last stored record first; empty: latest),
        ``AtOffset(n)`` (below the log start: the log start, as Kafka's
        ``auto.offset.reset=earliest``), a timestamp in ms, or a ``timedelta``.

        Raises:
            UnknownTopicError: a topic does not exist.
            ConfigError: ``start`` is a str not one of those three.
            WrongTypeError: ``start`` is of no such form, or ``AtOffset`` not of an int >= 0.
            OffsetOutOfRange: ``AtOffset`` past the end of a partition to start in.
            LimitExceededError: a new group over ``max_groups``, or one consumer too many.
        """
        self._check_open()
        return Consumer(
            group,
            [topics] if isinstance(topics, str) else list(topics),
            start=start,
            partitions_of=lambda name: self.topic(name).logs,
            store=self._offsets,
            coordinator=self._coordinator,
            data_ready=self._data_ready,
            clock=self._clock,
        )

    def commit_offsets(
        self, group: str, positions: Mapping[tuple[str, int], int | OffsetAndMetadata]
    ) -> None:
        """Commit ``group``'s next offsets, ``(topic, partition) -> offset``, in one batch.

        Each offset is an int or an ``OffsetAndMetadata`` (Kafka's commit metadata).

        What a consumer's ``commit`` writes, for a group whose members are
        elsewhere (a Kafka client of ``logstore serve``). Durable when this returns.

        Raises:
            UnknownTopicError: a topic does not exist.
            UnknownPartitionError: a partition is not one of its topic's.
            WrongTypeError: an offset is not an int >= 0, or metadata not a str.
            ConfigError: metadata over 4096 bytes of UTF-8 (Kafka's ``offset.metadata.max.bytes``).
            LimitExceededError: ``group`` is new and ``max_groups`` groups exist (nothing written).
        """
        checked: dict[tuple[str, int], OffsetAndMetadata] = {}
        for (topic, partition), given in positions.items():
            self.topic(topic).partition(partition)
            checked[(topic, partition)] = checked_position(topic, partition, given)
        live = self._coordinator.groups()  # its lock first, as a join takes them
        with self._commit_lock:  # count and commit together: one of two new groups passes
            self.check_group_limit(group, live)
            self._offsets.commit(group, checked)

    def committed_offsets(self) -> dict[tuple[str, str, int], int]:
        """Every group's committed offsets: ``(group, topic, partition) -> next offset``."""
        return self._offsets.groups()

    def group_offsets(self, group: str) -> dict[tuple[str, int], OffsetAndMetadata]:
        """One group's committed positions with the metadata its client committed.

        ``(topic, partition) -> OffsetAndMetadata``; empty for a group that never
        committed. What Kafka's OffsetFetch answers, metadata included, so a
        server need not scan every group's offsets for one group.
        """
        return self._offsets.group(group)

    # ------------------------------------------------------------ maintenance

    def run_maintenance(self) -> None:
        """Apply retention and, where due, compaction to every partition now."""
        with self._lock:
            if self._closed:
                return
            logs = [log for t in self._topics.values() for log in t.logs]
        for log in logs:
            if self._stop.is_set():
                return
            try:
                if log.config.deletes or log.start_offset > 0:
                    result = log.apply_retention()
                    for error in result.errors:
                        logger.warning("%s: retention kept a segment: %s", log.path, error)
                if (
                    log.config.compacted
                    and log.dirty_ratio() > log.config.min_cleanable_dirty_ratio
                ):
                    log.compact()
            except LogClosedError:
                continue  # the topic was deleted meanwhile
            except Exception:  # one bad partition must not stop the others' housekeeping
                logger.exception("%s: maintenance failed", log.path)

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the open producers (flushing them), stop maintenance, close every
        consumer and partition; idempotent."""
        self._close_producers()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._maintenance.close(timeout=60)
        self._coordinator.close_all()
        self._close_logs()
        self._dir_lock.release()

    def _close_logs(self) -> None:
        for topic in self._topics.values():
            for log in topic.logs:
                log.close()

    def _closed_message(self) -> str:
        return f"broker {self.root} is closed"
