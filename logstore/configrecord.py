"""The config record: ``logstore-config.json``, the settings a partition was last opened with.

Lets a tool that opens a log by its path (``logstore compact``) follow the
log's own cleanup policy and settings (FORMAT.md section 10.4). Owns the
file's JSON shape; knows nothing of segments, recovery or the ``Log``.
"""

from __future__ import annotations

import dataclasses
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
    fields = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(LogConfig)
        if f.name != "archive"
        and isinstance(getattr(config, f.name), (int, float, str, type(None)))
    }
    data = json.dumps({"version": 1, "config": fields}, indent=1, sort_keys=True).encode()
    path = os.path.join(directory, CONFIG_FILE)
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    atomic_write(path, data)


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
