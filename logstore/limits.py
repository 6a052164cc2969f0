"""Store limits, as NATS Streaming's ``StoreLimits``: the checks a broker makes before it grows.

``max_topics`` (NATS's MaxChannels) and ``max_groups`` (MaxSubscriptions) are
the broker's; ``max_consumers_per_group`` is a topic setting (a ``LogConfig``
field, so it has a broker default and per-topic overrides as the retention
limits have). Each check raises ``LimitExceededError`` before anything is
written, so a refusal changes nothing. Knows nothing of files or of how
topics and groups are stored: the broker hands it names and counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .errors import ConfigError, LimitExceededError


def checked_limits(*, max_topics: object, max_groups: object) -> tuple[int | None, int | None]:
    """The broker's limits as stored: ints >= 1, or ``None`` for unlimited (given as None or 0).

    Raises:
        ConfigError: one is not an int >= 0 or None.
    """
    for name, value in (("max_topics", max_topics), ("max_groups", max_groups)):
        if value is not None and (type(value) is not int or value < 0):
            raise ConfigError(f"{name} must be an integer >= 0 or None, got {value!r}")
    return max_topics or None, max_groups or None  # type: ignore[return-value]


class _LimitedBroker(Protocol):
    max_topics: int | None
    max_groups: int | None

    def topic(self, name: str) -> Any: ...

    def topics(self) -> list[str]: ...

    def committed_offsets(self) -> dict[tuple[str, str, int], int]: ...

    def check_group_limit(self, group: str, live: Iterable[str] = ()) -> None: ...

    def check_consumer_limit(self, group: str, topic: str, members: int) -> None: ...


class StoreLimits:
    """``Broker``'s limit checks (a mixin): public, so a server's own coordinator makes them too."""

    def check_topic_limit(self: _LimitedBroker, name: str) -> None:
        """Refuse creating topic ``name`` when ``max_topics`` topics (internal ones aside) exist.

        Raises:
            LimitExceededError: there are ``max_topics`` topics.
        """
        if self.max_topics is not None and len(self.topics()) >= self.max_topics:
            raise LimitExceededError("max_topics", self.max_topics, f"cannot create topic {name!r}")

    def check_group_limit(self: _LimitedBroker, group: str, live: Iterable[str] = ()) -> None:
        """Refuse a new ``group`` when ``max_groups`` groups exist.

        The groups that exist: those with committed offsets and those in
        ``live`` (groups with members, here or in a server's coordinator).

        Raises:
            LimitExceededError: ``group`` is not one of them and there are ``max_groups``.
        """
        if self.max_groups is None:
            return
        known = set(live)
        if group in known:
            return
        known |= {g for g, _, _ in self.committed_offsets()}
        if group not in known and len(known) >= self.max_groups:
            raise LimitExceededError(
                "max_groups", self.max_groups, f"cannot create group {group!r}"
            )

    def check_consumer_limit(self: _LimitedBroker, group: str, topic: str, members: int) -> None:
        """Refuse one more member of ``group`` reading ``topic``, which has ``members``.

        The limit is the topic's ``max_consumers_per_group`` (its own or the default).

        Raises:
            UnknownTopicError: there is no such topic.
            LimitExceededError: ``members`` is already at the limit.
        """
        limit = self.topic(topic).config.max_consumers_per_group
        if limit and members >= limit:
            raise LimitExceededError(
                "max_consumers_per_group",
                limit,
                f"group {group!r} already has {members} consumer(s) of topic {topic!r}",
            )

    def _admit(
        self: _LimitedBroker,
        group: str,
        topics: Sequence[str],
        members: list[tuple[str, ...]],
        live: set[str],
    ) -> None:
        """The group coordinator's hook, under its lock, before a consumer joins."""
        self.check_group_limit(group, live)
        for topic in topics:
            self.check_consumer_limit(group, topic, sum(1 for t in members if topic in t))
