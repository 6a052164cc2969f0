"""Partition directories for Kafka's tools to judge, and the records each must hold.

Run as ``python -m tests.kafka.scenarios OUT``: the codec the interpreter
chose at import (compiled, or pure under ``LOGSTORE_PURE=1``) writes one
directory per scenario and compression codec under ``OUT``, and
``OUT/manifest.json`` with the records logstore reads back from each. Every
scenario checks its records against a model of what was appended before it
writes the manifest, so Kafka's view is compared with what was meant, not
only with what logstore happens to read.

Keys, values and header keys are valid UTF-8 without line breaks (Kafka's
dump tool prints them as text, one record a line) but include spaces,
non-ASCII text, empty strings and the tool's own separator ``" payload: "``.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import logstore
from logstore import LogConfig, Message, compression
from logstore._fs import CLEAN_SHUTDOWN_FILE

BASE_TS = 1_700_000_000_000
Model = list[tuple[int, Message]]


def codecs() -> list[str]:
    """Every compression codec logstore can write here."""
    return [name for name in compression.CODEC_IDS if compression.is_available(name)]


def _text(rng: random.Random, what: str, i: int) -> bytes | None:
    roll = rng.random()
    if roll < 0.12:
        return None
    if roll < 0.17:
        return b""
    if roll < 0.25:
        return f"{what} {i} payload: ünï ☃ {'x' * rng.randrange(40)}".encode()
    return f"{what}-{i}-{'abcdefgh' * rng.randrange(1, 12)}".encode()


def messages(
    rng: random.Random, start: int, count: int, *, keys: list[bytes] | None = None
) -> list[Message]:
    """``count`` messages: null and empty keys and values, headers, timestamps that step back."""
    out = []
    for i in range(start, start + count):
        headers: list[tuple[str, bytes | None]] = []
        for h in range(rng.choice((0, 0, 1, 2, 3))):
            name = rng.choice(("trace-id", "ünï", "", f"h{h}"))
            headers.append((name, rng.choice((None, b"", f"v{i}".encode(), bytes(range(256))))))
        key = rng.choice(keys) if keys else _text(rng, "key", i)
        # Mostly increasing, sometimes behind: Kafka indexes a batch's max timestamp.
        ts = BASE_TS + i * 10 + (-35 if rng.random() < 0.1 else rng.randrange(5))
        out.append(Message(_text(rng, "value", i), key=key, headers=headers, timestamp=ts))
    return out


def append(log: logstore.Log, model: Model, rng: random.Random, count: int, **kw: Any) -> None:
    """Append ``count`` messages in batches of 1..25 records, into ``model`` too."""
    done = 0
    while done < count:
        n = min(count - done, rng.randrange(1, 26))
        batch = messages(rng, log.end_offset, n, **kw)
        appended = log.append_many(batch)
        model.extend(zip(appended, batch))
        done += n


def records(log: logstore.Log) -> list[logstore.Record]:
    return list(log.read(log.start_offset, max_records=1 << 30)) if log.end_offset else []


def expect(log: logstore.Log, model: Model) -> None:
    """What logstore reads is what the model says was appended."""
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in records(log)]
    want = [(o, m.timestamp, m.key, m.value, list(m.headers)) for o, m in model]
    assert got == want, f"{log.path}: logstore reads other records than were appended"


def rolled(path: Path, codec: str, rng: random.Random) -> None:
    """Many small segments with dense indexes: every roll and index entry is judged."""
    config = LogConfig(compression=codec, segment_bytes=6000, index_interval_bytes=300)
    model: Model = []
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        append(log, model, rng, 500)
        log.roll()
        append(log, model, rng, 30)
        expect(log, model)
        assert len(log.segments) >= 4


def truncated(path: Path, codec: str, rng: random.Random) -> None:
    """Truncated inside a batch, then to a segment's base, each followed by appends."""
    config = LogConfig(compression=codec, segment_bytes=6000, index_interval_bytes=300)
    model: Model = []
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        append(log, model, rng, 400)
        inside = next(o for o, _ in model[200:] if o not in {s.base_offset for s in log.segments})
        log.truncate(inside)
        del model[inside:]
        append(log, model, rng, 120)
        base = log.segments[1].base_offset
        log.truncate(base)
        del model[base:]
        append(log, model, rng, 150)
        expect(log, model)


