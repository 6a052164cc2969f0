"""``logstore serve`` next to the real Apache Kafka broker, with the same client load.

Both servers run in this one benchmark, side by side: ``logstore serve ROOT
--listen 127.0.0.1:0`` as a subprocess, and the single-node KRaft broker of
the test suite's harness (``tests/kafka/harness.py``: jars cached by Maven,
its settings: 2 network and 2 I/O threads, a 512 MiB heap), started once.
logstore's topics are made in the root before it is served, half with
``fsync="never"`` (as Kafka, which does not fsync by default) and half with
``fsync="always"`` (every produce request fsynced before ``acks=all`` is
answered); Kafka's through its AdminClient. Every topic has ``PARTITIONS``
partitions.

The client is librdkafka (confluent-kafka), each run in a process of its own
(this script with ``--child``), so its CPU is its own and not the servers':

- **produce**: ``RECORDS`` records of 100 bytes and ``KIB_RECORDS`` of 1 KiB,
  ``acks=all``, compression none and zstd, librdkafka's other defaults
  (``linger.ms`` 5, batches up to 1 MB); each value is sliced in the timed
  loop out of a pool of word-like text (zstd makes it about 3x smaller), no
  key. Timed from the first ``produce()`` to the end of ``flush()``;
- **consume**: a consumer assigned every partition from the beginning reads
  exactly the records produced (an error message or a wrong count fails the
  run), and again from the beginning, ``CONSUME_PASSES`` times in all (4 for
  100-byte records, 12 for 1 KiB: each phase lasts 2 s or more, so it
  measures the server rather than a noisy moment); timed from the first
  ``assign`` to the last record of the last pass. ``queued.min.messages`` is
  raised and ``fetch.queue.backoff.ms`` cut (librdkafka otherwise pauses a
  partition's fetches for a second once 100,000 records wait in its queue,
  which measured the pause), ``fetch.wait.max.ms`` is 100;
- **latency**: 100-byte records at a fixed ``LATENCY_RATE`` records/s for
  ``LATENCY_SECONDS``, ``acks=all``; each record's latency from its
  ``produce()`` to its delivery callback; p50 and p99.

MB are 10^6 bytes of values. Server CPU is the server process's user plus
system time (``/proc/PID/stat``, every thread) over each phase, per MB moved.
A warm-up round (``WARMUP_RECORDS`` records produced and consumed on each
server) comes first: Kafka's JIT and logstore's caches are warm for the timed
phases. Targets take turns within each load, in a rotating order, so a noisy
moment on a shared machine does not always fall on the same one; each phase
is the best of ``ROUNDS`` rounds (each on topics of its own), with the lowest
server CPU of them. About three and a half minutes on a 2-core machine.

Run by ``bench/run.py`` (``make bench``); also alone::

    .venv/bin/python bench/serve.py                  # the sizes above, Kafka too
    .venv/bin/python bench/serve.py --quick          # a smoke run, tiny sizes
    .venv/bin/python bench/serve.py --no-kafka --records 20000 --kib-records 2000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TITLE = "## logstore serve and Apache Kafka, same librdkafka load"
PARTITIONS = 4
RECORDS = 1_000_000
KIB_RECORDS = 100_000
LATENCY_RATE = 5000
LATENCY_SECONDS = 4.0
WARMUP_RECORDS = 200_000
#: How many times a consume phase reads its topic from the beginning, by value size.
CONSUME_PASSES = {100: 4, 1024: 12}
ROUNDS = 3
POOL_BYTES = 1 << 20
CHILD_TIMEOUT_S = 300
KAFKA = "kafka"
POLICIES = ("never", "always")
COMPRESSIONS = ("none", "zstd")


@dataclass(frozen=True)
class Load:
    """One produce-and-consume load: how many records of which size, which codec."""

    records: int
    value_bytes: int
    compression: str

    @property
    def name(self) -> str:
        size = "100 B" if self.value_bytes == 100 else f"{self.value_bytes // 1024} KiB"
        return f"{self.records:,} x {size}, {self.compression}"

    @property
    def topic(self) -> str:
        return f"load-{self.value_bytes}-{self.compression}"

    @property
    def megabytes(self) -> float:
        return self.records * self.value_bytes / 1e6

    @property
    def passes(self) -> int:
        """How many times the consume phase reads the topic."""
        return CONSUME_PASSES.get(self.value_bytes, 1)


# --------------------------------------------------------------------------- child side


def _pool(seed: int = 7) -> bytes:
    """Word-like text, so that zstd has something to do (about 3x) and values differ."""
    rng = random.Random(seed)
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    out = bytearray()
    while len(out) < POOL_BYTES + 2048:
        out += rng.choice(words) + b" "
    return bytes(out)


def _producer_config(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "bootstrap.servers": task["bootstrap"],
        "acks": "all",
        "compression.type": task.get("compression", "none"),
        "queue.buffering.max.messages": 1_000_000,
        "delivery.report.only.error": task["role"] == "produce",
    }


def child_produce(task: dict[str, Any]) -> dict[str, Any]:
    """Produce ``records`` values of ``value_bytes``; time to the end of ``flush``."""
    import confluent_kafka as ck

    records, size, topic = task["records"], task["value_bytes"], task["topic"]
    pool = _pool()
    errors: list[str] = []

    def on_error(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = ck.Producer({**_producer_config(task), "on_delivery": on_error})
    producer.list_topics(topic, timeout=30)  # connected, metadata known: not in the time
    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    for i in range(records):
        j = (i * 7919) % POOL_BYTES
        value = pool[j : j + size]
        try:
            produce(topic, value)
        except BufferError:
            poll(0.01)
            produce(topic, value)
    left = producer.flush(120)
    seconds = time.perf_counter() - started
    if left or errors:
        raise RuntimeError(f"{left} records undelivered, errors: {errors[:3]}")
    return {"seconds": seconds}


def child_consume(task: dict[str, Any]) -> dict[str, Any]:
    """Read every partition from the beginning until exactly ``records`` came, ``passes`` times."""
    import confluent_kafka as ck

    records, topic = task["records"], task["topic"]
    consumer = ck.Consumer(
        {
            "bootstrap.servers": task["bootstrap"],
            "group.id": f"bench-{topic}-{os.getpid()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # A fetch of partitions with nothing yet waits this long: less jitter on small runs.
            "fetch.wait.max.ms": 100,
            # librdkafka pauses a partition's fetches for fetch.queue.backoff.ms (1 s) once
            # its queue holds queued.min.messages (100,000): with 100-byte records that
            # measured the pause, not the server. The queue may hold a whole partition.
            "queued.min.messages": 1_000_000,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.list_topics(topic, timeout=30)
    deadline = time.monotonic() + CHILD_TIMEOUT_S / 2
    started = time.perf_counter()
    for n in range(task.get("passes", 1)):
        if n:
            consumer.unassign()  # the topic holds exactly ``records``: nothing is left queued
        consumer.assign(
            [ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(task["partitions"])]
        )
        count = 0
        last = b""
        while count < records and time.monotonic() < deadline:
            # consume() waits until it has all it asked for: never ask past the end.
            messages = consumer.consume(min(records - count, 10_000), timeout=1.0)
            for m in messages:
                if m.error() is not None:
                    raise RuntimeError(f"consume {topic}: {m.error()}")
            if messages:
                count += len(messages)
                last = messages[-1].value()
        if count != records or len(last) != task["value_bytes"]:
            raise RuntimeError(
                f"consume {topic} pass {n + 1}: {count} records of {records} ({len(last)} bytes)"
            )
    seconds = time.perf_counter() - started
    consumer.close()
    return {"seconds": seconds}


def child_latency(task: dict[str, Any]) -> dict[str, Any]:
    """Records at a fixed rate; each one's time from ``produce()`` to its delivery callback."""
    import confluent_kafka as ck

    topic, rate, count, size = task["topic"], task["rate"], task["records"], task["value_bytes"]
    pool = _pool()
    latencies: list[float] = []
    errors: list[str] = []

    def delivered(err: Any, msg: Any, sent: float) -> None:
        if err is not None:
            errors.append(str(err))
        latencies.append(time.perf_counter() - sent)

    producer = ck.Producer(_producer_config(task))
    producer.list_topics(topic, timeout=30)
    for i in range(200):  # connections up, first batches through: not measured
        producer.produce(topic, pool[i : i + size])
    producer.flush(30)
    interval = 1.0 / rate
    started = next_at = time.perf_counter()
    for i in range(count):
        while (now := time.perf_counter()) < next_at:
            producer.poll(next_at - now)
        j = (i * 7919) % POOL_BYTES
        sent = time.perf_counter()
        producer.produce(
            topic, pool[j : j + size], on_delivery=lambda e, m, s=sent: delivered(e, m, s)
        )
        producer.poll(0)
        next_at += interval
    left = producer.flush(60)
    seconds = time.perf_counter() - started
    if left or errors or len(latencies) != count:
        raise RuntimeError(f"latency {topic}: {left} undelivered, {len(latencies)} callbacks")
    latencies.sort()
    return {
        "seconds": seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


CHILDREN = {"produce": child_produce, "consume": child_consume, "latency": child_latency}


def spawn(task: dict[str, Any]) -> dict[str, Any]:
    """Run one client task in a fresh process; its JSON answer."""
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(task)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{task['role']} {task['topic']} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- servers


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of process ``pid`` and all its threads so far (``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    # After the command's ")": state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """A server the load is sent to: its address, its process, the topics' suffix."""

    name: str
    bootstrap: str
    pid: int
    suffix: str

    def topic(self, base: str) -> str:
        return f"{base}-{self.suffix}"


def _logstore_argv() -> list[str]:
    script = Path(sys.executable).with_name("logstore")
    return [str(script)] if script.exists() else [sys.executable, "-m", "logstore"]


@contextlib.contextmanager
def logstore_server(root: Path, topics: Sequence[str]) -> Iterator[tuple[str, int]]:
    """``logstore serve`` over ``root``, every topic made beforehand with both fsync policies."""
    import logstore

    with logstore.Broker.open(root) as broker:
        for base in topics:
            for policy in POLICIES:
                broker.create_topic(
                    f"{base}-{policy}", PARTITIONS, logstore.LogConfig(fsync=policy)
                )
    proc = subprocess.Popen(
        [*_logstore_argv(), "serve", str(root), "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.fullmatch(r"listening on (\S+)\n", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"logstore serve did not start: {line}{proc.stderr.read()[-2000:]}")
    tail: list[str] = []
    # Whatever the server logs goes on being read, so a full pipe never stalls it.
    drain = threading.Thread(target=lambda: tail.extend(proc.stderr or ()), daemon=True)
    drain.start()
    try:
        yield match.group(1), proc.pid
    finally:
        proc.terminate()
        code = proc.wait(60)
        drain.join(5)
        if code != 0:
            raise RuntimeError(f"logstore serve exited {code}: {''.join(tail)[-2000:]}")


def _harness() -> ModuleType:
    """The test suite's Kafka harness (it knows nothing of pytest)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.kafka import harness

    return harness


@contextlib.contextmanager
def kafka_server(work: Path, topics: Sequence[str]) -> Iterator[tuple[str, int]]:
    """The harness's KRaft broker, the topics made with the AdminClient."""
    from confluent_kafka.admin import AdminClient, NewTopic

    harness = _harness()
    lib = harness.ensure_jars()
    broker = harness.KafkaBroker(harness.KafkaTools(lib, work), work / "kafka")
    broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        futures = admin.create_topics([NewTopic(f"{t}-{KAFKA}", PARTITIONS, 1) for t in topics])
        for future in futures.values():
            future.result(timeout=60)
        assert broker.process is not None
        yield broker.bootstrap, broker.process.pid
    finally:
        broker.stop()


def kafka_unavailable() -> str | None:
    """Why the Kafka side cannot run here, or ``None``."""
    harness = _harness()
    try:
        harness.find_java()
        harness.ensure_jars()
    except harness.KafkaUnavailable as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- the run


@dataclass
class Phase:
    """One phase's client time and the server's CPU over it."""

    seconds: float
    cpu_s: float
    megabytes: float
    records: int
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def mb_s(self) -> float:
        return self.megabytes / self.seconds

    @property
    def records_s(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_per_mb(self) -> float:
        return self.cpu_s / self.megabytes


def measure(target: Target, task: dict[str, Any], megabytes: float) -> Phase:
    before = cpu_seconds(target.pid)
    answer = spawn({**task, "bootstrap": target.bootstrap})
    cpu = cpu_seconds(target.pid) - before
    return Phase(
        answer["seconds"],
        cpu,
        megabytes,
        task["records"],
        answer.get("p50_ms"),
        answer.get("p99_ms"),
    )


def loads(records: int, kib_records: int) -> list[Load]:
    return [
        Load(n, size, codec)
        for n, size in ((records, 100), (kib_records, 1024))
        for codec in COMPRESSIONS
    ]


def log(message: str) -> None:
    print(f"[serve bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _better(old: Phase | None, new: Phase) -> Phase:
    """The faster of two rounds' phases, with the lower server CPU of the two."""
    if old is None:
        return new
    best = new if new.seconds < old.seconds else old
    best.cpu_s = min(old.cpu_s, new.cpu_s)
    return best


def run_phases(
    targets: list[Target],
    plan: list[Load],
    *,
    rounds: int,
    latency_records: int,
    warmup: int,
) -> dict[tuple[str, str, str], Phase]:
    """Every load on every target, in turns; ``(load name, target, phase) -> Phase``."""
    results: dict[tuple[str, str, str], Phase] = {}
    for target in targets:
        task = {"topic": target.topic("warmup"), "records": warmup, "value_bytes": 100}
        spawn({**task, "role": "produce", "bootstrap": target.bootstrap})
        spawn({**task, "role": "consume", "bootstrap": target.bootstrap, "partitions": PARTITIONS})
    turn = 0
    for r in range(rounds):
        for load in plan:
            order = targets[turn % len(targets) :] + targets[: turn % len(targets)]
            turn += 1
            for target in order:
                log(f"round {r + 1}: {load.name} on {target.name}")
                task = {
                    "topic": target.topic(f"{load.topic}-{r}"),
                    "records": load.records,
                    "value_bytes": load.value_bytes,
                    "compression": load.compression,
                    "partitions": PARTITIONS,
                    "passes": load.passes,
                }
                for phase in ("produce", "consume"):
                    key = (load.name, target.name, phase)
                    passes = load.passes if phase == "consume" else 1
                    measured = measure(target, {**task, "role": phase}, load.megabytes * passes)
                    measured.records *= passes
                    results[key] = _better(results.get(key), measured)
    for target in targets:
        log(f"latency on {target.name}")
        task = {
            "role": "latency",
            "topic": target.topic("latency"),
            "records": latency_records,
            "rate": LATENCY_RATE,
            "value_bytes": 100,
        }
        results["latency", target.name, "latency"] = measure(
            target, task, latency_records * 100 / 1e6
        )
    return results


def _ratio(a: Phase | None, b: Phase | None) -> str:
    return f"{a.mb_s / b.mb_s:.2f}x" if a is not None and b is not None else "-"


def render(
    results: dict[tuple[str, str, str], Phase],
    plan: list[Load],
    names: list[str],
    *,
    latency_records: int,
    rounds: int,
    note: str,
    seconds: float,
) -> list[str]:
    kafka = KAFKA in names
    out = [
        TITLE,
        "",
        f"librdkafka {_librdkafka()} producers and consumers in processes of their own, one"
        f" loopback server at a time; {PARTITIONS} partitions a topic, `acks=all`. MB are"
        " 10^6 bytes of values; ratios are logstore's MB/s over Kafka's in the same run;"
        " server CPU is the server process's user+system time per MB over the phase."
        f" Best of {rounds} rounds (each on topics of its own), and the lower CPU of them."
        " A consume phase reads its topic from the beginning several times, MB and records"
        " counted each time: "
        + ", ".join(f"{load.name}: {load.passes}x" for load in plan)
        + f". {note}",
        "",
        "| load | server | produce MB/s | records/s | vs Kafka | consume MB/s | records/s"
        " | vs Kafka | CPU s/MB produce | CPU s/MB consume |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for load in plan:
        for name in names:
            p, c = results[load.name, name, "produce"], results[load.name, name, "consume"]
            kp = results.get((load.name, KAFKA, "produce"))
            kc = results.get((load.name, KAFKA, "consume"))
            versus = name != KAFKA and kafka
            out.append(
                f"| {load.name} | {name} | {p.mb_s:.1f} | {p.records_s:,.0f}"
                f" | {_ratio(p, kp) if versus else ''} | {c.mb_s:.1f} | {c.records_s:,.0f}"
                f" | {_ratio(c, kc) if versus else ''} | {p.cpu_per_mb:.4f} | {c.cpu_per_mb:.4f} |"
            )
    out += [
        "",
        f"Produce latency, {latency_records:,} records of 100 B at {LATENCY_RATE:,} records/s"
        " (`acks=all`, `linger.ms` 5 as librdkafka's default), from `produce()` to the"
        " delivery callback:",
        "",
        "| server | p50 ms | p99 ms | server CPU s/MB | server CPU % of one core |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        lat = results["latency", name, "latency"]
        out.append(
            f"| {name} | {lat.p50_ms:.2f} | {lat.p99_ms:.2f} | {lat.cpu_per_mb:.4f}"
            f" | {100 * lat.cpu_s / lat.seconds:.0f} |"
        )
    out += ["", f"Wall time of this section: {seconds:.0f} s.", ""]
    return out


def _librdkafka() -> str:
    try:
        import confluent_kafka
    except ImportError:
        return "(not installed)"
    return str(confluent_kafka.libversion()[0])


def run(
    *,
    records: int = RECORDS,
    kib_records: int = KIB_RECORDS,
    latency_seconds: float = LATENCY_SECONDS,
    warmup: int = WARMUP_RECORDS,
    rounds: int = ROUNDS,
    with_kafka: bool = True,
) -> list[str]:
    """The section's markdown lines (skipped, with the reason, without confluent-kafka)."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return [TITLE, "", "Skipped: confluent-kafka is not installed.", ""]
    note = ""
    if with_kafka:
        reason = kafka_unavailable()
        if reason is not None:
            with_kafka, note = False, f"Kafka skipped: {reason}."
    started = time.perf_counter()
    plan = loads(records, kib_records)
    bases = ["warmup", "latency", *(f"{load.topic}-{r}" for load in plan for r in range(rounds))]
    latency_records = max(int(LATENCY_RATE * latency_seconds), 100)
    work = Path(tempfile.mkdtemp(prefix="logstore-serve-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            targets = []
            if with_kafka:
                log("starting Kafka ...")
                address, pid = stack.enter_context(kafka_server(work, bases))
                targets.append(Target(KAFKA, address, pid, KAFKA))
            address, pid = stack.enter_context(logstore_server(work / "root", bases))
            for policy in POLICIES:
                targets.append(Target(f"logstore {policy}", address, pid, policy))
            results = run_phases(
                targets,
                plan,
                rounds=rounds,
                latency_records=latency_records,
                warmup=min(warmup, records),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = [t.name for t in targets]
    return render(
        results,
        plan,
        names,
        latency_records=latency_records,
        rounds=rounds,
        note=note,
        seconds=time.perf_counter() - started,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=RECORDS, help="100-byte records")
    parser.add_argument("--kib-records", type=int, default=KIB_RECORDS, help="1 KiB records")
    parser.add_argument("--latency-seconds", type=float, default=LATENCY_SECONDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="best of N rounds")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes")
    parser.add_argument("--no-kafka", action="store_true", help="logstore serve only")
    parser.add_argument("--output", help="also write the markdown here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        task = json.loads(args.child)
        print(json.dumps(CHILDREN[task["role"]](task)))
        return 0
    if args.quick:
        args.records, args.kib_records, args.latency_seconds, args.rounds = 20_000, 2_000, 0.2, 1
    if min(args.records, args.kib_records, args.rounds) < 1 or args.latency_seconds <= 0:
        parser.error("record counts and --latency-seconds must be positive")
    lines = run(
        records=args.records,
        kib_records=args.kib_records,
        latency_seconds=args.latency_seconds,
        warmup=min(WARMUP_RECORDS, args.records),
        rounds=args.rounds,
        with_kafka=not args.no_kafka,
    )
    text = "\n".join(lines)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
