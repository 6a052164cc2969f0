"""What a broker root stores about its topics: the metadata file and the partition directories.

``logstore-topics.json`` names every topic with its partition count, its
config overrides and, while a deletion is under way, ``"deleting": true``; it
is only ever replaced atomically. Partition directories are ``<topic>-<n>``;
a deletion renames one to ``<topic>-<n>.<uuid>-delete`` before removing it.
Also the config a topic gets: the broker's defaults under its overrides (and
the fixed settings of the internal offsets topic). Knows nothing of open logs
or of the order of a create's or a delete's steps (``broker`` owns those).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from . import _offsets
from ._dirkind import METADATA_FILE, directory_kind
from ._fs import atomic_write
from .checkpoints import parse_partition_dir, partition_dir_name
from .config import LogConfig
from .errors import ConfigError, WrongTypeError

#: Topic name -> ``{"partitions": n, "config": {field: value}}``, ``"deleting": True`` too
#: while a deletion is under way.
Metadata = dict[str, dict[str, Any]]

_DELETE_SUFFIX = re.compile(r"\.[0-9a-f]{32}-delete$")
#: Settings of the internal offsets topic: every commit durable, compacted.
_OFFSETS_CONFIG = {
    "cleanup_policy": "compact",
    "fsync": "always",
    "segment_bytes": 4 << 20,
    "retention_bytes": None,
    "retention_messages": None,
    "retention_ms": None,
    "compression": "none",
    "compression_level": None,  # a default level for another codec does not apply
    "segment_messages": None,  # a commit is one batch: never split by a roll
    "max_message_bytes": 16 << 20,
}


def overrides_of(config: LogConfig | Mapping[str, Any] | None, base: LogConfig) -> dict[str, Any]:
    """The fields that differ from ``base`` (for a LogConfig) or the given ones (a mapping)."""
    if config is None:
        return {}
    if isinstance(config, LogConfig):
        return {
            f.name: getattr(config, f.name)
            for f in dataclasses.fields(LogConfig)
            if getattr(config, f.name) != getattr(base, f.name)
        }
    if isinstance(config, Mapping):
        names = {f.name for f in dataclasses.fields(LogConfig)}
        unknown = set(config) - names
        if unknown:
            raise ConfigError(f"unknown LogConfig field(s): {', '.join(sorted(unknown))}")
        return dict(config)
    raise WrongTypeError(
        f"config must be a LogConfig, a mapping of fields or None, not {type(config).__name__}"
    )


def topic_config(base: LogConfig, topic: str, overrides: Mapping[str, Any]) -> LogConfig:
    """``base`` with ``topic``'s overrides applied (for the offsets topic, over its fixed settings).

    Raises:
        ConfigError, TypeError: an override is not a valid setting.
    """
    if topic == _offsets.OFFSETS_TOPIC:
        overrides = {**_OFFSETS_CONFIG, **overrides}
    return dataclasses.replace(base, **overrides)


def read(root: str) -> Metadata:
    """The topics the metadata file of ``root`` names; none when there is no file yet."""
    path = os.path.join(root, METADATA_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        topics: Metadata = json.load(f)["topics"]
    return topics


def dumps(metadata: Metadata) -> str:
    """The file's text: plain values only (an archive callable lasts until the broker closes)."""
    storable = {
        name: {
            "partitions": meta["partitions"],
            **({"deleting": True} if meta.get("deleting") else {}),
            "config": {
                k: v
                for k, v in meta["config"].items()
                if v is None or isinstance(v, (int, float, str, bool))
            },
        }
        for name, meta in sorted(metadata.items())
    }
    return json.dumps({"version": 1, "topics": storable}, indent=1, sort_keys=True)


def write(root: str, metadata: Metadata) -> None:
    """Replace the metadata file atomically (``atomic_write`` also fsyncs ``root``)."""
    atomic_write(os.path.join(root, METADATA_FILE), dumps(metadata).encode())


def partition_entry(directory: str) -> tuple[str, str, dict[str, Any]] | None:
    """``(metadata file, topic, its overrides)`` when ``directory``'s parent is a broker
    root whose metadata names its topic and partition; else ``None``. Opens nothing.

    Raises:
        ConfigError: the metadata file is unreadable.
    """
    root, name = os.path.split(directory)
    parsed = parse_partition_dir(name)
    path = os.path.join(root or ".", METADATA_FILE)
    if parsed is None or not os.path.isfile(path):
        return None
    topic, n = parsed
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)["topics"].get(topic)
        if meta is None or n >= meta["partitions"]:
            return None
        overrides = dict(meta["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a logstore topic metadata file ({exc})") from None
    return path, topic, overrides


def stored_config(
    partition_dir: str, recorded: Callable[[str], LogConfig | None]
) -> LogConfig | None:
    """``Broker.stored_config``: the root's overrides over ``recorded(directory)`` (else defaults).

    Raises:
        ConfigError: the metadata or the record is unreadable.
    """
    directory = os.path.normpath(partition_dir)
    entry = partition_entry(directory)
    if entry is None:
        return None
    path, topic, overrides = entry
    base = recorded(directory) or LogConfig()
    try:
        return topic_config(base, topic, overrides)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{path}: topic {topic}: {exc}") from None


def scan_partitions(root: str) -> dict[str, int]:
    """The partition count each topic's directories under ``root`` imply.

    Removes the leftovers of a deletion that a crash interrupted on the way.
    """
    found: dict[str, int] = {}
    for name in os.listdir(root):
        full = os.path.join(root, name)
        if not os.path.isdir(full):
            continue
        if _DELETE_SUFFIX.search(name):  # a deletion that a crash interrupted
            shutil.rmtree(full, ignore_errors=True)
            continue
        parsed = parse_partition_dir(name)
        # Only a directory that holds a log adopts its topic (a Kafka log dir); an
        # empty or unrelated "name-N" directory never invents partitions.
        if parsed is not None and directory_kind(full) == "log":
            topic, n = parsed
            found[topic] = max(found.get(topic, 0), n + 1)
    return found


def remove_partition_dirs(root: str, name: str, partitions: int) -> None:
    """Rename each partition directory of topic ``name`` to ``...-delete``, then remove it."""
    for p in range(partitions):
        path = os.path.join(root, partition_dir_name(name, p))
        if not os.path.exists(path):
            continue
        suffix = f".{uuid.uuid4().hex}-delete"
        # Kafka shortens the topic part so the name stays within 255 bytes.
        doomed = os.path.join(root, partition_dir_name(name, p)[: 255 - len(suffix)] + suffix)
        os.rename(path, doomed)
        shutil.rmtree(doomed)
