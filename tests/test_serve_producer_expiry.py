"""``logstore serve``: idempotent producer state expires (Kafka's ``producer.id.expiration.ms``).

The producers module's clock is replaced by a fake one, so that days pass at
once. Checked: an expired producer is dropped from memory and from the next
snapshot (written by the periodic tick for the expiry alone), one not
expired is kept with its state; state rebuilt from the log does not bring
back a producer whose last batch's max timestamp is too old, but keeps one
appended after the snapshot it follows (its time is at least the
snapshot's); and, through the server, a retry after the expiry is appended
again as a new producer's batch, as documented.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import logstore
from logstore.server import producers
from logstore.server.producers import Producers, identities
from tests.helpers_serve import RawClient, idempotent_batch

pytest.importorskip("kio")

DAY_MS = 86_400_000
START_MS = int(time.time() * 1000)


class Clock:
    """The fake ``producers._now_ms``: ``now`` moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(producers, "_now_ms", fake)
    return fake


def _values(n: int, start: int) -> list[bytes]:
    return [b"r%d" % (start + i) for i in range(n)]


def _append(running: Producers, log: logstore.Log, batch: bytes) -> int | str:
    """What the produce path does with one batch: judged, then appended (or answered)."""
    [identity] = identities(batch) or []
    with running.partition("s", 0):
        verdict = running.check("s", 0, identity)
        if verdict is not None:
            return verdict
        offset = log.append_batches(batch).start
        running.appended("s", 0, identity, offset)
    return offset


def _snapshot_producers(root: Any) -> dict[int, list[Any]]:
    """Producer id -> ``[epoch, last_ms, batches]`` in the snapshot's entry of ``s``-0."""
    head, _, body = (root / "serve-producer-state").read_bytes().partition(b"\n")
    assert head.startswith(b"logstore-serve-producer-state 2 ")
    [entry] = json.loads(body)["partitions"]
    assert (entry["topic"], entry["partition"]) == ("s", 0)
    return {p[0]: p[1:] for p in entry["producers"]}


@pytest.fixture
def broker(tmp_path: Any) -> Iterator[logstore.Broker]:
    with logstore.Broker.open(tmp_path) as opened:
        opened.create_topic("s", 1)
        yield opened


