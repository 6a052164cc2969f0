"""A small partition to damage and check: the ``part`` fixture and byte-level helpers.

``part`` reaches every test module through ``pytest_plugins`` in ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import crc32c
import pytest

import logstore

BATCH = 76  # bytes of one single-record batch of b"value-NN"


CONFIG = logstore.LogConfig(fsync="never", segment_bytes=400, index_interval_bytes=10)


def seg(directory: Path, base: int, suffix: str = ".log") -> Path:
    return directory / f"{base:020d}{suffix}"


@pytest.fixture
def part(tmp_path: Path) -> Path:
    """A closed log ``p-0`` under a broker-like root: offsets 0..39, segments at 0, 5, ... 35."""
    directory = tmp_path / "root" / "p-0"
    with logstore.Log.open(directory, CONFIG) as log:
        for i in range(40):
            log.append(b"value-%02d" % i, timestamp=1000 + i)
        assert [(s.base_offset, s.size_bytes) for s in log.segments] == [
            (b, 5 * BATCH) for b in range(0, 40, 5)
        ]
    return directory


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(data)


def crc_line(path: Path, position: int) -> str:
    """The line verify prints for a CRC mismatch of the batch at ``position``."""
    data = path.read_bytes()
    stored = int.from_bytes(data[position + 17 : position + 21], "big")
    computed = crc32c.crc32c(data[position + 21 : position + BATCH])
    return (
        f"{path} at byte {position}: CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
    )
