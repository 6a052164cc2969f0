"""``_dirkind``: a log, a broker root or neither; nothing opens or writes into the wrong kind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import logstore
from logstore import diagnostics

from .conftest import file_hashes
from .helpers import run


# ---------------------------------------------------------------- directory kinds
def test_log_open_refuses_a_broker_root_and_a_file(tmp_path: Path) -> None:
    root = tmp_path / "broker"
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 2)
        broker.produce("t", b"x", partition=1)
    before = file_hashes(root)
    names = sorted(os.listdir(root))
    with pytest.raises(logstore.NotALogError) as info:
        logstore.Log.open(root)
    assert str(info.value) == (
        f"{root} is a broker root: it holds logstore-topics.json or topic-N partition "
        "directories; open it with Broker.open"
    )
    assert (info.value.path, info.value.kind) == (str(root), "broker")
    assert isinstance(info.value, ValueError)
    with pytest.raises(logstore.NotALogError):
        logstore.Log.recover(root)
    assert (file_hashes(root), sorted(os.listdir(root))) == (before, names)
    # without the metadata file, its topic-N partitions still say what it is
    (root / "logstore-topics.json").unlink()
    with pytest.raises(logstore.NotALogError, match="is a broker root"):
        logstore.Log.open(root)
    assert sorted(os.listdir(root)) == sorted(n for n in names if n != "logstore-topics.json")
    afile = tmp_path / "afile"
    afile.write_bytes(b"data")
    with pytest.raises(logstore.NotALogError) as info:
        logstore.Log.open(afile)
    assert str(info.value) == f"{afile} is a file, not a log directory or broker root"
    with pytest.raises(logstore.NotALogError) as info:
        logstore.Broker.open(afile)
    assert afile.read_bytes() == b"data"


def test_broker_open_refuses_a_partition_directory(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    with logstore.Log.open(directory, logstore.LogConfig(fsync="never")) as log:
        log.append(b"x")
    before = file_hashes(directory)
    with pytest.raises(logstore.NotALogError) as info:
        logstore.Broker.open(directory, maintenance_interval_ms=None)
    assert str(info.value) == (
        f"{directory} is a log (partition) directory: it holds segment or checkpoint files; "
        "open it with Log.open"
    )
    assert file_hashes(directory) == before  # no logstore-topics.json, no topic dirs created
    assert not any(p.is_dir() for p in directory.iterdir())


def test_opening_new_or_empty_directories_still_creates_them(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    with logstore.Log.open(tmp_path / "e", logstore.LogConfig(fsync="never")) as log:
        assert log.end_offset == 0
    with logstore.Broker.open(tmp_path / "b", maintenance_interval_ms=None) as broker:
        assert broker.topics() == []
    assert diagnostics.kind_of(str(tmp_path / "e")) == "log"
    assert diagnostics.kind_of(str(tmp_path / "b")) == "broker"
    assert diagnostics.kind_of(str(tmp_path)) == "foreign"
    # a topic whose name looks like a segment file's is still a topic, not a segment
    with logstore.Broker.open(tmp_path / "odd", maintenance_interval_ms=None) as broker:
        broker.create_topic("00000000000000000001.log", 1)
    (tmp_path / "odd" / "logstore-topics.json").unlink()
    assert diagnostics.kind_of(str(tmp_path / "odd")) == "broker"
    with logstore.Broker.open(tmp_path / "odd", maintenance_interval_ms=None) as broker:
        assert broker.topics() == ["00000000000000000001.log"]


def test_commands_never_write_into_a_directory_of_other_things(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """consume, produce, Log.open and Broker.open refuse /etc-like directories, untouched."""
    other = tmp_path / "etc"
    (other / "dbus-1" / "system.d").mkdir(parents=True)
    (other / "polkit-1").mkdir()
    (other / "hosts").write_text("127.0.0.1 localhost\n")
    before = sorted(p.relative_to(other).as_posix() for p in other.rglob("*"))
    described = (
        f"{other} is not a log directory or broker root (no segment files, no "
        "logstore-topics.json, no topic-N partition directories)"
    )
    code, out, err = run(capsys, "consume", str(other), "web")
    assert (code, out, err) == (2, "", f"logstore: {described}\n")
    with pytest.raises(logstore.NotALogError, match="refusing to create one among other files"):
        logstore.Log.open(other)
    with pytest.raises(logstore.NotALogError, match="refusing to create one among other files"):
        logstore.Broker.open(other)
    assert sorted(p.relative_to(other).as_posix() for p in other.rglob("*")) == before


def test_a_broker_adopts_only_directories_that_hold_logs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("web", 1)
        broker.produce("web", b"x")
    (root / "notes-12").mkdir()  # empty, not a partition of anything
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        assert broker.topics() == ["web"]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("notes")) == ["notes-12"]
