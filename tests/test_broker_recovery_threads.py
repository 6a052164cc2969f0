"""``Broker.open(recovery_threads=N)``: how many partitions are opened at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import logstore
from logstore import ConfigError, LogConfig
from logstore.broker import Broker
from logstore.recoverypool import DEFAULT_RECOVERY_THREADS

CONFIG = LogConfig(fsync="never")


class _OpenSpy:
    """Wraps ``Broker._open_log``: which thread opened what, and how many at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, barrier: threading.Barrier | None) -> None:
        self.order: list[tuple[str, int]] = []
        self.threads: set[int] = set()
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._barrier = barrier
        real = Broker._open_log

        def spy(broker: Broker, topic: str, partition: int, config: LogConfig) -> logstore.Log:
            with self._lock:
                self.order.append((topic, partition))
                self.threads.add(threading.get_ident())
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                if self._barrier is not None and topic == "t":
                    self._barrier.wait(timeout=30)  # a deadlock guard, not a timing
                return real(broker, topic, partition, config)
            finally:
                with self._lock:
                    self.in_flight -= 1

        monkeypatch.setattr(Broker, "_open_log", spy)


def _root_with(tmp_path: Path, partitions: int) -> Path:
    root = tmp_path / "root"
    with Broker.open(root, CONFIG, maintenance_interval_ms=None) as broker:
        broker.create_topic("t", partitions)
        for p in range(partitions):
            broker.produce("t", b"v%d" % p, partition=p)
    return root


def test_one_recovery_thread_opens_the_partitions_one_after_another_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _root_with(tmp_path, 6)
    spy = _OpenSpy(monkeypatch, None)
    with Broker.open(root, CONFIG, maintenance_interval_ms=None, recovery_threads=1) as broker:
        assert [broker.topic("t").partition(p).end_offset for p in range(6)] == [1] * 6
    assert spy.most_in_flight == 1
    assert len(spy.threads) == 1
    assert threading.get_ident() not in spy.threads  # the pool's one worker
    assert [tp for tp in spy.order if tp[0] == "t"] == [("t", p) for p in range(6)]
    assert len(spy.order) == 7  # and __consumer_offsets-0


def test_n_recovery_threads_open_n_partitions_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _root_with(tmp_path, 6)
    # Each group of 3 opens of t waits for the other two: passes only if 3 run at once.
    spy = _OpenSpy(monkeypatch, threading.Barrier(3))
    with Broker.open(root, CONFIG, maintenance_interval_ms=None, recovery_threads=3):
        pass
    assert spy.most_in_flight == 3
    assert len(spy.threads) == 3


def test_the_default_is_eight_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT_RECOVERY_THREADS == 8
    root = _root_with(tmp_path, 16)
    spy = _OpenSpy(monkeypatch, threading.Barrier(8))
    with Broker.open(root, CONFIG, maintenance_interval_ms=None):
        pass
    assert spy.most_in_flight == 8
    assert len(spy.threads) == 8


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "4", None])
def test_a_bad_recovery_threads_is_refused_before_anything_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: object
) -> None:
    root = tmp_path / "root"
    spy = _OpenSpy(monkeypatch, None)
    with pytest.raises(ConfigError) as caught:
        Broker.open(root, CONFIG, recovery_threads=value)  # type: ignore[arg-type]
    assert str(caught.value) == f"recovery_threads must be an integer >= 1, got {value!r}"
    assert spy.order == []
    assert not root.exists()


def test_serve_and_its_settings_file_take_recovery_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("kio")
    path = tmp_path / "serve.toml"
    path.write_text("recovery_threads = 1\n")
    options = logstore.load_serve_settings(path)
    assert options["recovery_threads"] == 1
    root = _root_with(tmp_path, 4)
    spy = _OpenSpy(monkeypatch, None)
    with logstore.serve(root, listen="127.0.0.1:0", **options):
        pass
    assert (spy.most_in_flight, len(spy.threads)) == (1, 1)
    assert [tp for tp in spy.order if tp[0] == "t"] == [("t", p) for p in range(4)]
    with pytest.raises(ConfigError, match=r"^recovery_threads must be an integer >= 1, got 0$"):
        logstore.serve(root, listen="127.0.0.1:0", recovery_threads=0)
