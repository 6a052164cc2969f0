"""One consumer-group member of ``tests/test_serve_failover.py``, run as a process of its own.

``python tests/serve_group_member.py BOOTSTRAP TOPIC GROUP LOG SESSION_MS FAST_FLAG``

A confluent-kafka consumer with manual commits. It appends to LOG one JSON
line per event, flushed before anything that depends on it, so that what a
SIGKILL leaves there is true: ``assign`` (with the committed offsets it read
for its partitions at that moment), ``m`` (partition, offset, key, value of
each record delivered, written before the commit that covers it),
``commit`` (after the commit succeeded), ``revoke`` (after committing what
it consumed: a clean handover), ``lost``, ``closed``. SIGTERM makes it
commit, ``close()`` (LeaveGroup) and exit 0. Consumption is throttled (about
1,000 records/s) so that a test can act in the middle of it, until the file
FAST_FLAG exists: then it goes as fast as it can.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, TextIO

import confluent_kafka as ck

SLOW_BATCH, SLOW_PAUSE_S = 50, 0.05
FAST_BATCH = 1000


class Member:
    def __init__(
        self, bootstrap: str, topic: str, group: str, out: TextIO, session_ms: int, fast_flag: str
    ) -> None:
        self.topic = topic
        self.fast_flag = fast_flag
        self.out = out
        self.stopping = False
        #: The next offset of each partition consumed in this assignment, not yet committed.
        self.positions: dict[int, int] = {}
        self.consumer = ck.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": session_ms,
                "heartbeat.interval.ms": 500,
                "max.poll.interval.ms": 20_000,
                "partition.assignment.strategy": "range",
            }
        )

    def log(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"ev": event, "t": time.time(), **fields}) + "\n")
        self.out.flush()

    def commit(self) -> None:
        if not self.positions:
            return
        offsets = [ck.TopicPartition(self.topic, p, o) for p, o in sorted(self.positions.items())]
        self.consumer.commit(offsets=offsets, asynchronous=False)
        self.log("commit", offsets={str(p): o for p, o in self.positions.items()})

    def on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        committed = consumer.committed(partitions, timeout=10)
        self.positions = {}
        self.log("assign", committed={str(tp.partition): tp.offset for tp in committed})

    def on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            self.commit()
        except ck.KafkaException as exc:
            self.log("commit_failed", error=str(exc))
        self.positions = {}
        self.log("revoke", partitions=[tp.partition for tp in partitions])

    def on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self.positions = {}
        self.log("lost", partitions=[tp.partition for tp in partitions])

    def run(self) -> None:
        self.consumer.subscribe(
            [self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )
        fast = False
        while not self.stopping:
            fast = fast or os.path.exists(self.fast_flag)
            batch = FAST_BATCH if fast else SLOW_BATCH
            messages = self.consumer.consume(num_messages=batch, timeout=0.2)
            lines = []
            for m in messages:
                if m.error() is not None:
                    self.log("error", error=str(m.error()))
                    continue
                lines.append(
                    json.dumps(
                        {
                            "ev": "m",
                            "p": m.partition(),
                            "o": m.offset(),
                            "k": m.key().decode(),
                            "v": m.value().decode(),
                        }
                    )
                    + "\n"
                )
                self.positions[m.partition()] = m.offset() + 1
            if lines:
                self.out.write("".join(lines))
                self.out.flush()
                self.commit()
            if not fast:
                time.sleep(SLOW_PAUSE_S)
        self.commit()
        self.consumer.close()  # LeaveGroup: the others take over at once
        self.log("closed")


def main() -> None:
    bootstrap, topic, group, path, session_ms, fast_flag = sys.argv[1:7]
    with open(path, "a", encoding="utf-8") as out:
        member = Member(bootstrap, topic, group, out, int(session_ms), fast_flag)

        def stop(signum: int, frame: Any) -> None:
            member.stopping = True

        signal.signal(signal.SIGTERM, stop)
        member.log("started")
        member.run()


if __name__ == "__main__":
    main()
