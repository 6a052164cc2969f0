"""``reader``: read, scan, read_batches and offset_for_timestamp over a snapshot; damage
is refused, never served.
"""

from __future__ import annotations

import shutil
import struct
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore import CorruptLogError, LogConfig, Message, Record, batch

from .conftest import OpenLog, run_python
from .helpers import SEGMENT_0, _flip_in_value, _run
from .helpers_damage import CONFIG, SEALED, T0, _batch_positions, _flip, _key, _verify


def _sealed_log_with_damage(tmp_path: Path, verify: bool) -> tuple[Path, int, LogConfig]:
    """Three one-record batches, the first two sealed; one bit of "second" flipped.

    Returns the log's path, the byte position of the damaged batch and the config.
    """
    path = tmp_path / "log"
    config = LogConfig(fsync="never", segment_messages=2, verify_crc_on_read=verify)
    with logstore.Log.open(path, config) as log:
        for i, value in enumerate((b"first", b"second", b"third")):
            log.append(value, timestamp=10 * (i + 1))
    data = (path / SEGMENT_0).read_bytes()
    second = 12 + int.from_bytes(data[8:12], "big")  # the first batch's size
    assert second < data.find(b"second")
    _flip_in_value(path / SEGMENT_0, b"second")
    return path, second, config


def test_reads_of_a_flipped_byte_raise_with_verify_crc_on_read(tmp_path: Path) -> None:
    path, position, config = _sealed_log_with_damage(tmp_path, verify=True)
    where = f"{path / SEGMENT_0} at byte {position}: CRC mismatch"
    with logstore.Log.open(path, config) as log:
        assert [r.value for r in log.read(0, max_records=1)] == [b"first"]
        with pytest.raises(CorruptLogError, match=where):
            log.read(1)
        with pytest.raises(CorruptLogError, match=where):
            list(log.scan())
        with pytest.raises(CorruptLogError, match=where):
            log.read_batches(1)
        with pytest.raises(CorruptLogError, match=where):
            log.offset_for_timestamp(15)
        assert [r.value for r in log.read(2)] == [b"third"]


