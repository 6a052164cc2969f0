"""The config record: ``logstore-config.json``, the settings a partition was last opened with.

Lets a tool that opens a log by its path (``logstore compact``) follow the
log's own cleanup policy and settings (FORMAT.md section 10.4). Owns the
file's JSON shape; knows nothing of segments, recovery or the ``Log``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

from ._fs import CONFIG_FILE, atomic_write
from .config import LogConfig
from .errors import ConfigError


def write_config_record(directory: str, config: LogConfig) -> None:
    """Write ``config`` to the directory's ``CONFIG_FILE`` when it differs from what is there.

    Only plain values are recorded (an ``archive`` hook belongs to the process
    that opened the log, not to the log). ``atomic_write`` makes the file and its
    directory entry durable; an unchanged config writes nothing.
    """
    data = _record(config)
    path = os.path.join(directory, CONFIG_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        pass
    else:
        try:
            same = os.read(fd, len(data) + 1) == data  # every open does this: no io layer
        finally:
            os.close(fd)
        if same:
            return
    atomic_write(path, data)


def _record(config: LogConfig) -> bytes:
    """The file's bytes for ``config``: made once per config (a frozen value) when hashable."""
    try:
        return _cached_record(config)
    except TypeError:  # an unhashable archive hook
        return _encode(config)


@functools.lru_cache(maxsize=64)
def _cached_record(config: LogConfig) -> bytes:
    return _encode(config)


def _encode(config: LogConfig) -> bytes:
    fields = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(LogConfig)
        if f.name != "archive"
        and isinstance(getattr(config, f.name), (int, float, str, type(None)))
    }
    return json.dumps({"version": 1, "config": fields}, indent=1, sort_keys=True).encode()


def read_config_record(directory: str) -> LogConfig | None:
    """The config the partition in ``directory`` was last opened with (``Log.recorded_config``).

    Raises:
        ConfigError: the record is not readable JSON of valid settings.
    """
    record = os.path.join(directory, CONFIG_FILE)
    try:
        with open(record, "rb") as f:
            stored = json.loads(f.read())["config"]
        known = {f.name for f in dataclasses.fields(LogConfig)}
        return LogConfig(**{k: v for k, v in stored.items() if k in known})
    except FileNotFoundError:
        return None
    except ConfigError as exc:
        raise ConfigError(f"{record}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{record}: not a logstore config record ({exc})") from None


def recorded_config(path: str | os.PathLike[str]) -> LogConfig | None:
    """The config ``Log.open`` last opened the log in ``path`` with (``archive`` aside).

    Lets a tool that opens a log by its path (``logstore compact``) apply the
    log's own cleanup policy and compaction settings. ``None`` when nothing
    was recorded (a log written by an older version, or by Kafka). Fields a
    newer version recorded and this one does not know are ignored.

    Raises:
        ConfigError: the record is not readable JSON of valid settings.
    """
    return read_config_record(os.fspath(path))
