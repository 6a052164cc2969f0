"""Damaged partitions: sealed images whose base offsets or indexes a test then falsifies.

The fixtures ``image`` and ``indexed`` reach every test module through
``pytest_plugins`` in ``conftest.py``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, Message, Record, cli

CONFIG = LogConfig(fsync="never", segment_messages=20, index_interval_bytes=64)


T0 = 1_700_000_000_000


def _batch_positions(path: Path) -> list[tuple[int, int]]:
    """``(position, base offset)`` of every batch of a ``.log`` file, read raw."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        out.append((pos, struct.unpack_from(">q", data, pos)[0]))
        pos += 12 + struct.unpack_from(">i", data, pos + 8)[0]
    return out


def _flip(path: Path, position: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


def _verify(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str]:
    try:
        cli.main(["verify", str(path)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err  # problems on stdout, the verdict on stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    """A closed log of 100 records in batches of 5, timestamps rising with the offset."""
    path = tmp_path_factory.mktemp("offsets") / "log"
    with logstore.Log.open(path, CONFIG) as log:
        for i in range(20):
            log.append_many(
                Message(b"v%d" % (5 * i + j), b"k", (), T0 + 10 * (5 * i + j)) for j in range(5)
            )
        records = list(log.scan())
        assert [s.base_offset for s in log.segments] == [0, 20, 40, 60, 80]
    return path, records


# ---------------------------------------------------------------- base offsets (case 2)
SEALED = f"{20:020d}.log"  # offsets 20..39 in four batches of five


def _key(i: int) -> bytes:
    """Seven keys written over and over, and every third record a key of its own: gaps."""
    return b"unique-%d" % i if i % 3 == 0 else b"key-%d" % (i % 7)


# ---------------------------------------------------------------- indexes (case 3)
MONOTONIC = LogConfig(fsync="never", segment_bytes=2000, index_interval_bytes=64)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    """A closed log whose first segment (offsets 0..) has several index entries."""
    path = tmp_path_factory.mktemp("indexed") / "log"
    with logstore.Log.open(path, MONOTONIC) as log:
        for i in range(40):
            log.append_many(
                Message(b"v%d" % (2 * i + j), b"k", (), T0 + 10 * (2 * i + j)) for j in range(2)
            )
        records = list(log.scan())
        assert len(log.segments) >= 2
    return path, records


def _shift_time_index(path: Path) -> tuple[bytes, list[tuple[int, int]]]:
    """Give each time-index entry the next entry's offset: ascending, well-formed, wrong."""
    original = path.read_bytes()
    entries = list(struct.iter_unpack(">qi", original))
    assert len(entries) >= 4
    shifted = [(ts, entries[min(i + 1, len(entries) - 1)][1]) for i, (ts, _) in enumerate(entries)]
    shifted[-1] = entries[-1]  # the last entry stays right: only a query finds the others
    path.write_bytes(b"".join(struct.pack(">qi", *e) for e in shifted))
    return original, entries
