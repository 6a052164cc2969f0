"""Helpers several test modules share: CLI runs, names, configs, archives, threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import logstore
from logstore import LogConfig, Record, batch
from logstore.batch import BatchSpan
from logstore.segment import Segment, SegmentSettings
from logstore.segments import Segments

from .conftest import FakeClock, run_cli

SEGMENT_0 = f"{0:020d}.log"


run = run_cli


NOW = FakeClock().now_ms


# ---------------------------------------------------------------- helpers
def compacted(records: Iterable[Record], bound: int) -> list[Record]:
    """One pass, no tombstone past its horizon: below ``bound`` only the latest per key stays."""
    records = list(records)
    latest: dict[bytes | None, int] = {}
    for r in records:
        if r.offset < bound:
            latest[r.key] = r.offset
    return [r for r in records if r.offset >= bound or latest[r.key] == r.offset]


def compact_config(**fields: object) -> LogConfig:
    fields.setdefault("fsync", "never")
    fields.setdefault("cleanup_policy", "compact")
    fields.setdefault("min_cleanable_dirty_ratio", 1.0)  # never compacts by itself
    return LogConfig(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- 5. dry run
def keyed_workload(log: logstore.Log, start: int, n: int, keys: int, ts: int) -> list[Record]:
    out = []
    for i in range(start, start + n):
        key = b"key-%d" % (i * 7 % keys)
        value = None if i % 11 == 5 else b"value-%d" % i
        offset = log.append(value, key=key, timestamp=ts + i)
        out.append(Record(offset, ts + i, key, value, ()))
    return out


CLEAN_SHUTDOWN = ".kafka_cleanshutdown"


# ---------------------------------------------------------------- logging
def _unclean(path: Path) -> None:
    (path / CLEAN_SHUTDOWN).unlink()


# ---------------------------------------------------------------- the command line
_run = run_cli


# ---------------------------------------------------------------- CRC on read
def _flip_in_value(path: Path, marker: bytes) -> int:
    data = bytearray(path.read_bytes())
    at = data.find(marker)
    assert at > 0
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    return at


def segment_files(directory: Path) -> list[str]:
    """Every file named after a base offset (leftovers such as ``.deleted`` included)."""
    return sorted(p.name for p in directory.iterdir() if p.name[:20].isdigit())


def names_for(*bases: int) -> list[str]:
    return sorted(f"{b:020d}{suffix}" for b in bases for suffix in (".log", ".index", ".timeindex"))


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


# ---------------------------------------------------------------- the archive hook runs unlocked
class BlockingArchive:
    """An archive hook that holds its first call until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, paths: list[str]) -> None:
        self.calls.append(os.path.basename(paths[0]))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(timeout=30)


class ThreadRecordingArchive(BlockingArchive):
    """A ``BlockingArchive`` that also notes the thread each call runs in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def __call__(self, paths: list[str]) -> None:
        self.threads.append(threading.current_thread().name)
        super().__call__(paths)


DAY = 86_400_000


def _old(clock: FakeClock, n: int, prefix: bytes = b"o") -> list[logstore.Message]:
    return [
        logstore.Message(prefix + b"%d" % i, timestamp=clock.now_ms - 2 * DAY) for i in range(n)
    ]


def _producer_batches(count: int, per_batch: int, codec: int = 0) -> bytes:
    """Batches as a producer sends them: base offset 0 each, CRC over the rest."""
    out = []
    for b in range(count):
        items = [
            (b"value-%d-%d" % (b, i), b"key-%d" % i, (), 1_700_000_000_000 + b)
            for i in range(per_batch)
        ]
        out.append(batch.encode_batch(items, base_offset=0, codec=codec))
    return b"".join(out)


def _batch_ends(path: Path) -> list[int]:
    data = path.read_bytes()
    ends, pos = [], 0
    while pos < len(data):
        pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "big")
        ends.append(pos)
    return ends


COMPACT = LogConfig(
    cleanup_policy="compact", segment_messages=10, fsync="never", min_cleanable_dirty_ratio=1.0
)


# ---------------------------------------------------------------- an idle log expires too
HOUR = 3_600_000


def _segment_names(log_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(log_dir) if n[:20].isdigit())


def _in_thread(action: Callable[[], object], timeout: float = 10) -> bool:
    """Run ``action`` in a thread; whether it finished within ``timeout`` (not blocked)."""
    worker = threading.Thread(target=action, daemon=True)
    worker.start()
    worker.join(timeout=timeout)
    return not worker.is_alive()


def _segments(directory: Path) -> Segments:
    settings = SegmentSettings(max_index_bytes=1 << 20, index_interval_bytes=4096)
    first = Segment.create(str(directory), 0, settings=settings)
    return Segments(
        str(directory),
        [first],
        settings=settings,
        fsync=True,
        handles=None,
        contiguous=True,
    )


def _append(segs: Segments, base_offset: int, count: int, ts: int = 1000) -> None:
    entries = [(b"v%d" % i, None, (), ts) for i in range(count)]
    section, _, max_ts = batch.encode_section(entries, ts, start=0, stop=count, now=ts)
    data = batch.build_batch(
        section,
        base_offset=base_offset,
        record_count=count,
        last_offset_delta=count - 1,
        base_timestamp=ts,
        max_timestamp=max_ts,
    )
    span = BatchSpan(len(data), base_offset + count - 1, max_ts)
    segs.active.append(data, (span,), record_count=count)