def test_without_verify_crc_on_read_reads_return_the_damaged_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the README says of ``verify_crc_on_read=False``, exactly."""
    from logstore import batch

    path, position, config = _sealed_log_with_damage(tmp_path, verify=False)
    with logstore.Log.open(path, config) as log:
        # read and scan decode the damaged value as stored: one bit differs, no error.
        assert [r.value for r in log.read(0)] == [b"first", b"recond", b"third"]
        assert [r.value for r in log.scan()] == [b"first", b"recond", b"third"]
        assert log.offset_for_timestamp(15) == 1
        # read_batches hands out the stored bytes with their stored CRC, which a
        # receiver that checks CRCs (Kafka's consumer does by default) rejects.
        raw = log.read_batches(1, max_bytes=1)
        assert raw == (path / SEGMENT_0).read_bytes()[position : position + len(raw)]
        with pytest.raises(CorruptLogError, match="CRC mismatch"):
            batch.read_header(raw, 0, verify_crc=True)
    # verify checks every CRC whatever the setting.
    code, out, err = _run(capsys, "verify", str(path))
    assert code == 1
    assert out.startswith(f"{path / SEGMENT_0} at byte {position}: CRC mismatch")
    assert err == "logstore: 1 problem(s) in 1 file(s) (2 batches, 2 records read)\n"


def test_without_verify_crc_on_read_broken_framing_still_raises(tmp_path: Path) -> None:
    path = tmp_path / "log"
    config = LogConfig(fsync="never", verify_crc_on_read=False)
    with logstore.Log.open(path, config) as log:
        log.append_many(
            [logstore.Message(b"value-%d" % i, key=b"k", timestamp=5) for i in range(3)]
        )
    data = bytearray((path / SEGMENT_0).read_bytes())
    data[61] ^= 0x40  # the first record's length varint, right after the 61-byte header
    (path / SEGMENT_0).write_bytes(bytes(data))
    with logstore.Log.open(path, config) as log, pytest.raises(CorruptLogError) as caught:
        log.read(0)
    assert caught.value.kind == "invalid_records"
    assert str(caught.value).startswith(f"{path / SEGMENT_0} at byte ")


def test_read_at_end_offset_returns_nothing(open_log: OpenLog) -> None:
    log = open_log()
    assert log.read(0) == []
    log.append_many([b"a", b"b"])
    assert log.read(2) == []
    assert log.read(2, max_records=10, max_bytes=10) == []
    assert list(log.scan(2)) == []


def test_read_outside_the_log_raises_offset_out_of_range(open_log: OpenLog) -> None:
    log = open_log(segment_messages=5)
    log.append_many([b"%d" % i for i in range(12)])
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(13)
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(-1)
    log.delete_before(7)
    assert log.start_offset == 7
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(6)
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read(0)
    with pytest.raises(logstore.OffsetOutOfRange):
        list(log.scan(6))
    assert [r.offset for r in log.read(7)] == [7, 8, 9, 10, 11]
    assert [r.offset for r in log.scan()] == [7, 8, 9, 10, 11]


def test_read_starts_inside_a_batch_and_honours_max_records(open_log: OpenLog) -> None:
    log = open_log()
    log.append_many([b"%d" % i for i in range(20)])  # one batch
    assert [r.offset for r in log.read(7, max_records=3)] == [7, 8, 9]
    assert [r.offset for r in log.read(7, max_records=0)] == []
    assert [r.offset for r in log.read(18, max_records=5)] == [18, 19]
    # max_bytes smaller than a batch: still at least one record, from the offset on
    got = [r.offset for r in log.read(7, max_bytes=1)]
    assert got
    assert got == list(range(7, 7 + len(got)))


def test_max_bytes_stops_at_batch_boundaries(open_log: OpenLog) -> None:
    log = open_log()
    for i in range(10):
        log.append(b"x" * 100, key=b"%d" % i)  # ten batches of equal size
    batch = log.segments[0].size_bytes // 10
    assert [r.offset for r in log.read(0, max_bytes=batch)] == [0]
    assert [r.offset for r in log.read(0, max_bytes=3 * batch)] == [0, 1, 2]
    assert [r.offset for r in log.read(2, max_bytes=3 * batch + 1)] == [2, 3, 4]
    assert [r.offset for r in log.read(0, max_bytes=10_000)] == list(range(10))


def test_scan_ranges(open_log: OpenLog) -> None:
    log = open_log(segment_messages=4)
    log.append_many([b"%d" % i for i in range(10)])
    assert [r.offset for r in log.scan()] == list(range(10))
    assert [r.offset for r in log.scan(3, 7)] == [3, 4, 5, 6]
    assert [r.offset for r in log.scan(4, 8)] == [4, 5, 6, 7]
    assert [r.offset for r in log.scan(5, 5)] == []
    assert [r.offset for r in log.scan(6, 2)] == []
    assert [r.offset for r in log.scan(8, 1000)] == [8, 9]
    assert [r.offset for r in log.scan(end_offset=3)] == [0, 1, 2]


def test_scan_range_is_fixed_when_it_starts(open_log: OpenLog) -> None:
    log = open_log()
    log.append_many([b"a", b"b"])
    it = log.scan()
    log.append(b"c")
    assert [r.value for r in it] == [b"a", b"b"]


def test_offset_for_timestamp(open_log: OpenLog) -> None:
    log = open_log(segment_messages=3, index_interval_bytes=0)
    stamps = [100, 300, 200, 300, 500, 400, 50, 600]
    log.append_many([Message(b"%d" % i, timestamp=t) for i, t in enumerate(stamps)])
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(100) == 0
    assert log.offset_for_timestamp(101) == 1
    assert log.offset_for_timestamp(200) == 1
    assert log.offset_for_timestamp(301) == 4
    assert log.offset_for_timestamp(450) == 4
    assert log.offset_for_timestamp(501) == 7
    assert log.offset_for_timestamp(600) == 7
    assert log.offset_for_timestamp(601) is None
    log.delete_before(5)
    assert log.offset_for_timestamp(0) == 5
    assert log.offset_for_timestamp(300) == 5
    assert log.offset_for_timestamp(401) == 7


def test_scan_started_before_delete_before_finishes_or_reports_out_of_range(
    open_log: OpenLog,
) -> None:
    """A scan's range is fixed when it starts. If delete_before then removes its
    segments, the scan may still deliver them or raise OffsetOutOfRange, but an
    OSError about a vanished file is not part of the contract."""
    log = open_log(segment_messages=20)
    log.append_many([b"%d" % i for i in range(200)])
    it = log.scan()
    assert next(it).offset == 0
    log.delete_before(150)
    try:
        rest = [(r.offset, r.value) for r in it]
    except logstore.OffsetOutOfRange:
        return
    assert rest == [(i, b"%d" % i) for i in range(1, 200)]


def test_reads_racing_delete_before(open_log: OpenLog) -> None:
    """Readers racing a writer and delete_before get the right records or
    OffsetOutOfRange (their offset fell below the start), never an OSError.
    The scanning reader yields the GIL after each record, as a consumer doing
    work would, so deletions land in the middle of its scans."""
    log = open_log(segment_messages=10)
    stop = threading.Event()
    unexpected: list[str] = []
    delivered = [0]

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 1_000_000:
            log.append_many([b"%d" % o for o in range(i, i + 5)])
            i += 5

    def deleter() -> None:
        while not stop.is_set():
            end = log.end_offset
            if end > 50:
                log.delete_before(end - 50)

    def reader(slow: bool) -> None:
        while not stop.is_set():
            try:
                start = log.start_offset
                records = log.read(start, max_records=40) if not slow else log.scan(start)
                for r in records:
                    if r.value != b"%d" % r.offset:
                        unexpected.append(f"wrong record {r}")
                    delivered[0] += 1
                    if slow:
                        time.sleep(0)
            except logstore.OffsetOutOfRange:
                pass
            except Exception as exc:
                unexpected.append(f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=writer),
        threading.Thread(target=deleter),
        threading.Thread(target=reader, args=(True,)),
        threading.Thread(target=reader, args=(False,)),
    ]
    for t in threads:
        t.start()
    stop.wait(2)
    stop.set()
    for t in threads:
        t.join()
    assert unexpected[:3] == []
    assert delivered[0] > 0
    assert log.end_offset > 50


# ---------------------------------------------------------------- memory
SCAN_MEMORY_PROBE = """
    import resource, sys
    import logstore
    log = logstore.Log.open(sys.argv[1], logstore.LogConfig(fsync="never"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = 0
    last = -1
    for record in log.scan():
        assert record.offset == last + 1
        last = record.offset
        count += 1
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    log.close()
    print(count, last, before, after)
"""


def test_scan_memory_stays_flat(open_log: OpenLog, log_dir: Path) -> None:
    total, per_call = 600_000, 5_000
    log = open_log(segment_bytes=16 << 20)
    value = b"v" * 100
    for _ in range(total // per_call):
        log.append_many([value] * per_call)
    assert log.end_offset == total
    assert log.size_bytes > 60_000_000
    log.close()
    probe = run_python(SCAN_MEMORY_PROBE, str(log_dir), timeout=240)
    assert probe.returncode == 0, probe.stderr
    count, last, before_kib, after_kib = map(int, probe.stdout.split())
    assert (count, last) == (total, total - 1)
    assert (after_kib - before_kib) * 1024 < 50_000_000


@pytest.mark.parametrize("which", [0, 1, 3], ids=["first", "middle", "last"])
@pytest.mark.parametrize("byte", range(8))
@pytest.mark.parametrize("mask", [0x01, 0x08, 0x80])
def test_a_damaged_base_offset_in_a_sealed_segment_is_never_served(
    image: tuple[Path, list[Record]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    which: int,
    byte: int,
    mask: int,
) -> None:
    source, records = image
    path = tmp_path / "log"
    shutil.copytree(source, path)
    sealed = path / SEALED
    position, base = _batch_positions(sealed)[which]
    assert base == 20 + 5 * which
    _flip(sealed, position + byte, mask)
    where = f"{sealed} at byte {position}: "
    with logstore.Log.open(path, CONFIG) as log:
        for call in (
            lambda: list(log.scan()),
            lambda: list(log.scan(20)),
            lambda: log.read(20),
            lambda: log.read(15, max_records=100),
            lambda: log.read_batches(20),
        ):
            with pytest.raises(CorruptLogError) as info:
                call()
            assert (info.value.path, info.value.position) == (str(sealed), position)
            assert info.value.kind in ("offset_mismatch", "offset_regression")
            assert str(info.value).startswith(where)
        # Records before the damage are still served exactly.
        assert log.read(0, max_records=20) == records[:20]
        assert list(log.scan(40)) == records[40:]
    code, err = _verify(capsys, path)
    assert code == 1
    assert where in err


def test_a_base_offset_moved_up_in_a_sealed_segment_stops_the_scan_where_it_breaks(
    image: tuple[Path, list[Record]], tmp_path: Path
) -> None:
    """Offsets 55..59 stored as 63..67: the scan used to go on from 63 without a word."""
    source, _ = image
    path = tmp_path / "log"
    shutil.copytree(source, path)
    sealed = path / f"{40:020d}.log"
    position, base = _batch_positions(sealed)[3]
    assert base == 55
    _flip(sealed, position + 7, 55 ^ 63)
    with logstore.Log.open(path, CONFIG) as log:
        got = []
        with pytest.raises(CorruptLogError) as info:
            got.extend(r.offset for r in log.scan())
        assert got == list(range(55))
        assert str(info.value) == (
            f"{sealed} at byte {position}: batch base offset 63 does not follow offset 54 "
            "(a gap in a log that was never compacted)"
        )
        assert info.value.kind == "offset_mismatch"


def test_a_segment_whose_batches_reach_into_the_next_is_reported_even_with_gaps_allowed(
    tmp_path: Path,
) -> None:
    """In a compacted log gaps are legal, but never past the next segment's base offset."""
    config = LogConfig(
        fsync="never", segment_messages=20, cleanup_policy="compact", min_cleanable_dirty_ratio=1.0
    )
    path = tmp_path / "log"
    with logstore.Log.open(path, config) as log:
        for i in range(20):
            log.append_many(Message(b"v", b"k%d" % (5 * i + j), (), T0) for j in range(5))
    sealed = path / SEALED
    position, _ = _batch_positions(sealed)[3]
    _flip(sealed, position + 7, 0x08)  # 35 -> 43: its last offset 47 >= 40, the next base
    with logstore.Log.open(path, config) as log:
        with pytest.raises(CorruptLogError) as info:
            list(log.scan())
        assert (info.value.path, info.value.position) == (str(sealed), position)
        assert "reach past offset 39" in str(info.value)


def _compacted_log(path: Path) -> list[Record]:
    config = LogConfig(
        fsync="never",
        segment_bytes=400,
        cleanup_policy="compact",
        min_cleanable_dirty_ratio=1.0,
        index_interval_bytes=64,
    )
    with logstore.Log.open(path, config) as log:
        for i in range(60):
            log.append(b"value-%d" % i, key=_key(i), timestamp=T0 + i)
        log.roll()
        log.compact()
        kept = list(log.scan())
    offsets = [r.offset for r in kept]
    assert offsets != list(range(offsets[0], offsets[0] + len(offsets)))  # gaps
    return kept


def test_a_compacted_log_with_gaps_reads_without_false_alarms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log"
    kept = _compacted_log(path)
    # Opened as it was made, then with the default (delete) policy: the gaps are legal.
    for config in (LogConfig(cleanup_policy="compact"), LogConfig()):
        with logstore.Log.open(path, config) as log:
            assert list(log.scan()) == kept
            for r in kept:
                assert log.read(r.offset, max_records=1) == [r]
            assert log.offset_for_timestamp(T0) == kept[0].offset
    assert [a.action for a in logstore.Log.recover(path) if a.action != "rebuild_index"] == []
    with logstore.Log.open(path) as log:
        assert list(log.scan()) == kept
    assert _verify(capsys, path)[0] == 0


@pytest.mark.parametrize("policy", ["compact", "delete"])
def test_a_base_offset_moved_into_the_next_batches_is_never_served(
    tmp_path: Path, policy: str
) -> None:
    """Gaps may be legal (a compacting policy), overlaps never: a batch whose base
    offset moved up into its successors' offsets is refused before it is served,
    by read, scan, read_batches and offset_for_timestamp alike."""
    path = tmp_path / "log"
    config = LogConfig(
        fsync="never",
        segment_messages=50,
        cleanup_policy=policy,  # type: ignore[arg-type]
        min_cleanable_dirty_ratio=1.0,
    )
    with logstore.Log.open(path, config) as log:
        for i in range(150):
            log.append(b"v%03d" % i, key=b"k%03d" % i, timestamp=1000 + i)
    sealed = path / f"{50:020d}.log"
    position = dict((base, pos) for pos, base in _batch_positions(sealed))[65]
    data = bytearray(sealed.read_bytes())
    struct.pack_into(">q", data, position, 68)
    sealed.write_bytes(bytes(data))
    with logstore.Log.open(path, config) as log:
        assert [r.offset for r in log.read(60, max_records=5)] == [60, 61, 62, 63, 64]
        for call in (
            lambda: log.read(65, max_records=3),
            lambda: log.read(60, max_records=10),
            lambda: log.read_batches(65),
            lambda: log.offset_for_timestamp(1065),
        ):
            with pytest.raises(CorruptLogError) as info:
                call()
            assert info.value.path == str(sealed)
        served = []
        with pytest.raises(CorruptLogError):
            for record in log.scan(60):
                served.append(record.offset)
        assert served == [60, 61, 62, 63, 64]


def test_read_batches_from_inside_a_batch_and_across_segments(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=400)
    for b in range(10):
        log.append_many([b"%d-%d" % (b, i) for i in range(5)])
    assert len(log.segments) > 2
    whole = log.read_batches(0, max_bytes=1 << 30)
    starts = []
    position = 0
    while position < len(whole):
        header = batch.read_header(whole, position)
        starts.append(header.base_offset)
        position += header.size
    assert starts == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    # From offset 12: the batch holding it (base 10) comes first, whole.
    part = log.read_batches(12, max_bytes=1)
    assert batch.read_header(part).base_offset == 10
    assert len(part) == batch.read_header(part).size  # one batch even over max_bytes
    two = log.read_batches(12, max_bytes=2 * len(part))
    assert [batch.read_header(two, p).base_offset for p in (0, len(part))] == [10, 15]
    assert log.read_batches(log.end_offset) == b""
    with pytest.raises(logstore.OffsetOutOfRange):
        log.read_batches(log.end_offset + 1)


def test_read_batches_feeds_append_batches_of_another_log(open_log: OpenLog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = open_log(path=tmp_path / "a", compression="zstd")
    source.append_many(
        [logstore.Message(b"v%d" % i, key=b"k%d" % i, headers=(("h", b"1"),)) for i in range(50)]
    )
    target = open_log(path=tmp_path / "b")
    target.append_batches(source.read_batches(0, max_bytes=1 << 20))
    assert [r[2:] for r in target.scan()] == [r[2:] for r in source.scan()]


def test_a_base_offset_that_goes_back_is_reported_not_served(tmp_path: Path) -> None:
    with logstore.Log.open(tmp_path) as log:
        for i in range(3):
            log.append(b"rec%d" % i)
        path = log.segments[0].path
    data = bytearray(Path(path).read_bytes())
    first = 12 + struct.unpack_from(">i", data, 8)[0]
    struct.pack_into(">q", data, first, 0)  # batch 2's base offset 1 -> 0 (outside the CRC)
    Path(path).write_bytes(data)
    with logstore.Log.open(tmp_path) as log:
        with pytest.raises(CorruptLogError, match="overlaps or goes back") as info:
            log.read(0)
        assert info.value.position == first
        with pytest.raises(CorruptLogError):
            list(log.scan())


def test_read_batches_does_not_read_the_batch_past_its_budget(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that would go past ``max_bytes`` is not pulled from disk just to be dropped.

    Batches of 40 KB, ``max_bytes`` 50 KB: the first read (64 KiB) holds the first
    batch and the start of the second; the second is not read again in full (a
    fetch used to pread about twice what it served); from the second batch with
    room for two, the fourth is not read.
    """
    from logstore.batchfile import BatchFile

    log = open_log()
    value = bytes(range(256)) * 20  # 5,120 bytes
    for _ in range(4):
        log.append_many([value] * 8)
    whole = log.read_batches(0, max_bytes=1 << 30)
    positions = [0]
    while positions[-1] < len(whole):
        positions.append(positions[-1] + batch.read_header(whole, positions[-1]).size)
    assert len(positions) == 5 and 40_000 < positions[1] < 50_000 < positions[2]
    reads: list[tuple[int, int]] = []
    real = BatchFile.read

    def spy(self: BatchFile, position: int, size: int) -> bytes:
        reads.append((position, size))
        return real(self, position, size)

    monkeypatch.setattr(BatchFile, "read", spy)
    got = log.read_batches(0, max_bytes=50_000)
    assert got == whole[: positions[1]]
    # Reads start before the second batch (the index lookup, the first chunk): none at it.
    assert reads and all(position < positions[1] for position, _ in reads)
    reads.clear()
    got = log.read_batches(8, max_bytes=2 * positions[1] + 100)
    assert got == whole[positions[1] : positions[3]]
    assert all(position < positions[3] for position, _ in reads)
