"""Shared fixtures: a log directory, a log factory that closes what it opens, a fake clock."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import logstore

# Fixtures shared by several test modules, from the helper modules that define them.
pytest_plugins = ["tests.helpers_damage", "tests.helpers_verify"]

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DATA = Path(__file__).parent / "data"
VECTORS = DATA / "kafka-python"
REPO = Path(__file__).resolve().parent.parent


def file_hashes(directory: Path) -> dict[str, str]:
    """SHA-256 of every file below ``directory``, by path relative to it: "nothing changed"."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``logstore ARGS`` in-process: ``(exit status, stdout, stderr)``."""
    from logstore import cli

    try:
        cli.main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child interpreter that imports this checkout's ``logstore``."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("LOGSTORE_CRASH_AT", None)
    env.update(extra)
    return env


def run_python(
    code: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (``child_env`` unless given) and wait for it."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=child_env() if env is None else env,
        check=False,
    )


class FakeClock:
    """Milliseconds that move only when a test says so."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


OpenLog = Callable[..., logstore.Log]


@pytest.fixture
def open_log(log_dir: Path, clock: FakeClock) -> Iterator[OpenLog]:
    """Open a log (default: ``log_dir``, the fake clock, fsync never); closed at teardown."""
    opened: list[logstore.Log] = []

    def factory(
        path: Path | None = None, config: logstore.LogConfig | None = None, **fields: object
    ) -> logstore.Log:
        if config is None:
            fields.setdefault("fsync", "never")
            config = logstore.LogConfig(**fields)  # type: ignore[arg-type]
        log = logstore.Log.open(path or log_dir, config, clock=clock)
        opened.append(log)
        return log

    yield factory
    for log in opened:
        log.close()


def settle(log: logstore.Log, timeout: float = 30) -> None:
    """Wait until the housekeeping the log's rolls made due has run on its maintenance thread."""
    assert log._housekeeping.maintenance.wait_idle(timeout)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    config = logstore.LogConfig(
        fsync="never", segment_bytes=2000, compression="gzip", index_interval_bytes=10
    )
    with logstore.Log.open(tmp_path / "root" / "web-0", config) as log:
        for i in range(30):
            log.append(
                b"GET /%d" % i,
                key=b"host-%d" % (i % 3),
                timestamp=1000 + i,
                headers=(("bin", b"\x00\xff"),) if i == 0 else (),
            )
    with logstore.Log.open(tmp_path / "root" / "web-1", logstore.LogConfig(fsync="never")) as log:
        log.append_many([b"a", b"b"])
    return tmp_path / "root"
