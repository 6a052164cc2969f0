"""Kafka's ``DumpLogSegments`` reads every segment and index logstore writes.

The scenarios (``scenarios.py``: rolls, truncation, a recovered torn tail
with rebuilt indexes, compaction, every compression codec) are written once
by each record codec, compiled and pure, each in a child process (the codec
is chosen at import). One run of the tool then deep-iterates every ``.log``
and verifies every ``.index`` and ``.timeindex`` against its log; a second
runs the broker's own index sanity check over the indexes.

The tool prints a record's header keys but not their values; those are
covered by the batches' CRCs, which the tool checks (``isvalid``), and by
the consuming tests that run against the broker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REPO, child_env
from . import dump
from .harness import KafkaTools

IMPLEMENTATIONS = {"compiled": "0", "pure": "1"}


def write_scenarios(out: Path, implementation: str) -> dict[str, list[dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.kafka.scenarios", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=child_env(LOGSTORE_PURE=IMPLEMENTATIONS[implementation]),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [implementation], "the child wrote with another codec"
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, list[dict[str, Any]]]:
    """Partition directory -> the records logstore reads back from it, for both codecs."""
    root = tmp_path_factory.mktemp("scenarios")
    with ThreadPoolExecutor(len(IMPLEMENTATIONS)) as pool:
        manifests = pool.map(lambda i: (i, write_scenarios(root / i, i)), IMPLEMENTATIONS)
        return {
            root / implementation / name: records
            for implementation, manifest in manifests
            for name, records in manifest.items()
        }


@pytest.fixture(scope="module")
def judged(
    kafka_tools: KafkaTools, written: dict[Path, list[dict[str, Any]]]
) -> tuple[dict[str, dump.DumpedFile], str]:
    """One deep iteration over every log, with the index verification: (parsed stdout, stderr)."""
    files = [f for path in written for f in sorted(path.iterdir()) if is_dumped(f)]
    code, out, err = kafka_tools(
        dump.DUMP_LOG_SEGMENTS,
        "--deep-iteration",
        "--print-data-log",
        "--verify-index-only",
        "--files",
        ",".join(map(str, files)),
    )
    assert code == 0, err
    parsed = dump.parse(out)
    assert sorted(parsed) == sorted(map(str, files))
    return parsed, err


def is_dumped(path: Path) -> bool:
    return path.suffix in (".log", ".index", ".timeindex")


def test_every_scenario_and_codec_is_written(written: dict[Path, list[dict[str, Any]]]) -> None:
    names = {path.name for path in written}
    assert {name.split("_")[0] for name in names} == {
        "rolled",
        "truncated",
        "recovered",
        "compacted",
    }
    assert {name.split("_")[1] for name in names} == {
        "none-0",
        "gzip-0",
        "snappy-0",
        "lz4-0",
        "zstd-0",
    }
    assert {path.parent.name for path in written} == set(IMPLEMENTATIONS)
    assert all(records for records in written.values())
    for path in written:  # "recovered" deleted two segments' indexes: the open rebuilt them
        for log_file in path.glob("*.log"):
            assert log_file.with_suffix(".index").is_file(), log_file
            assert log_file.with_suffix(".timeindex").is_file(), log_file


def test_kafka_reads_every_record_as_logstore_wrote_it(
    written: dict[Path, list[dict[str, Any]]], judged: tuple[dict[str, dump.DumpedFile], str]
) -> None:
    parsed, _ = judged
    for path, ours in written.items():
        logs = [parsed[str(f)] for f in sorted(path.glob("*.log"))]
        kafkas = []
        for log in logs:
            assert log.lines == [f"Log starting offset: {int(Path(log.path).stem)}"], log.lines
            for batch in log.batches:
                assert batch.fields["isvalid"] == "true", (log.path, batch.fields)
                assert batch.fields["magic"] == "2"
                records = batch.records
                assert int(batch.fields["count"]) == len(records), (log.path, batch.fields)
                if records:
                    assert int(batch.fields["baseOffset"]) <= records[0].offset
                    assert int(batch.fields["lastOffset"]) >= records[-1].offset
                    assert int(batch.fields["CreateTime"]) == max(r.timestamp for r in records)
                kafkas.extend(records)
        assert [as_ours(r) for r in kafkas] == [printed(record) for record in ours], path


def printed(record: dict[str, Any]) -> dict[str, Any]:
    """What the tool prints of one of our records: header keys joined by commas, no values."""
    shown = {k: v for k, v in record.items() if k not in ("header_keys", "header_values")}
    return {**shown, "header_keys": ",".join(record["header_keys"])}


def as_ours(record: dump.DumpedRecord) -> dict[str, Any]:
    assert record.timestamp_type == "CreateTime"
    assert record.sequence == -1
    return {
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key,
        "value": record.value,
        "header_keys": record.header_keys,
    }


def test_no_invalid_bytes_and_no_index_mismatches(
    written: dict[Path, list[dict[str, Any]]], judged: tuple[dict[str, dump.DumpedFile], str]
) -> None:
    parsed, err = judged
    for dumped in parsed.values():
        assert not any("invalid bytes" in line for line in dumped.lines), dumped.path
        if not dumped.path.endswith(".log"):
            # A segment whose first batch is its only one has no offset index entry,
            # as in Kafka (an entry is due only after index_interval_bytes): "empty".
            empty = dumped.path.endswith(".index") and Path(dumped.path).stat().st_size == 0
            assert dumped.lines == ([f"{dumped.path} is empty."] if empty else []), dumped.path
            assert dumped.batches == []
    pairs, others = dump.non_consecutive(err)
    assert others == []  # no "Mismatches in :", no time index errors, no exceptions
    for path in written:
        for log_file in sorted(path.glob("*.log")):
            offsets = [r.offset for b in parsed[str(log_file)].batches for r in b.records]
            expected = dump.expected_non_consecutive(offsets)
            assert pairs.get(str(log_file), []) == expected, log_file
            if not path.name.startswith("compacted"):
                # Only the tool's own start at -1: offsets run on from the file's base.
                assert expected in ([], [(-1, int(log_file.stem))])
                assert offsets[0] == int(log_file.stem)


def test_the_brokers_index_sanity_check_passes(
    kafka_tools: KafkaTools, written: dict[Path, list[dict[str, Any]]]
) -> None:
    indexes = [
        f
        for path in written
        for f in sorted(path.iterdir())
        if f.suffix in (".index", ".timeindex")
    ]
    code, out, err = kafka_tools(
        dump.DUMP_LOG_SEGMENTS, "--index-sanity-check", "--files", ",".join(map(str, indexes))
    )
    assert (code, err) == (0, "")
    expected = []
    for index in indexes:
        expected.append(f"Dumping {index}")
        empty = index.suffix == ".index" and index.stat().st_size == 0
        expected.append(f"{index} is empty." if empty else f"{index} passed sanity check.")
    assert out.splitlines() == expected
