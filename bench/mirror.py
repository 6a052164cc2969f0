"""``logstore.mirror`` throughput into a local Apache Kafka broker.

200,000 records (100-byte values, 200 hostname keys) over 8 partitions in a
broker root, mirrored to a single-node KRaft broker on loopback that this
section starts with the test suite's harness (``tests/kafka/harness.py``: the
jars cached once by Maven, a small heap). Each round mirrors a topic of its
own (identical records), so every round copies everything: topic creation,
the idempotent ``acks=all`` producer, waiting for every acknowledgement and
the final commit are all inside the time. Records/s and MB/s (keys, values and
headers, sent as they are in the source) are of the best round; the first
round also warms the JVM.

Skipped, with the reason, when java, mvn (or the jar cache) or confluent-kafka
is missing. Run by ``bench/run.py`` (``make bench``); also runnable alone::

    .venv/bin/python bench/mirror.py [RECORDS]
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import logstore

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 8
ROUNDS = 3
TITLE = "## Mirror to a local Kafka broker"


def _harness() -> ModuleType:
    """The test suite's Kafka harness (it knows nothing of pytest)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.kafka import harness

    return harness


def _source(root: Path, records: int) -> None:
    rng = random.Random(12)
    hosts = [f"web-{i:03d}.example.com".encode() for i in range(200)]
    messages = [logstore.Message(rng.randbytes(100), key=rng.choice(hosts)) for _ in range(records)]
    with logstore.Broker.open(root, logstore.LogConfig(fsync="never")) as broker:
        for r in range(ROUNDS):
            broker.create_topic(f"mirror-{r}", PARTITIONS)
            for start in range(0, records, 1000):
                broker.produce_many(f"mirror-{r}", messages[start : start + 1000])


def run(records: int = 200_000) -> list[str]:
    harness = _harness()
    try:
        harness.find_java()
        lib = harness.ensure_jars()
        logstore.mirror.import_client()
    except (harness.KafkaUnavailable, logstore.MirrorError) as exc:
        return [TITLE, "", f"Skipped: {exc}.", ""]
    work = Path(tempfile.mkdtemp(prefix="logstore-mirror-bench-"))
    broker = harness.KafkaBroker(harness.KafkaTools(lib, work), work / "kafka")
    try:
        root = work / "root"
        _source(root, records)
        broker.start()
        rounds = []
        for r in range(ROUNDS):
            started = time.perf_counter()
            summary = logstore.mirror.mirror(root, broker.bootstrap, topics=[f"mirror-{r}"])
            seconds = time.perf_counter() - started
            assert (summary.records, summary.lag) == (records, 0), summary
            rounds.append((seconds, summary.bytes))
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    seconds, payload = min(rounds)
    times = ", ".join(f"{s:.2f}" for s, _ in rounds)
    return [
        TITLE,
        "",
        f"{records:,} records (100-byte values, 200 hostname keys, {payload / records:.0f}"
        f" bytes of key and value each) over {PARTITIONS} partitions, `logstore.mirror.mirror`"
        " into a single-node KRaft broker on loopback (acks=all, idempotent producer); best"
        f" of {ROUNDS} rounds, each a topic of its own ({times} s).",
        "",
        "| records/s | MB/s | seconds |",
        "|---:|---:|---:|",
        f"| {records / seconds:,.0f} | {payload / seconds / 1e6:.1f} | {seconds:.2f} |",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))
