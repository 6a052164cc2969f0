"""``compression``: codec ids, bounded decompression, levels, and a codec that is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import logstore
from logstore import LogConfig, batch, compression
from logstore.errors import CorruptLogError

from .conftest import file_hashes
from .helpers import run
from .helpers_verify import seg


def test_gzip_reads_concatenated_members() -> None:
    import gzip

    section = batch.encode_records([(b"a", None, (), 1), (b"b", None, (), 1)], 1)
    half = len(section) // 2
    stream = gzip.compress(section[:half]) + gzip.compress(section[half:])
    assert compression.decompress(compression.GZIP, stream) == section


def test_decompression_is_bounded() -> None:
    bomb = compression.compress(compression.ZSTD, bytes(10_000))
    with pytest.raises(CorruptLogError, match="more than 1000 bytes"):
        compression.decompress(compression.ZSTD, bomb, max_output=1000)
    bomb = compression.compress(compression.GZIP, bytes(10_000))
    with pytest.raises(CorruptLogError, match="more than 1000 bytes"):
        compression.decompress(compression.GZIP, bomb, max_output=1000)


@pytest.mark.parametrize(
    ("codec", "level"),
    [
        ("zstd", -131072),
        ("zstd", 0),
        ("zstd", 22),
        ("gzip", -1),
        ("gzip", 0),
        ("gzip", 9),
        ("lz4", 0),
        ("lz4", 16),
    ],
)
def test_every_accepted_level_really_compresses(tmp_path, codec: str, level: int) -> None:  # type: ignore[no-untyped-def]
    config = LogConfig(compression=codec, compression_level=level, fsync="never")  # type: ignore[arg-type]
    values = [b"record %d " % i * 20 for i in range(50)]
    with logstore.Log.open(tmp_path / "log", config) as log:
        log.append_many(values)
    with logstore.Log.open(tmp_path / "log", config) as log:
        assert [r.value for r in log.scan()] == values


# ---------------------------------------------------------------- a missing codec
@pytest.fixture
def lz4_log(tmp_path: Path) -> Path:
    if not compression.is_available("lz4"):
        pytest.skip("lz4 is not installed")
    directory = tmp_path / "z-0"
    config = logstore.LogConfig(fsync="never", compression="lz4", index_interval_bytes=10)
    with logstore.Log.open(directory, config) as log:
        for i in range(3):
            log.append(b"value-%d" % i * 20, timestamp=1000 + i)
    return directory


def _batch_positions(path: Path) -> list[int]:
    data, pos, found = path.read_bytes(), 0, []
    while pos < len(data):
        found.append(pos)
        pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "big")
    return found


def test_a_missing_codec_is_not_corruption(
    capsys: pytest.CaptureFixture[str], lz4_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment = seg(lz4_log, 0)
    positions = _batch_positions(segment)
    assert len(positions) == 3
    monkeypatch.setattr(compression, "_lz4frame", None)  # as if lz4 were not installed
    assert not compression.is_available("lz4")
    before = file_hashes(lz4_log)

    with (
        logstore.Log.open(lz4_log, logstore.LogConfig(fsync="never")) as log,
        pytest.raises(logstore.CodecUnavailableError) as info,
    ):
        log.read(1)
    assert not isinstance(info.value, logstore.CorruptLogError)
    assert str(info.value) == (
        f"batch at byte {positions[1]} of {segment} is lz4-compressed; install logstore[lz4]"
    )
    assert (info.value.path, info.value.position) == (str(segment), positions[1])

    code, out, err = run(capsys, "verify", str(lz4_log))
    assert code == 1
    assert out == (
        f"{segment}: could not check 3 batches from byte 0 (lz4 not installed; "
        "install logstore[lz4])\n"
    )
    assert (
        err
        == "logstore: could not check 3 batches (lz4 not installed) (3 batches, 3 records read)\n"
    )
    code, out, _ = run(capsys, "verify", str(lz4_log), "--json")
    report = json.loads(out)
    assert (code, report["ok"], report["problems"], report["unchecked_batches"]) == (
        1,
        False,
        [],
        3,
    )
    assert [u["position"] for u in report["unchecked"]] == positions

    code, out, err = run(capsys, "inspect", str(lz4_log), "--records")
    assert (code, err) == (0, "")  # not damage: inspect shows what it could not read
    assert out.splitlines()[1:] == [
        "    could not check 3 batches (lz4 not installed)",
        f"    could not decode: batch at byte 0 of {segment} is lz4-compressed; "
        "install logstore[lz4]",
        f"{lz4_log}: offsets [0, 3), 3 records, 1 segments, {segment.stat().st_size} bytes",
    ]

    # neither recover nor an unclean open cuts or quarantines them
    (lz4_log / ".kafka_cleanshutdown").unlink()
    code, out, err = run(capsys, "recover", str(lz4_log))
    assert (code, out, err) == (0, "1 partition(s) checked, 0 thing(s) changed\n", "")
    (lz4_log / ".kafka_cleanshutdown").unlink()
    with logstore.Log.open(lz4_log, logstore.LogConfig(fsync="never")) as log:
        assert (log.start_offset, log.end_offset) == (0, 3)
    logs = {k: v for k, v in file_hashes(lz4_log).items() if ".log" in k}
    assert logs == {k: v for k, v in before.items() if ".log" in k}
    monkeypatch.undo()
    with logstore.Log.open(lz4_log, logstore.LogConfig(fsync="never")) as log:
        assert [r.value for r in log.read(0)] == [b"value-%d" % i * 20 for i in range(3)]
