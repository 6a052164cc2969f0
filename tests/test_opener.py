"""``opener``: the options ``Log.open`` and ``Broker.open`` check before the disk."""

from __future__ import annotations

from pathlib import Path

import pytest

import logstore
from logstore import ConfigError


def test_open_rejects_a_config_of_the_wrong_type(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="LogConfig"):
        logstore.Log.open(tmp_path, {"fsync": "never"})  # type: ignore[arg-type]


def test_max_open_files_below_one_is_a_config_error_before_the_disk(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_open_files must be an integer >= 1, got 0"):
        logstore.Broker.open(tmp_path / "root", max_open_files=0)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("maintenance_interval_ms", -1, "maintenance_interval_ms must be an integer >= 0"),
        ("maintenance_interval_ms", 1.5, "maintenance_interval_ms must be an integer >= 0"),
        ("max_open_files", 0, "max_open_files must be an integer >= 1, got 0"),
        ("max_open_files", True, "max_open_files must be an integer >= 1, got True"),
    ],
)
def test_open_options_are_checked(log_dir: Path, option: str, value: object, message: str) -> None:
    with pytest.raises(logstore.ConfigError, match=message.replace(".", r"\.")):
        logstore.Log.open(log_dir, **{option: value})  # type: ignore[arg-type]
    assert not log_dir.exists() or not (log_dir / ".lock").exists()
