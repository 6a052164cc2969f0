"""The clean-shutdown marker an open keeps until the log's first change (``CleanMarker``).

An open after a clean close that has nothing to resolve or rebuild leaves
the marker in place; the first change (an append, a roll, a checkpoint, an
index rewrite) deletes it before touching a file, and a close with nothing
changed writes nothing. Crash images taken while such a log is open must
open as the files say: clean while untouched, recovered after a change.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore import LogConfig
from logstore import batchfile as batchfile_module

MARKER = ".kafka_cleanshutdown"
CONFIG = LogConfig(fsync="never", segment_bytes=4096, index_interval_bytes=256)


def _closed_log(path: Path, records: int = 120) -> list[logstore.Record]:
    with logstore.Log.open(path, CONFIG) as log:
        for i in range(0, records, 6):
            log.append_many(
                [
                    logstore.Message(b"value-%03d-" % j * 4, timestamp=1000 + j)
                    for j in range(i, i + 6)
                ]
            )
        assert len(log.segments) > 1
        return list(log.scan())


def _files(path: Path) -> dict[str, bytes]:
    return {n: (path / n).read_bytes() for n in sorted(os.listdir(path)) if n != ".lock"}


@pytest.fixture
def changes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every call that could change a file or make one durable, by name."""
    calls: list[str] = []

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return call

    for name in (
        "fsync",
        "fdatasync",
        "pwrite",
        "pwritev",
        "write",
        "ftruncate",
        "truncate",
        "unlink",
        "rename",
        "replace",
        "mkdir",
    ):
        monkeypatch.setattr(os, name, counting(name, getattr(os, name)))
    yield calls


def test_an_open_that_only_reads_writes_nothing(tmp_path: Path, changes: list[str]) -> None:
    path = tmp_path / "log"
    changes.clear()
    records = _closed_log(path)
    before = _files(path)
    assert MARKER in before
    changes.clear()
    log = logstore.Log.open(path, CONFIG)
    assert log.read(log.end_offset - 1, max_records=1) == records[-1:]
    assert list(log.scan()) == records
    assert (path / MARKER).exists()  # kept while the log is open and unchanged
    log.close()
    assert changes == []  # no write, cut, rename, delete or fsync: not even of the parent
    assert _files(path) == before


def test_the_first_append_deletes_the_marker_before_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log"
    records = _closed_log(path)
    seen: list[bool] = []
    real = batchfile_module.write_all

    def write_all(fd: int, data: Any, position: int) -> None:
        seen.append((path / MARKER).exists())
        real(fd, data, position)

    monkeypatch.setattr(batchfile_module, "write_all", write_all)
    log = logstore.Log.open(path, CONFIG)
    assert (path / MARKER).exists()
    log.append(b"after")
    assert seen == [False]
    assert not (path / MARKER).exists()
    log.close()
    assert (path / MARKER).exists()
    with logstore.Log.open(path, CONFIG) as log:
        assert [r.value for r in log.scan()] == [r.value for r in records] + [b"after"]


def test_a_crash_while_open_and_untouched_opens_clean(tmp_path: Path) -> None:
    path = tmp_path / "log"
    records = _closed_log(path)
    log = logstore.Log.open(path, CONFIG)
    assert log.read(5, max_records=2) == records[5:7]
    image = tmp_path / "image"
    shutil.copytree(path, image, ignore=shutil.ignore_patterns(".lock"))  # a crash now
    log.close()
    assert (image / MARKER).exists()
    with logstore.Log.open(image, CONFIG) as copy:
        assert copy.recovery_actions == ()
        assert list(copy.scan()) == records


def test_a_crash_after_the_first_change_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "log"
    records = _closed_log(path)
    log = logstore.Log.open(path, CONFIG)
    log.append(b"more")
    active = tmp_path / "image" / os.path.basename(log.segments[-1].path)
    image = tmp_path / "image"
    shutil.copytree(path, image, ignore=shutil.ignore_patterns(".lock"))  # a crash now
    log.close()
    assert not (image / MARKER).exists()  # unclean: the open recovers the tail
    os.truncate(active, os.path.getsize(active) - 3)  # the unflushed append was torn
    with logstore.Log.open(image, CONFIG) as copy:
        assert [a.action for a in copy.recovery_actions] == ["truncate"]  # quarantined, cut
        assert list(copy.scan()) == records


@pytest.mark.parametrize(
    "leftover", ["00000000000000000000.log.deleted", "00000000000000099999.index"]
)
def test_an_open_with_leftovers_takes_the_marker_before_resolving_them(
    tmp_path: Path, leftover: str
) -> None:
    path = tmp_path / "log"
    records = _closed_log(path)
    (path / leftover).write_bytes(b"")
    with logstore.Log.open(path, CONFIG) as log:
        assert not (path / MARKER).exists()
        assert not (path / leftover).exists()
        assert list(log.scan()) == records
    assert (path / MARKER).exists()


