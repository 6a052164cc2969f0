"""logstore reads the partitions a Kafka broker wrote, and Kafka reads what logstore appended.

A real client (confluent-kafka) produces to the real broker with each
compression codec, with an idempotent producer, with a transactional one
(transactions committed and aborted, a plain producer between them), and
into a compacted topic until Kafka's cleaner has run. With the broker
stopped, logstore opens each partition directory in place: its records are
what the client sent (for transactions: what Kafka's ``read_committed``
consumer delivers, and with ``isolation="read_uncommitted"`` the aborted
records too; control batches never), ``logstore verify`` is clean, and
appends continue at Kafka's log end offset. The broker then starts over the
same directories (logstore's own files left in them) and a consumer reads
what logstore appended.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import logstore
from logstore import Message

from ..conftest import REPO, child_env
from . import clients, scenarios
from .harness import KafkaBroker

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
COMPACTED_KEYS = [f"host-{i:02d}".encode() for i in range(20)]


@dataclass
class Written:
    """What the client sent to one topic and what a reader must get back."""

    #: Records a read_committed reader gets, as the broker acknowledged them.
    committed: list[clients.Got] = field(default_factory=list)
    #: Every data record sent (aborted transactions' too).
    everything: list[clients.Got] = field(default_factory=list)
    #: The log end offset (ListOffsets latest) before the broker stopped.
    end_offset: int = 0


def send(bootstrap: str, topic: str, messages: list[Message], **settings: Any) -> list[clients.Got]:
    sent = [(m.key, m.value, m.headers, m.timestamp) for m in messages]
    offsets = clients.produce(bootstrap, topic, sent, **settings)
    return [
        clients.Got(o, m.timestamp, m.key, m.value, tuple(m.headers))
        for o, m in zip(offsets, messages)
    ]


def transactions(bootstrap: str, topic: str, rng: random.Random) -> tuple[list, list]:
    """Six transactions, every other one aborted; plain records between; (committed, all)."""
    producer = clients.transactional_producer(bootstrap, f"{topic}-txn")
    committed: list[clients.Got] = []
    everything: list[clients.Got] = []
    start = 0
    for n in range(6):
        batch = scenarios.messages(rng, start, rng.randrange(3, 40))
        start += len(batch)
        acked: dict[int, int] = {}
        producer.begin_transaction()
        for i, m in enumerate(batch):
            producer.produce(
                topic,
                key=m.key,
                value=m.value,
                headers=list(m.headers) or None,
                timestamp=m.timestamp,
                partition=0,
                on_delivery=lambda err, msg, i=i, acked=acked: acked.__setitem__(i, msg.offset()),
            )
        producer.flush(60)
        got = [
            clients.Got(acked[i], m.timestamp, m.key, m.value, tuple(m.headers))
            for i, m in enumerate(batch)
        ]
        everything += got
        if n % 2:
            producer.abort_transaction(60)
        else:
            producer.commit_transaction(60)
            committed += got
        between = scenarios.messages(rng, start, 3)
        start += 3
        plain = send(bootstrap, topic, between)
        committed += plain
        everything += plain
    return committed, everything


def compacted(bootstrap: str, topic: str, rng: random.Random) -> list[clients.Got]:
    """Keyed updates over many segments, until Kafka's cleaner has compacted them."""
    sent: list[clients.Got] = []
    now = int(time.time() * 1000) - 600_000
    for chunk in range(6):
        messages = scenarios.messages(rng, 50 * chunk, 50, keys=COMPACTED_KEYS)
        messages = [
            m._replace(timestamp=now + 1000 * len(sent) + i) for i, m in enumerate(messages)
        ]
        sent += send(bootstrap, topic, messages)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(clients.consume(bootstrap, topic)) < len(sent) // 3:
            return sent
        time.sleep(0.5)  # the cleaner's thread: nothing to wait on but its effect
    raise AssertionError(f"Kafka's cleaner did not compact {topic}")


