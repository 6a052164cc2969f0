"""Opening many partitions at once: the pool of ``Broker.open`` and its size.

A module of its own so the broker keeps routing and groups, and so the one
setting (Kafka's ``num.recovery.threads.per.data.dir``) is checked in one place.
Knows nothing of logs: it runs the opener it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .errors import ConfigError

#: Partitions opened at once by ``Broker.open`` unless told otherwise.
DEFAULT_RECOVERY_THREADS = 8

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def check_recovery_threads(value: object) -> int:
    """``value`` if it is an int >= 1 (not a bool), else ``ConfigError`` naming it."""
    if type(value) is not int or value < 1:
        raise ConfigError(f"recovery_threads must be an integer >= 1, got {value!r}")
    return value


def open_all(
    keys: Sequence[K], open_one: Callable[[K], V], threads: int
) -> tuple[dict[K, V], list[BaseException]]:
    """``open_one(key)`` for every key, ``threads`` at a time, started in order.

    Every open runs to its end even when another fails (so whatever opened can
    be closed by the caller): returns what opened and every failure, in order.
    With ``threads=1`` the opens run one after another in one worker thread.
    """
    opened: dict[K, V] = {}
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=min(threads, max(len(keys), 1))) as pool:
        futures = [(key, pool.submit(open_one, key)) for key in keys]
        for key, future in futures:
            try:
                opened[key] = future.result()
            except BaseException as exc:
                errors.append(exc)
    return opened, errors