def test_an_open_that_rebuilds_a_missing_index_takes_the_marker(tmp_path: Path) -> None:
    path = tmp_path / "log"
    records = _closed_log(path)
    (path / f"{0:020d}.timeindex").unlink()
    with logstore.Log.open(path, CONFIG) as log:
        assert not (path / MARKER).exists()
        assert (path / f"{0:020d}.timeindex").exists()
        assert list(log.scan()) == records


def test_a_bad_index_found_by_a_read_drops_the_marker_before_it_is_rewritten(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log"
    records = _closed_log(path)
    with open(path / f"{0:020d}.index", "ab") as f:
        f.write(b"\x00\x00\x00")  # not a whole entry: rebuilt when the segment is first read
    log = logstore.Log.open(path, CONFIG)
    assert (path / MARKER).exists()  # a sealed segment's index is loaded on first use only
    assert log.read(0, max_records=3) == records[:3]
    assert not (path / MARKER).exists()
    assert os.path.getsize(path / f"{0:020d}.index") % 8 == 0
    log.close()
    assert (path / MARKER).exists()
    with logstore.Log.open(path, CONFIG) as log:
        assert list(log.scan()) == records


def test_an_untouched_open_leaves_the_active_indexes_at_their_closed_size(tmp_path: Path) -> None:
    """Preallocation waits for the first append: a crash image of an untouched log is as closed."""
    path = tmp_path / "log"
    _closed_log(path)
    with logstore.Log.open(path, CONFIG) as log:
        active = log.segments[-1].base_offset
        sizes = {s: os.path.getsize(path / f"{active:020d}{s}") for s in (".index", ".timeindex")}
        assert all(size < CONFIG.max_index_bytes for size in sizes.values())
        log.append(b"x")
        now_active = log.segments[-1].base_offset  # the same one, or a new one if it rolled
        assert os.path.getsize(path / f"{now_active:020d}.index") == CONFIG.max_index_bytes
    for suffix in (".index", ".timeindex"):  # trimmed to their entries again by the close
        assert os.path.getsize(path / f"{active:020d}{suffix}") < CONFIG.max_index_bytes // 2


# ---------------------------------------------------------------- the tail without the indexes


def _active(log: logstore.Log) -> Any:
    return log._local.segments.active


def test_a_read_of_the_last_record_after_an_open_loads_no_index(tmp_path: Path) -> None:
    """An open reads the last entry of each index, confirmed against the log, not the files."""
    path = tmp_path / "log"
    records = _closed_log(path)
    with logstore.Log.open(path, CONFIG) as log:
        active = _active(log)
        assert active._offset_index is None and active._time_index is None
        assert log.end_offset == len(records)
        assert log.read(log.end_offset - 1, max_records=1) == records[-1:]
        assert active._offset_index is None  # at or past the last entry: that entry answers
        first = active.base_offset
        assert log.read(first, max_records=2) == records[first : first + 2]
        assert active._offset_index is not None  # below it: the whole index, checked
        assert active.offset_index.as_list()[-1] == active._peeked
        assert list(log.scan()) == records


@pytest.mark.parametrize("damage", ["offset_position", "time_timestamp", "zero_tail"])
def test_a_last_index_entry_the_log_contradicts_is_not_trusted(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "log"
    records = _closed_log(path)
    with logstore.Log.open(path, CONFIG) as log:
        base = _active(log).base_offset
    index, tindex = path / f"{base:020d}.index", path / f"{base:020d}.timeindex"
    if damage == "offset_position":
        data = bytearray(index.read_bytes())
        data[-1] ^= 0x10  # the last entry points at a byte that starts no batch
        index.write_bytes(bytes(data))
    elif damage == "time_timestamp":
        data = bytearray(tindex.read_bytes())
        data[-13 + 8] ^= 0x01  # the last entry's timestamp is not its batch's largest
        tindex.write_bytes(bytes(data))
    else:
        with open(index, "ab") as f:
            f.write(bytes(16))  # a preallocated tail: only a full load can tell
    with logstore.Log.open(path, CONFIG) as log:
        assert log.end_offset == len(records)
        assert log.read(log.end_offset - 1, max_records=1) == records[-1:]
        assert list(log.scan()) == records
        log.append(b"after")
    with logstore.Log.open(path, CONFIG) as log:
        assert [r.value for r in log.scan()] == [r.value for r in records] + [b"after"]