def recovered(path: Path, codec: str, rng: random.Random) -> None:
    """A torn tail cut by recovery, and the indexes of older segments rebuilt.

    After the close, half a batch is added to the active segment as a crash
    in its write would leave it, the clean-shutdown marker is removed and the
    index files of the first two segments, below the recovery point, are
    deleted: the open must cut the tail and write all the indexes again.
    """
    config = LogConfig(compression=codec, segment_bytes=6000, index_interval_bytes=300)
    model: Model = []
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        append(log, model, rng, 300)
        end = log.end_offset
        last = log.read_batches(model[-1][0])
        active = Path(log.segments[-1].path)
    torn = end.to_bytes(8, "big") + last[8 : len(last) // 2]
    with open(active, "ab") as f:
        f.write(torn)
    (path / CLEAN_SHUTDOWN_FILE).unlink()
    for log_file in sorted(path.glob("*.log"))[:2]:
        log_file.with_suffix(".index").unlink()
        log_file.with_suffix(".timeindex").unlink()
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        assert log.end_offset == end, "recovery did not cut the torn batch"
        append(log, model, rng, 100)
        expect(log, model)


def compacted(path: Path, codec: str, rng: random.Random) -> None:
    """Compacted twice: tombstones kept and then removed, batches emptied, gaps in offsets."""
    config = LogConfig(
        compression=codec,
        cleanup_policy="compact",
        segment_bytes=5000,
        index_interval_bytes=300,
        delete_retention_ms=0,
    )
    keys = [f"host-{i:02d}.example.org".encode() for i in range(30)]
    model: Model = []
    with logstore.Log.open(path, config, maintenance_interval_ms=None) as log:
        append(log, model, rng, 400, keys=keys)
        # A batch every record of which a later one replaces: the cleaner empties it.
        doomed = [Message(b"old", key=k, timestamp=BASE_TS + 10 * log.end_offset) for k in keys[:3]]
        model.extend(zip(log.append_many(doomed), doomed))
        append(log, model, rng, 60, keys=keys)
        log.roll()
        log.compact()
        append(log, model, rng, 80, keys=keys)
        log.roll()
        log.compact()
        latest = {m.key: offset for offset, m in model}
        live = {offset for offset, m in model if latest[m.key] == offset and m.value is not None}
        got = records(log)
        # Only each key's latest record is left, and every live one is.
        assert all(latest[r.key] == r.offset for r in got)
        assert live <= {r.offset for r in got}
        assert len(got) < len(model)


SCENARIOS: dict[str, Callable[[Path, str, random.Random], None]] = {
    "rolled": rolled,
    "truncated": truncated,
    "recovered": recovered,
    "compacted": compacted,
}


def as_json(record: logstore.Record) -> dict[str, Any]:
    def text(b: bytes | None) -> str | None:
        return None if b is None else b.decode()

    return {
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": text(record.key),
        "value": text(record.value),
        "header_keys": [k for k, _ in record.headers],
        "header_values": [None if v is None else v.hex() for _, v in record.headers],
    }


def write_all(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every scenario under every codec into ``out``; the manifest, also written."""
    manifest: dict[str, list[dict[str, Any]]] = {}
    for name, scenario in SCENARIOS.items():
        for codec in codecs():
            path = out / f"{name}_{codec}-0"
            scenario(path, codec, random.Random(f"{name}/{codec}"))
            with logstore.Log.open(path, maintenance_interval_ms=None) as log:
                manifest[path.name] = [as_json(r) for r in records(log)]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


if __name__ == "__main__":
    write_all(Path(sys.argv[1]))
    print(logstore.__speedups__)
