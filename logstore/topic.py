"""``Topic``: a named set of partitions and the routing of records to them; the name rule.

Routing is Kafka's default partitioner: murmur2 of the key, keyless records
round-robin. Knows nothing of files, the broker root or its metadata.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from .config import LogConfig
from .errors import InvalidTopicName, UnknownPartitionError, WrongTypeError
from .log import Log
from .partitioner import partition_for, route_many

_ROUTE_CACHE_KEYS = 100_000
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def check_topic_name(name: object) -> str:
    """Kafka's rules: 1 to 249 of ``[A-Za-z0-9._-]``, not ``.`` or ``..``.

    Raises:
        InvalidTopicName: before anything touches the disk.
    """
    if not isinstance(name, str):
        raise InvalidTopicName(f"a topic name must be a str, not {type(name).__name__}")
    if name in (".", "..") or not _TOPIC_NAME.fullmatch(name):
        raise InvalidTopicName(
            f"invalid topic name {name!r}: use 1 to 249 of A-Z a-z 0-9 . _ -, not '.' or '..'"
        )
    return name


class Topic:
    """A named set of partitions, each a ``Log``."""

    def __init__(self, name: str, logs: list[Log], config: LogConfig) -> None:
        self.name = name
        self._logs = logs
        self.config = config
        self._next_round_robin = 0
        self._round_robin_lock = threading.Lock()
        # murmur2 in Python costs microseconds; keys (hostnames) repeat: remember them.
        self._routes: dict[bytes, int] = {}

    @property
    def partitions(self) -> int:
        return len(self._logs)

    def partition(self, i: int) -> Log:
        """The ``Log`` of partition ``i``.

        Raises:
            UnknownPartitionError: ``i`` is not in ``0..partitions - 1``.
        """
        if type(i) is not int:
            raise WrongTypeError(f"partition must be an int, not {type(i).__name__}")
        if not 0 <= i < len(self._logs):
            raise UnknownPartitionError(self.name, i, len(self._logs))
        return self._logs[i]

    def partition_for(self, key: bytes | None) -> int:
        """Kafka's default partitioner: ``(murmur2(key) & 0x7FFFFFFF) % partitions``;
        a ``None`` key goes round-robin."""
        if key is None:
            with self._round_robin_lock:
                p = self._next_round_robin % len(self._logs)
                self._next_round_robin += 1
            return p
        if type(key) is not bytes:
            key = bytes(key)  # bytearray and memoryview are not hashable
        cached = self._routes.get(key)
        if cached is not None:
            return cached
        p = partition_for(key, len(self._logs))
        if len(self._routes) >= _ROUTE_CACHE_KEYS:
            self._routes.clear()
        self._routes[key] = p
        return p

    @property
    def logs(self) -> tuple[Log, ...]:
        """Every partition's ``Log``, in partition order."""
        return tuple(self._logs)

    def route(self, items: list[Any]) -> tuple[list[int], list[list[Any]]] | None:
        """Route ``items`` in one compiled call: ``(partition of each, items per partition)``.

        Values without a key go round-robin from this topic's position, which
        advances as if each had gone through ``partition_for``. ``None`` when
        the compiled codec is not active or an item is of another kind: then
        route item by item with ``partition_for``.
        """
        with self._round_robin_lock:
            routed = route_many(items, len(self._logs), self._next_round_robin)
            if routed is None:
                return None
            routes, per_partition, self._next_round_robin = routed
        return routes, per_partition

    def __repr__(self) -> str:
        return f"<logstore.Topic {self.name} partitions={self.partitions}>"


def pair_key(item: tuple[object, ...], index: int) -> bytes | None:
    """The key of ``produce_many``'s item ``index``, a tuple: refused unless a ``(value, key)`` pair.

    Checked before routing: the key picks the partition, and the error names the
    item's place in the caller's list, not in a partition's group.
    """
    if len(item) != 2:
        raise WrongTypeError(
            f"produce_many item {index}: a tuple must be a (value, key) pair, not {len(item)} items"
        )
    for name, field in zip(("value", "key"), item):
        if field is not None and not isinstance(field, (bytes, bytearray, memoryview)):
            raise WrongTypeError(
                f"produce_many item {index}: {name} must be bytes-like or None, "
                f"not {type(field).__name__}"
            )
    key: Any = item[1]
    return None if key is None else bytes(key)