def test_expired_producers_leave_memory_and_the_next_snapshot(tmp_path, clock, broker) -> None:
    log = broker.topic("s").partition(0)
    running = Producers.open(broker, tmp_path, snapshot_interval_s=0.05, expiration_ms=DAY_MS)
    try:
        old, young = running.new_id(), running.new_id()
        old_batch = idempotent_batch(old, 0, 0, _values(3, 0))
        assert _append(running, log, old_batch) == 0
        clock.now += DAY_MS // 2
        young_batch = idempotent_batch(young, 0, 0, _values(2, 0))
        assert _append(running, log, young_batch) == 3
        deadline = time.monotonic() + 10
        while not (tmp_path / "serve-producer-state").exists() or sorted(
            _snapshot_producers(tmp_path)
        ) != [old, young]:
            assert time.monotonic() < deadline, "no periodic snapshot"
            time.sleep(0.02)
        assert _snapshot_producers(tmp_path) == {
            old: [0, START_MS, [[0, 2, 0]]],
            young: [0, START_MS + DAY_MS // 2, [[0, 1, 3]]],
        }

        clock.now = START_MS + DAY_MS  # exactly a day after old's append: expired (Kafka's >=)
        deadline = time.monotonic() + 10
        while old in _snapshot_producers(tmp_path):  # rewritten for the expiry alone
            assert time.monotonic() < deadline, "the expiry never reached the snapshot"
            time.sleep(0.02)
        assert _snapshot_producers(tmp_path) == {young: [0, START_MS + DAY_MS // 2, [[0, 1, 3]]]}
        assert list(running._state[("s", 0)]) == [young]  # gone from memory too

        # The unexpired producer's retry is still recognised; its next batch continues.
        assert _append(running, log, young_batch) == 3
        gap = idempotent_batch(young, 0, 5, _values(1, 5))
        assert _append(running, log, gap) == "out_of_order_sequence_number"
        # The expired one's retry is a new producer's first batch: appended again.
        assert _append(running, log, old_batch) == 5
        assert _append(running, log, old_batch) == 5  # and from now on known again
        assert _append(running, log, idempotent_batch(old, 0, 9, _values(1, 9))) == (
            "out_of_order_sequence_number"
        )
        assert log.end_offset == 8
    finally:
        running.close()
    assert _snapshot_producers(tmp_path) == {
        young: [0, START_MS + DAY_MS // 2, [[0, 1, 3]]],
        old: [0, START_MS + DAY_MS, [[0, 2, 5]]],
    }
    assert [r.value for r in log.read(0)] == [*_values(3, 0), b"r0", b"r1", *_values(3, 0)]


def test_the_snapshot_read_at_open_drops_what_expired_meanwhile(tmp_path, clock, broker) -> None:
    log = broker.topic("s").partition(0)
    running = Producers.open(broker, tmp_path, expiration_ms=1000)
    first, second = running.new_id(), running.new_id()
    assert _append(running, log, idempotent_batch(first, 0, 0, _values(1, 0))) == 0
    clock.now += 600
    assert _append(running, log, idempotent_batch(second, 0, 0, _values(1, 0))) == 1
    running.close()
    assert sorted(_snapshot_producers(tmp_path)) == [first, second]

    clock.now += 500  # first: 1100 ms old, second: 500 ms
    restarted = Producers.open(broker, tmp_path, expiration_ms=1000)
    try:
        # Not loaded yet: the next snapshot carries the entry without the expired producer.
        restarted.write_snapshot()
        assert sorted(_snapshot_producers(tmp_path)) == [second]
        with restarted.partition("s", 0):
            assert list(restarted._state[("s", 0)]) == [second]
    finally:
        restarted.close()


def test_state_rebuilt_from_the_log_keeps_no_producer_older_than_the_expiry(
    tmp_path, clock, broker
) -> None:
    log = broker.topic("s").partition(0)
    first = Producers.open(broker, tmp_path, expiration_ms=DAY_MS)
    stale, fresh = first.new_id(), first.new_id()
    long_ago = START_MS - 2 * DAY_MS
    stale_batch = idempotent_batch(stale, 0, 0, _values(2, 0), timestamp_ms=long_ago)
    fresh_batch = idempotent_batch(fresh, 0, 0, _values(2, 0), timestamp_ms=START_MS - 1000)
    assert _append(first, log, stale_batch) == 0  # appended now, but timestamped 2 days ago
    assert _append(first, log, fresh_batch) == 2
    first._stop.set()  # no snapshot at all: as if killed before the first one
    first._thread.join()  # type: ignore[union-attr]
    assert not (tmp_path / "serve-producer-state").exists()

    scanned = Producers.open(broker, tmp_path, expiration_ms=DAY_MS)
    try:
        with scanned.partition("s", 0):
            # From the log alone a batch's time is its max timestamp (as in Kafka).
            assert list(scanned._state[("s", 0)]) == [fresh]
            assert scanned._state[("s", 0)][fresh].last_ms == START_MS - 1000 + 1
        assert _append(scanned, log, fresh_batch) == 2  # a duplicate, recognised
        assert _append(scanned, log, stale_batch) == 4  # forgotten: appended again
    finally:
        scanned.close()  # a snapshot as of now, offset 6


def test_batches_after_a_snapshot_are_at_least_as_young_as_it(tmp_path, clock, broker) -> None:
    log = broker.topic("s").partition(0)
    running = Producers.open(broker, tmp_path, expiration_ms=DAY_MS)
    other, pid = running.new_id(), running.new_id()
    assert _append(running, log, idempotent_batch(other, 0, 0, _values(2, 0))) == 0
    running.write_snapshot()  # taken at START_MS, as of offset 2
    assert _snapshot_producers(tmp_path) == {other: [0, START_MS, [[0, 1, 0]]]}
    long_ago = START_MS - 2 * DAY_MS
    batch = idempotent_batch(pid, 0, 0, _values(2, 0), timestamp_ms=long_ago)
    clock.now += 1000
    assert _append(running, log, batch) == 2
    running._stop.set()  # killed: the snapshot predates the batch
    running._thread.join()  # type: ignore[union-attr]

    clock.now = START_MS + DAY_MS - 1  # the snapshot is not a day old: neither is the batch
    restarted = Producers.open(broker, tmp_path, expiration_ms=DAY_MS)
    try:
        assert _append(restarted, log, batch) == 2  # recognised after the rebuild
        state = restarted._state[("s", 0)]
        assert {p: s.last_ms for p, s in state.items()} == {other: START_MS, pid: START_MS}
    finally:
        restarted._stop.set()
        restarted._thread.join()  # type: ignore[union-attr]

    clock.now = START_MS + DAY_MS  # a day after the snapshot: the batch is older still
    late = Producers.open(broker, tmp_path, expiration_ms=DAY_MS)
    try:
        with late.partition("s", 0):
            assert late._state[("s", 0)] == {}
        assert _append(late, log, batch) == 4
    finally:
        late.close()


def test_a_retry_after_the_expiry_is_appended_as_a_new_producers_batch(tmp_path, clock) -> None:
    with logstore.Broker.open(tmp_path) as broker:
        broker.create_topic("s", 1)
    with logstore.serve(tmp_path, listen="127.0.0.1:0", producer_id_expiration_ms=60_000) as server:
        assert server.address is not None
        with RawClient(f"{server.address[0]}:{server.address[1]}") as raw:
            pid, epoch = raw.init_producer_id()
            batch = idempotent_batch(pid, epoch, 0, _values(3, 0))
            assert raw.produce("s", 0, batch) == (0, 0)
            clock.now += 59_999
            assert raw.produce("s", 0, batch) == (0, 0)  # not expired: a duplicate
            clock.now += 60_000  # a minute after the last append (a duplicate is none)
            assert raw.produce("s", 0, batch) == (0, 3)  # forgotten: appended again
            assert raw.produce("s", 0, batch) == (0, 3)
            assert raw.end_offset("s", 0) == 6
    assert _snapshot_producers(tmp_path) == {pid: [epoch, START_MS + 119_999, [[0, 2, 3]]]}


def test_the_expiration_must_be_a_positive_int(tmp_path) -> None:
    from logstore.server.app import Server

    for bad in (0, -5, 1.5, "1000"):
        with pytest.raises(logstore.ConfigError, match="producer_id_expiration_ms"):
            Server(tmp_path, producer_id_expiration_ms=bad)  # type: ignore[arg-type]
    settings = tmp_path / "serve.toml"
    settings.write_text("producer_id_expiration_ms = 3600000\n")
    assert logstore.load_serve_settings(settings) == {"producer_id_expiration_ms": 3_600_000}
