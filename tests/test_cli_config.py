"""``logstore config``: a topic's settings shown, changed, reset, and refused in one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import logstore

from .helpers import run

METADATA = "logstore-topics.json"


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", 2, {"retention_ms": 5000})
        broker.produce("t", b"kept", partition=1)
    return root


def _expected(config: logstore.LogConfig, own: set[str]) -> str:
    def shown(v: object) -> str:
        return "none" if v is None else ("true" if v is True else "false" if v is False else str(v))

    return "".join(
        f"{f.name}={shown(getattr(config, f.name))}{'  (topic)' if f.name in own else ''}\n"
        for f in dataclasses.fields(logstore.LogConfig)
    )


def test_config_shows_changes_and_resets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = _root(tmp_path)
    code, out, err = run(capsys, "config", str(root), "t")
    assert (code, err) == (0, "")
    assert out == _expected(logstore.LogConfig(retention_ms=5000), {"retention_ms"})
    code, out, _ = run(
        capsys,
        "config",
        str(root),
        "t",
        "--set",
        "segment_messages=100",
        "--set",
        "cleanup_policy=compact,delete",
        "--set",
        "verify_crc_on_read=false",
        "--set",
        "min_cleanable_dirty_ratio=0.25",
        "--reset",
        "retention_ms",
    )
    changed = logstore.LogConfig(
        segment_messages=100,
        cleanup_policy="compact,delete",
        verify_crc_on_read=False,
        min_cleanable_dirty_ratio=0.25,
    )
    own = {"segment_messages", "cleanup_policy", "verify_crc_on_read", "min_cleanable_dirty_ratio"}
    assert (code, out) == (0, _expected(changed, own))
    code, out, _ = run(
        capsys, "config", str(root), "t", "--set", "segment_messages=none", "--dry-run"
    )
    assert (code, out) == (0, _expected(dataclasses.replace(changed, segment_messages=None), own))
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        assert broker.topic("t").partition(1).config == changed
        assert [r.value for r in broker.topic("t").partition(1).read(0)] == [b"kept"]
    assert json.loads((root / METADATA).read_text())["topics"]["t"]["config"] == {
        "segment_messages": 100,
        "cleanup_policy": "compact,delete",
        "verify_crc_on_read": False,
        "min_cleanable_dirty_ratio": 0.25,
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--set", "retention_hours=1"],
            2,
            "unknown setting 'retention_hours' (LogConfig fields: ",
        ),
        (["--set", "segment_bytes=big"], 2, "segment_bytes must be int, not 'big'"),
        (["--set", "segment_bytes=10"], 2, "segment_bytes must be an integer >= 64, got 10"),
        (["--set", "segment_bytes"], 2, "'segment_bytes' is not FIELD=VALUE"),
        (["--reset", "nope"], 2, "unknown LogConfig field(s): nope"),
    ],
)
def test_config_refusals_are_one_line_and_change_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    root = _root(tmp_path)
    before = (root / METADATA).read_bytes()
    got, out, err = run(capsys, "config", str(root), "t", *args)
    assert (got, out) == (code, "")
    assert err.startswith("logstore: ") and err.count("\n") == 1 and message in err
    assert (root / METADATA).read_bytes() == before


def test_config_of_an_unknown_topic_or_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = _root(tmp_path)
    assert run(capsys, "config", str(root), "missing") == (
        1,
        "",
        f"logstore: no topic 'missing' in {root}\n",
    )
    code, _, err = run(capsys, "config", str(tmp_path / "nowhere"), "t")
    assert code == 2 and "does not exist" in err and not (tmp_path / "nowhere").exists()