@pytest.fixture(scope="module")
def written(kafka_broker: KafkaBroker) -> Iterator[dict[str, Written]]:
    """Every topic produced to and its expectation; the broker stopped meanwhile."""
    bootstrap = kafka_broker.bootstrap
    rng = random.Random("we-read-kafka")
    out: dict[str, Written] = {}
    for codec in CODECS:
        topic = f"theirs-{codec}"
        clients.create_topic(bootstrap, topic)
        sent = send(
            bootstrap,
            topic,
            scenarios.messages(rng, 0, 300),
            **{"compression.type": codec, "enable.idempotence": False},
        )
        out[topic] = Written(sent, sent)
    clients.create_topic(bootstrap, "theirs-idempotent")
    sent = send(
        bootstrap,
        "theirs-idempotent",
        scenarios.messages(rng, 0, 200),
        **{"enable.idempotence": True},
    )
    out["theirs-idempotent"] = Written(sent, sent)
    clients.create_topic(bootstrap, "theirs-txn")
    out["theirs-txn"] = Written(*transactions(bootstrap, "theirs-txn", rng))
    assert len(out["theirs-txn"].committed) < len(out["theirs-txn"].everything)  # some aborted
    clients.alter_config(bootstrap, "broker", "1", {"log.cleaner.backoff.ms": "200"})
    settings = {
        "cleanup.policy": "compact",
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01",
    }
    clients.create_topic(bootstrap, "theirs-compacted", config=settings)
    sent = compacted(bootstrap, "theirs-compacted", rng)
    out["theirs-compacted"] = Written([], sent)
    for topic, w in out.items():
        w.end_offset = clients.watermarks(bootstrap, topic)[1]
    kafka_broker.stop()
    try:
        yield out
    finally:
        if kafka_broker.process is None:
            kafka_broker.start()


def records(log: logstore.Log, **kw: Any) -> list[clients.Got]:
    return [
        clients.Got(r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
        for r in log.read(log.start_offset, max_records=1 << 30, **kw)
    ]


def latest_values(got: list[clients.Got]) -> dict[bytes | None, bytes | None]:
    return {r.key: r.value for r in got}


def verify(path: Any) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "logstore", "verify", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(),
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_logstore_reads_kafka_and_kafka_reads_our_appends(
    written: dict[str, Written], kafka_broker: KafkaBroker
) -> None:
    appended: dict[str, list[clients.Got]] = {}
    for topic, w in written.items():
        path = kafka_broker.log_dir / f"{topic}-0"
        code, said = verify(path)
        assert code == 0, said
        with logstore.Log.open(path, maintenance_interval_ms=None) as log:
            assert log.end_offset == w.end_offset, topic
            if topic == "theirs-compacted":
                got = records(log)
                sent = {r.offset: r for r in w.everything}
                assert all(sent[r.offset] == r for r in got)
                assert len(got) < len(w.everything) // 3  # Kafka's cleaner ran
                # Each key's last value is the last sent (a tombstone may be gone).
                want, have = latest_values(w.everything), latest_values(got)
                assert set(have) <= set(want)
                assert {k: have.get(k) for k in want} == want
            else:
                assert records(log) == w.committed, topic
                assert list(r.offset for r in log.scan()) == [r.offset for r in w.committed]
                assert records(log, isolation="read_uncommitted") == w.everything, topic
            mine = scenarios.messages(random.Random(topic), 0, 5, keys=COMPACTED_KEYS)
            offsets = log.append_many(mine)
            assert offsets == range(w.end_offset, w.end_offset + 5)
            appended[topic] = [
                clients.Got(o, m.timestamp, m.key, m.value, tuple(m.headers))
                for o, m in zip(offsets, mine)
            ]
        code, said = verify(path)
        assert code == 0, said

    before = len(kafka_broker.log())
    kafka_broker.start()
    for topic, w in written.items():
        assert clients.watermarks(kafka_broker.bootstrap, topic)[1] == w.end_offset + 5, topic
        tail = clients.consume(kafka_broker.bootstrap, topic, start=w.end_offset)
        assert tail == appended[topic], topic
        if topic != "theirs-compacted":
            assert clients.consume(kafka_broker.bootstrap, topic) == w.committed + appended[topic]
    logged = kafka_broker.log()[before:].splitlines()
    about = [line for line in logged if "theirs-" in line or "stray" in line.lower()]
    assert about == [], "\n".join(about)
