"""The Kafka side of a mirror: the cluster's metadata, its topics, the producer.

Owns talking to a Kafka cluster through confluent-kafka (librdkafka),
imported only when a mirror starts: an admin client that checks the cluster
is reachable and checks or creates topics, the idempotent ``acks=all``
producer, and a reader of each partition's end offset and of single records. The client's own
log lines go to this package's logger at debug level; failures become one
``MirrorError`` line each. Knows nothing of logstore's logs or groups.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from .errors import ConfigError, MirrorError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'logstore[kafka]'"
#: Settings the mirror's guarantees rest on: a producer property may not change them.
REQUIRED = {"acks": "all", "enable.idempotence": "true"}
_THREAD = re.compile(r"^\[thrd:[^\]]*\]: (?:\S+/\S+: )?")


def import_client() -> ModuleType:
    """confluent-kafka, or ``MirrorError`` saying how to install it."""
    try:
        import confluent_kafka
        import confluent_kafka.admin  # the AdminClient: a submodule
    except ImportError:
        raise MirrorError(
            f"mirroring to Kafka needs the confluent-kafka package: {INSTALL_HINT}"
        ) from None
    return confluent_kafka


class ClientLog:
    """librdkafka's log lines: debug lines of ours, the last one kept for an error message."""

    def __init__(self) -> None:
        self.last = ""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        text = fmt % args if args else fmt
        # "FAIL [rdkafka#producer-1] [thrd:host:port/bootstrap]: host:port/bootstrap: <what>"
        self.last = _THREAD.sub("", str(args[-1])) if args else text
        logger.debug("kafka client: %s", text)


class Cluster:
    """The Kafka side: an admin client, the idempotent producer, readers of the partitions."""

    def __init__(
        self,
        kafka: ModuleType,
        bootstrap_servers: str,
        *,
        timeout_s: float,
        properties: Mapping[str, str],
        replication_factor: int | None,
    ) -> None:
        for key, wanted in REQUIRED.items():
            given = properties.get(key)
            if given is not None and str(given).lower() != wanted:
                raise ConfigError(f"the mirror needs {key}={wanted}; {key}={given} was given")
        self._kafka = kafka
        self.bootstrap = bootstrap_servers
        self.timeout_s = timeout_s
        self.replication_factor = -1 if replication_factor is None else replication_factor
        self.log = ClientLog()
        self.fatal: Any = None
        common: dict[str, Any] = {
            **properties,
            "bootstrap.servers": bootstrap_servers,
            "logger": self.log,
        }
        self._common = common
        self.admin: Any = kafka.admin.AdminClient(dict(common))
        self.producer = kafka.Producer(
            {
                "linger.ms": 5,
                **common,
                **REQUIRED,
                "enable.gapless.guarantee": True,
                "message.timeout.ms": int(timeout_s * 1000),
                "error_cb": self._error,
            }
        )

    def _error(self, error: Any) -> None:
        if error.fatal() and self.fatal is None:
            self.fatal = error

    def check_fatal(self) -> None:
        if self.fatal is not None:
            raise MirrorError(f"the Kafka producer failed: {self.fatal.str()}")

    def _metadata(self) -> Any:
        try:
            return self.admin.list_topics(timeout=self.timeout_s)
        except self._kafka.KafkaException as exc:
            self.admin.poll(0)  # deliver the client's log lines: the cause is in them
            cause = self.log.last or exc.args[0].str()
            raise MirrorError(
                f"cannot reach the Kafka cluster at {self.bootstrap} within "
                f"{self.timeout_s:g} s: {cause}"
            ) from None

    def connect(self) -> None:
        """Ask the cluster for its metadata now: unreachable is an error at once."""
        self._metadata()

    def missing_topics(self, wanted: Mapping[str, int]) -> list[str]:
        """The topics (name -> partition count) the cluster lacks; the others are checked.

        Raises:
            MirrorError: a topic exists with another partition count.
        """
        existing = self._metadata().topics
        missing = []
        for name, partitions in sorted(wanted.items()):
            found = existing.get(name)
            if found is None or found.error is not None:
                missing.append(name)
            elif len(found.partitions) != partitions:
                raise MirrorError(
                    f"topic {name} has {len(found.partitions)} partition(s) on the cluster and "
                    f"{partitions} in the source: each record must keep its partition number"
                )
        return missing

    def create_topics(self, wanted: Mapping[str, tuple[int, str]]) -> None:
        """Create topics: name -> (partition count, cleanup.policy).

        Raises:
            MirrorError: creating one failed (the cluster's reason).
        """
        NewTopic = self._kafka.admin.NewTopic
        new = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=self.replication_factor,
                config={"cleanup.policy": policy},
            )
            for name, (partitions, policy) in sorted(wanted.items())
        ]
        futures = self.admin.create_topics(new, operation_timeout=self.timeout_s)
        for name, future in futures.items():
            try:
                future.result(timeout=self.timeout_s)
            except self._kafka.KafkaException as exc:
                raise MirrorError(
                    f"cannot create topic {name} on the cluster: {exc.args[0].str()}"
                ) from None
            except Exception as exc:  # concurrent.futures' TimeoutError, the client's own
                raise MirrorError(f"cannot create topic {name} on the cluster: {exc}") from None
        logger.info("created %s on the cluster", ", ".join(sorted(wanted)))

    def _reader(self) -> Any:
        return self._kafka.Consumer(
            {
                **self._common,
                "group.id": "logstore-mirror-probe",  # assign() only: never joins it
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )

    def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        """Each partition's end offset (its high watermark: what ``acks=all`` acknowledged).

        Raises:
            MirrorError: the cluster did not answer within the timeout.
        """
        kafka = self._kafka
        reader = self._reader()
        try:
            return {
                p: reader.get_watermark_offsets(kafka.TopicPartition(topic, p), self.timeout_s)[1]
                for p in range(partitions)
            }
        except kafka.KafkaException as exc:
            raise MirrorError(
                f"cannot read the end offsets of topic {topic} on the cluster: {exc.args[0].str()}"
            ) from None
        finally:
            reader.close()

    def records_at(
        self, topic: str, offsets: Mapping[int, int]
    ) -> dict[int, tuple[bytes | None, bytes | None, int] | None]:
        """The (key, value, timestamp) of the record at partition -> offset.

        ``None`` for one that cannot be read there (removed by the cluster's
        retention or compaction: the read lands elsewhere, or at the end).

        Raises:
            MirrorError: the cluster did not answer within the timeout.
        """
        kafka = self._kafka
        out: dict[int, tuple[bytes | None, bytes | None, int] | None] = dict.fromkeys(offsets)
        if not offsets:
            return out
        reader = self._reader()
        waiting = set(offsets)
        try:
            reader.assign([kafka.TopicPartition(topic, p, o) for p, o in offsets.items()])
            deadline = time.monotonic() + self.timeout_s
            while waiting and time.monotonic() < deadline:
                message = reader.poll(0.5)
                if message is None or message.partition() not in waiting:
                    continue
                p = message.partition()
                waiting.discard(p)
                if message.error() is None and message.offset() == offsets[p]:
                    out[p] = (message.key(), message.value(), message.timestamp()[1])
        except kafka.KafkaException as exc:
            raise MirrorError(
                f"cannot read topic {topic} on the cluster: {exc.args[0].str()}"
            ) from None
        finally:
            reader.close()
        if waiting:
            raise MirrorError(
                f"cannot read records of topic {topic} on the cluster within "
                f"{self.timeout_s:g} s (partitions {sorted(waiting)})"
            )
        return out

    def close(self) -> None:
        self.producer.flush(0)
