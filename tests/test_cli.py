"""The ``logstore`` command line as a whole (``cli/__init__``, ``cli/common``): one-line
errors, exit statuses, ``--debug``, ``--version``, ``python -m logstore``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore

from .conftest import file_hashes
from .helpers import SEGMENT_0, _run, _unclean, run
from .helpers_broker import _broker


def test_inspect_version_names_the_codec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "--version")
    assert code == 0
    assert out.strip() == f"logstore {logstore.__version__} (codec: {logstore.__speedups__})"


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "inspect", str(tmp_path / "missing"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("logstore: ")
    code, _, err = run(capsys, "inspect", str(tmp_path))
    assert code == 2
    assert (
        err == f"logstore: {tmp_path} is an empty directory, not a log directory or broker root\n"
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from(
                [
                    b"",
                    bytes(12),
                    b"\x00" * 8 + b"\x7f\xff\xff\xff" + b"\x00" * 4 + b"\x02",  # claims 2 GiB
                    bytes.fromhex("0000000000000000000000500000000002"),
                ]
            ),
            st.binary(max_size=200),
        ),
    )
)
def test_any_bytes_give_exit_0_or_1_and_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: bytes
) -> None:
    directory = tmp_path / "fuzz-0"
    directory.mkdir(exist_ok=True)
    (directory / SEGMENT_0).write_bytes(data)
    for command in (["inspect"], ["inspect", "--records"], ["verify"], ["inspect", "--json"]):
        code, _, err = run(capsys, *command, str(directory))
        assert code in (0, 1)
        assert "Traceback" not in err
        assert err.count("\n") <= 1


def test_python_dash_m_works(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "logstore", "verify", str(root)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok: 31 batches, 32 records verified")


@pytest.mark.parametrize("command", ["verify", "inspect", "recover"])
def test_a_path_that_is_not_a_log_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    foreign = tmp_path / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "missing"): f"{tmp_path / 'missing'}: no such file or directory",
        str(tmp_path / "empty"): f"{tmp_path / 'empty'} is an empty directory, "
        "not a log directory or broker root",
        str(foreign): f"{foreign} is not a log directory or broker root (no segment files, "
        "no logstore-topics.json, no topic-N partition directories)",
    }
    if os.path.isdir("/etc"):
        cases["/etc"] = (
            "/etc is not a log directory or broker root (no segment files, "
            "no logstore-topics.json, no topic-N partition directories)"
        )
    before = file_hashes(tmp_path)
    for path, line in cases.items():
        assert run(capsys, command, path) == (2, "", f"logstore: {line}\n")
    assert file_hashes(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["empty", "foreign"]
    assert os.listdir(tmp_path / "empty") == []


def test_cli_errors_are_one_line_and_debug_adds_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _broker(root).close()
    code, out, err = _run(capsys, "consume", str(root), "nope")
    assert (code, out) == (1, "")
    assert err == f"logstore: no topic 'nope' in {root}\n"
    code, out, err = _run(capsys, "--debug", "consume", str(root), "nope")
    assert (code, out) == (1, "")
    assert err.startswith("Traceback (most recent call last):\n")
    assert "logstore.errors.UnknownTopicError: no topic 'nope'" in err
    assert err.endswith(f"\nlogstore: no topic 'nope' in {root}\n")


def test_cli_shows_a_logged_warning_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    with _broker(root) as broker:
        broker.create_topic("t", 1)
        broker.produce_many("t", [b"a", b"b"])
    part = root / "t-0"
    _unclean(part)
    with open(part / SEGMENT_0, "ab") as f:
        f.write(bytes(4096))
    code, out, err = _run(capsys, "consume", str(root), "t")
    assert (code, out) == (0, "a\nb\n")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"logstore: warning: {part / SEGMENT_0} at byte ")
    assert "Traceback" not in err
    # The handler is gone once the command is done: nothing left behind in the process.
    assert not [
        h for h in logging.getLogger("logstore").handlers if not isinstance(h, logging.NullHandler)
    ]


def test_cli_debug_shows_info_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    with _broker(root) as broker:
        broker.create_topic("t", 1)
        broker.produce_many("t", [b"a"])
    index = root / "t-0" / f"{0:020d}.index"
    index.unlink()
    code, out, err = _run(capsys, "--debug", "consume", str(root), "t")
    assert (code, out) == (0, "a\n")
    assert f"logstore: info: {index}: indexes rebuilt (index file missing)\n" in err
    index.unlink()
    code, out, err = _run(capsys, "consume", str(root), "t")
    assert (code, out, err) == (0, "a\n", "")  # INFO is not shown without --debug
