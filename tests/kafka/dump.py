"""Reading what Kafka's ``DumpLogSegments`` prints, exactly.

The tool exits 0 even when it finds damage: problems are lines of its
output ("Found N invalid bytes at the end of F", "isvalid: false") or of
its stderr, printed after all files ("Non-consecutive offsets in F",
"Mismatches in :F", "Found timestamp mismatch in :F", "Found out of order
timestamp in :F", "The following indexed offsets are not found in the
log."). A record's key and payload are printed as UTF-8 text after its
metadata; their byte sizes, printed too, say where each ends, so a key that
contains " payload: " is still read right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DUMP_LOG_SEGMENTS = "org.apache.kafka.tools.DumpLogSegments"

_RECORD = re.compile(
    r"\| offset: (?P<offset>\d+) (?P<ts_type>\w+): (?P<ts>-?\d+) keySize: (?P<key_size>-?\d+) "
    r"valueSize: (?P<value_size>-?\d+) sequence: (?P<sequence>-?\d+) headerKeys: \["
)
_FIELD = re.compile(r"(\w+): (\S+)")


@dataclass
class DumpedRecord:
    offset: int
    timestamp_type: str
    timestamp: int
    sequence: int
    header_keys: str  # as printed: the keys joined by ","
    key: str | None
    value: str | None


@dataclass
class DumpedBatch:
    fields: dict[str, str]  # baseOffset, lastOffset, count, ..., CreateTime, isvalid
    records: list[DumpedRecord] = field(default_factory=list)


@dataclass
class DumpedFile:
    path: str
    batches: list[DumpedBatch] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # everything else printed for it


def parse_record(line: str) -> DumpedRecord:
    """One ``| offset: ...`` line; the key and value cut by their printed byte sizes."""
    match = _RECORD.match(line)
    if match is None:
        raise ValueError(f"not a record line: {line!r}")
    key_size, value_size = int(match["key_size"]), int(match["value_size"])
    rest = line[match.end() :]
    # The header keys end at a "]" after which the key and value fit their sizes exactly.
    for close in (i for i, c in enumerate(rest) if c == "]"):
        tail = rest[close + 1 :].encode()
        key = value = None
        if key_size >= 0:
            if not tail.startswith(b" key: "):
                continue
            key, tail = tail[6 : 6 + key_size], tail[6 + key_size :]
        if value_size >= 0:
            if not tail.startswith(b" payload: "):
                continue
            value, tail = tail[10 : 10 + value_size], tail[10 + value_size :]
        if tail:
            continue
        return DumpedRecord(
            offset=int(match["offset"]),
            timestamp_type=match["ts_type"],
            timestamp=int(match["ts"]),
            sequence=int(match["sequence"]),
            header_keys=rest[:close],
            key=None if key is None else key.decode(),
            value=None if value is None else value.decode(),
        )
    raise ValueError(f"key and payload do not fit their sizes: {line!r}")


def parse(stdout: str) -> dict[str, DumpedFile]:
    """The tool's stdout by file dumped, in the order dumped."""
    files: dict[str, DumpedFile] = {}
    current: DumpedFile | None = None
    for line in stdout.splitlines():
        if line.startswith("Dumping "):
            current = files.setdefault(line[8:], DumpedFile(line[8:]))
        elif current is None:
            raise ValueError(f"output before any file: {line!r}")
        elif line.startswith("baseOffset: "):
            current.batches.append(DumpedBatch(dict(_FIELD.findall(line))))
        elif line.startswith("| "):
            if not current.batches:
                raise ValueError(f"a record before any batch: {line!r}")
            current.batches[-1].records.append(parse_record(line))
        else:
            current.lines.append(line)
    return files


def non_consecutive(stderr: str) -> tuple[dict[str, list[tuple[int, int]]], list[str]]:
    """The "Non-consecutive offsets" the tool reported by file, and every other stderr line."""
    pairs: dict[str, list[tuple[int, int]]] = {}
    others: list[str] = []
    current: list[tuple[int, int]] | None = None
    for line in stderr.splitlines():
        if line.startswith("Non-consecutive offsets in "):
            current = pairs.setdefault(line[len("Non-consecutive offsets in ") :], [])
        elif current is not None and (m := re.fullmatch(r"  (-?\d+) is followed by (\d+)", line)):
            current.append((int(m[1]), int(m[2])))
        else:
            current = None
            others.append(line)
    return pairs, others


def expected_non_consecutive(offsets: list[int]) -> list[tuple[int, int]]:
    """What the tool reports for a file holding ``offsets``: it starts each file at -1,
    so a segment not based at 0 always has one pair; a compacted one has its gaps."""
    pairs, previous = [], -1
    for offset in offsets:
        if offset != previous + 1:
            pairs.append((previous, offset))
        previous = offset
    return pairs
