"""``logstore serve``: DescribeConfigs, (Incremental)AlterConfigs and auto_create_topics.

With confluent-kafka's AdminClient (librdkafka) where it can say it,
kafka-python's for the legacy AlterConfigs (which librdkafka no longer uses), raw
kio frames where it cannot (a resource type it does not send, duplicate
keys, Metadata with ``allow_auto_topic_creation`` false, a Produce with no
Metadata before it). Every value and source reported is asserted exactly,
and what an alteration changed is read back from the root once the server
closed.
"""

from __future__ import annotations

import io
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

import logstore

pytest.importorskip("kio")
ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from kio.serial import entity_reader, entity_writer  # noqa: E402
from kio.static.constants import EntityType  # noqa: E402

from logstore.batch import encode_batch  # noqa: E402
from logstore.server import codec, configs  # noqa: E402
from tests.helpers_serve import need  # noqa: E402

LONG_MAX = str((1 << 63) - 1)
DEFAULTS = logstore.LogConfig(fsync="never", retention_ms=3_600_000)
# name -> (value, source, read-only) for a topic created with retention.bytes=1000000
# on a server whose defaults are DEFAULTS: 1 = the topic's own, 4 = the server's
# [topic_defaults], 5 = logstore's default.
DESCRIBED = {
    "cleanup.policy": ("delete", 5, False),
    "compression.type": ("producer", 5, True),
    "delete.retention.ms": ("86400000", 5, False),
    "flush.messages": (LONG_MAX, 4, False),
    "flush.ms": (LONG_MAX, 4, False),
    "index.interval.bytes": ("4096", 5, False),
    "max.message.bytes": ("1048576", 5, False),
    "message.timestamp.type": ("CreateTime", 5, True),
    "min.cleanable.dirty.ratio": ("0.5", 5, False),
    "min.compaction.lag.ms": ("0", 5, False),
    "min.insync.replicas": ("1", 5, True),
    "retention.bytes": ("1000000", 1, False),
    "retention.messages": ("-1", 5, False),
    "retention.ms": ("3600000", 4, False),
    "segment.bytes": ("1073741824", 5, False),
    "segment.index.bytes": ("10485760", 5, False),
    "segment.messages": ("-1", 5, False),
    "segment.ms": ("604800000", 5, False),
}


@pytest.fixture()
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    with logstore.serve(root, listen="127.0.0.1:0", config=DEFAULTS) as server:
        admin = AdminClient({"bootstrap.servers": "{}:{}".format(*server.address)})
        for future in admin.create_topics(
            [NewTopic("t", 2, 1, config={"retention.bytes": "1000000"})]
        ).values():
            assert future.result(timeout=10) is None
        yield server, admin, root


def _describe(admin: AdminClient, kind: ResourceType, name: str) -> dict[str, Any]:
    resource = ConfigResource(kind, name)
    (future,) = admin.describe_configs([resource]).values()
    return dict(future.result(timeout=10))


def _alter(
    admin: AdminClient, name: str, *ops: tuple[str, str | None, AlterConfigOpType], **kw: Any
) -> Any:
    entries = [ConfigEntry(n, v, incremental_operation=op) for n, v, op in ops]
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
    (future,) = admin.incremental_alter_configs([resource], **kw).values()
    return future.result(timeout=10)


def _refusal(
    admin: AdminClient, name: str, *ops: tuple[str, str | None, AlterConfigOpType]
) -> tuple[str, str]:
    with pytest.raises(ck.KafkaException) as caught:
        _alter(admin, name, *ops)
    error = caught.value.args[0]
    return error.name(), error.str()


SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE
APPEND, SUBTRACT = AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT


def test_describe_gives_each_setting_its_value_and_source(served) -> None:  # type: ignore[no-untyped-def]
    _, admin, _ = served
    described = _describe(admin, ResourceType.TOPIC, "t")
    assert {n: (e.value, int(e.source), e.is_read_only) for n, e in described.items()} == DESCRIBED
    assert [
        (s.name, s.value, int(s.source)) for s in described["retention.bytes"].synonyms.values()
    ] == [
        ("retention.bytes", "1000000", 1),
        ("log.retention.bytes", "-1", 5),
    ]
    assert described["cleanup.policy"].is_default and not described["retention.bytes"].is_default
    broker = _describe(admin, ResourceType.BROKER, "0")
    assert {n: (e.value, int(e.source)) for n, e in broker.items() if e.is_read_only} == {
        n: (e.value, int(e.source)) for n, e in broker.items()
    }
    assert {
        n: broker[n].value
        for n in (
            "log.retention.ms",
            "log.flush.interval.messages",
            "log.segment.bytes",
            "num.partitions",
            "auto.create.topics.enable",
        )
    } == {
        "log.retention.ms": "3600000",
        "log.flush.interval.messages": LONG_MAX,
        "log.segment.bytes": "1073741824",
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
    }
    with pytest.raises(ck.KafkaException) as caught:
        _describe(admin, ResourceType.TOPIC, "missing")
    assert caught.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"


def test_alterations_apply_at_once_and_last(served) -> None:  # type: ignore[no-untyped-def]
    server, admin, root = served
    _alter(
        admin,
        "t",
        ("retention.ms", "1000", SET),
        ("cleanup.policy", "compact", APPEND),
        ("retention.bytes", None, DELETE),
        ("flush.ms", "5000", SET),
    )
    described = _describe(admin, ResourceType.TOPIC, "t")
    assert {
        n: (described[n].value, int(described[n].source))
        for n in ("retention.ms", "cleanup.policy", "retention.bytes", "flush.ms", "flush.messages")
    } == {
        "retention.ms": ("1000", 1),
        "cleanup.policy": ("compact,delete", 1),
        "retention.bytes": ("-1", 5),
        "flush.ms": ("5000", 1),
        "flush.messages": (LONG_MAX, 1),
    }
    _alter(admin, "t", ("cleanup.policy", "delete", SUBTRACT), ("flush.ms", None, DELETE))
    # validate_only: checked, answered, nothing changes
    assert _alter(admin, "t", ("segment.bytes", "2048", SET), validate_only=True) is None
    described = _describe(admin, ResourceType.TOPIC, "t")
    assert (described["cleanup.policy"].value, described["segment.bytes"].value) == (
        "compact",
        "1073741824",
    )
    assert (described["flush.ms"].value, int(described["flush.ms"].source)) == (LONG_MAX, 4)
    server.close()
    with logstore.Broker.open(root, DEFAULTS, maintenance_interval_ms=None) as broker:
        assert broker.topic_overrides("t") == {"retention_ms": 1000, "cleanup_policy": "compact"}
        config = broker.topic("t").partition(1).config
        assert (config.retention_ms, config.cleanup_policy, config.fsync) == (
            1000,
            "compact",
            "never",
        )


def test_flush_settings_are_the_fsync_policy(served) -> None:  # type: ignore[no-untyped-def]
    server, admin, root = served
    _alter(admin, "t", ("flush.messages", "1", SET))
    assert _describe(admin, ResourceType.TOPIC, "t")["flush.ms"].value == "0"
    _alter(admin, "t", ("flush.messages", LONG_MAX, SET), ("flush.ms", LONG_MAX, SET))
    described = _describe(admin, ResourceType.TOPIC, "t")  # fsync="never", the topic's own
    assert [
        (described[n].value, int(described[n].source)) for n in ("flush.messages", "flush.ms")
    ] == [
        (LONG_MAX, 1),
        (LONG_MAX, 1),
    ]
    _alter(admin, "t", ("flush.messages", "100", SET), ("flush.ms", "250", SET))
    server.close()
    with logstore.Broker.open(root, DEFAULTS, maintenance_interval_ms=None) as broker:
        config = broker.topic("t").config
        assert (config.fsync, config.fsync_interval_messages, config.fsync_interval_ms) == (
            "interval",
            100,
            250,
        )


def test_refusals_name_the_setting_and_change_nothing(served) -> None:  # type: ignore[no-untyped-def]
    _, admin, _ = served
    name, text = _refusal(admin, "t", ("retention.hours", "1", SET))
    assert name == "INVALID_CONFIG" and text.startswith(
        "unknown topic config 'retention.hours': this broker knows cleanup.policy,"
    )
    assert _refusal(admin, "t", ("retention.ms", "10", SET), ("segment.bytes", "1", SET)) == (
        "INVALID_CONFIG",
        "segment_bytes must be an integer >= 64, got 1",
    )
    assert _refusal(admin, "t", ("retention.ms", "soon", SET)) == (
        "INVALID_CONFIG",
        "retention.ms must be an integer, not 'soon'",
    )
    assert _refusal(admin, "t", ("retention.ms", "10", APPEND)) == (
        "INVALID_CONFIG",
        "config value append is not allowed for config key: retention.ms",
    )
    assert _refusal(admin, "t", ("cleanup.policy", "delete", SUBTRACT)) == (
        "INVALID_CONFIG",
        "cleanup.policy must be delete, compact or both, not ''",
    )
    assert _refusal(admin, "t", ("compression.type", "zstd", SET)) == (
        "INVALID_CONFIG",
        "compression.type is fixed here (batches are kept as the producer compressed them): it cannot be altered",
    )
    assert _refusal(admin, "missing", ("retention.ms", "10", SET))[0] == "UNKNOWN_TOPIC_OR_PART"
    broker_resource = ConfigResource(
        ResourceType.BROKER,
        "0",
        incremental_configs=[ConfigEntry("log.retention.ms", "1", incremental_operation=SET)],
    )
    (future,) = admin.incremental_alter_configs([broker_resource]).values()
    with pytest.raises(ck.KafkaException) as caught:
        future.result(timeout=10)
    assert caught.value.args[0].name() == "INVALID_REQUEST"
    assert {
        n: (e.value, int(e.source), e.is_read_only)
        for n, e in _describe(admin, ResourceType.TOPIC, "t").items()
    } == DESCRIBED


# ------------------------------------------------------------ raw frames


def _call(address: tuple[str, int], api_key: int, version: int, body: dict[str, Any]) -> Any:
    """One request of ``body`` (built as the server builds answers), its decoded response."""
    from kio.index import load_payload_module
    from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
    from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2

    module = load_payload_module(api_key, version, EntityType.request)
    cls = next(
        v for v in vars(module).values() if getattr(v, "__type__", None) is EntityType.request
    )
    RequestHeader: Any = RequestHeaderV2 if cls.__flexible__ else RequestHeaderV1
    out = io.BytesIO()
    entity_writer(RequestHeader)(
        out,
        RequestHeader(
            request_api_key=api_key, request_api_version=version, correlation_id=7, client_id="test"
        ),
    )  # type: ignore[arg-type]
    entity_writer(cls)(out, codec.build(cls, body))
    data = out.getvalue()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(data)) + data)
        size = struct.unpack(">i", _read(sock, 4))[0]
        frame = _read(sock, size)
    response_class = codec.response_class(api_key, version)
    assert response_class is not None
    # The correlation id, then (flexible versions) the header's tagged fields.
    answer, _ = entity_reader(response_class)(frame, 5 if cls.__flexible__ else 4)
    return answer


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_raw_requests_a_client_library_would_not_send(served) -> None:  # type: ignore[no-untyped-def]
    server, _, _ = served
    described = _call(
        server.address,
        32,
        4,
        {
            "resources": [
                {"resource_type": 32, "resource_name": "g", "configuration_keys": None},
                {"resource_type": 4, "resource_name": "5", "configuration_keys": None},
                {
                    "resource_type": 2,
                    "resource_name": "t",
                    "configuration_keys": ["segment.ms", "nope"],
                },
            ],
            "include_synonyms": False,
            "include_documentation": True,
        },
    )
    group, other_broker, topic = described.results
    assert (group.error_code, group.error_message) == (
        codec.ErrorCode.invalid_request,
        "config resource type 32 is not supported here (TOPIC and BROKER are)",
    )
    assert (other_broker.error_code, other_broker.error_message) == (
        codec.ErrorCode.invalid_request,
        "this broker is node 0",
    )
    assert [
        (c.name, c.value, c.config_type, c.documentation, c.synonyms) for c in topic.configs
    ] == [("segment.ms", "604800000", 5, "the age at which a segment rolls, -1: never", ())]
    altered = _call(
        server.address,
        44,
        1,
        {
            "resources": [
                {
                    "resource_type": 2,
                    "resource_name": "t",
                    "configs": [
                        {"name": "retention.ms", "config_operation": 0, "value": "1"},
                        {"name": "retention.ms", "config_operation": 0, "value": "2"},
                    ],
                },
                {
                    "resource_type": 2,
                    "resource_name": "t",
                    "configs": [{"name": "retention.ms", "config_operation": 9, "value": "1"}],
                },
                {
                    "resource_type": 2,
                    "resource_name": "t",
                    "configs": [{"name": "retention.ms", "config_operation": 0, "value": None}],
                },
            ],
            "validate_only": False,
        },
    )
    assert [(r.error_code, r.error_message) for r in altered.responses] == [
        (codec.ErrorCode.invalid_request, "duplicate config keys: retention.ms"),
        (codec.ErrorCode.invalid_request, "unknown config operation 9"),
        (codec.ErrorCode.invalid_request, "null value not supported for retention.ms"),
    ]


def _produce(address: tuple[str, int], topic: str) -> Any:
    batch = encode_batch([(b"v", b"k", (), 1_700_000_000_000)], base_offset=0)
    body = {
        "acks": 1,
        "timeout": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }
    ((partition,),) = [t.partition_responses for t in _call(address, 0, 9, body).responses]
    return partition.error_code, partition.base_offset


def _metadata(address: tuple[str, int], topic: str, allow: bool) -> Any:
    body = {"topics": [{"name": topic}], "allow_auto_topic_creation": allow}
    (answer,) = _call(address, 3, 12, body).topics
    return answer.error_code, len(answer.partitions)


def test_auto_create_topics_on_produce_and_metadata(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with logstore.serve(
        root, listen="127.0.0.1:0", auto_create_topics=True, default_partitions=3
    ) as server:
        address = server.address
        assert _metadata(address, "quiet", allow=False) == (
            codec.ErrorCode.unknown_topic_or_partition,
            0,
        )
        assert _produce(address, "by-produce") == (codec.ErrorCode.none, 0)
        assert _metadata(address, "by-metadata", allow=True) == (codec.ErrorCode.none, 3)
        producer = ck.Producer({"bootstrap.servers": "{}:{}".format(*address)})
        reports: list[Any] = []
        producer.produce(
            "by-client",
            b"v",
            partition=2,
            on_delivery=lambda err, msg: reports.append((err, msg.offset())),
        )
        assert producer.flush(10) == 0
        assert reports == [(None, 0)]
    with logstore.Broker.open(root, maintenance_interval_ms=None) as broker:
        assert {n: broker.topic(n).partitions for n in broker.topics()} == {
            "by-client": 3,
            "by-metadata": 3,
            "by-produce": 3,
        }
        assert [(r.key, r.value) for r in broker.topic("by-produce").partition(0).read(0)] == [
            (b"k", b"v")
        ]


def test_unknown_topics_stay_unknown_by_default(served) -> None:  # type: ignore[no-untyped-def]
    server, _, _ = served
    assert _produce(server.address, "nobody") == (codec.ErrorCode.unknown_topic_or_partition, -1)
    assert _metadata(server.address, "nobody", allow=True) == (
        codec.ErrorCode.unknown_topic_or_partition,
        0,
    )
    keys = ["auto.create.topics.enable", "num.partitions"]
    body = {"resources": [{"resource_type": 4, "resource_name": "", "configuration_keys": keys}]}
    (cluster,) = _call(server.address, 32, 4, body).results
    assert [(c.name, c.value, c.read_only) for c in cluster.configs] == [
        ("auto.create.topics.enable", "false", True),
        ("num.partitions", "1", True),
    ]


def test_create_topics_answers_with_the_new_topics_configs(served) -> None:  # type: ignore[no-untyped-def]
    """Java's admin client reads CreateTopics' ``configs`` (null made kafka-topics fail)."""
    server, _, _ = served
    topic = {
        "name": "created",
        "num_partitions": 1,
        "replication_factor": -1,
        "assignments": [],
        "configs": [{"name": "segment.ms", "value": "60000"}],
    }
    body = {"topics": [topic], "timeout": 5000, "validate_only": False}
    (created,) = _call(server.address, 19, 7, body).topics
    assert created.error_code == codec.ErrorCode.none
    configs = {c.name: (c.value, c.config_source, c.read_only) for c in created.configs}
    assert configs == {n: v for n, v in DESCRIBED.items() if n != "retention.bytes"} | {
        "retention.bytes": ("-1", 5, False),
        "segment.ms": ("60000", 1, False),
    }


# ------------------------------------------------------------ the settings file

SETTINGS_FILE = """
listen = "127.0.0.1:1"          # overridden by --listen on the command line
auto_create_topics = true
default_partitions = 2
max_connections = 50
shutdown_grace_s = 2            # an int where a float is expected: fine

[topic_defaults]
retention_ms = 1234
fsync = "never"
"""


def test_a_settings_file_gives_server_options_and_topic_defaults(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(SETTINGS_FILE)
    assert logstore.load_serve_settings(path) == {
        "listen": "127.0.0.1:1",
        "auto_create_topics": True,
        "default_partitions": 2,
        "max_connections": 50,
        "shutdown_grace_s": 2,
        "config": logstore.LogConfig(retention_ms=1234, fsync="never"),
    }


class _LaterServer:
    """A server class with an option added later: the file can set it, unchanged loader."""

    def __init__(
        self, root: str, *, listen: str = "", tls_cert: str | None = None, tls_verify: bool = False
    ) -> None:
        pass


def test_a_server_option_added_later_is_known_by_introspection(tmp_path: Path) -> None:
    from logstore.server import settings

    path = tmp_path / "s.toml"
    path.write_text('tls_cert = "/etc/cert.pem"\ntls_verify = true\n')
    assert settings.load(path, _LaterServer) == {"tls_cert": "/etc/cert.pem", "tls_verify": True}
    path.write_text("tls_verify = 1\n")
    with pytest.raises(logstore.ConfigError) as caught:
        settings.load(path, _LaterServer)
    assert str(caught.value) == f"{path}: tls_verify must be bool, not 1 (int)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('lisen = "x"\n', "unknown key 'lisen' (known: ["),
        ("max_connections = true\n", "max_connections must be int, not True (bool)"),
        ('default_partitions = "3"\n', "default_partitions must be int, not '3' (str)"),
        ("listen = [\n", "not valid TOML: "),
        ("topic_defaults = 3\n", "topic_defaults must be a table ([topic_defaults])"),
        (
            "[topic_defaults]\nretention_hours = 1\n",
            "[topic_defaults] unknown key 'retention_hours'",
        ),
        (
            "[topic_defaults]\nsegment_bytes = 10\n",
            "[topic_defaults] segment_bytes must be an integer >= 64, got 10",
        ),
    ],
)
def test_a_bad_settings_file_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(logstore.ConfigError) as caught:
        logstore.load_serve_settings(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    if message.startswith("unknown key 'lisen'"):  # the CLI: one line, exit 2 (once is enough)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "logstore",
                "serve",
                str(tmp_path / "root"),
                "--config",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr == f"logstore: {caught.value}\n"
        assert not (tmp_path / "root").exists()


def test_serve_with_a_settings_file_and_a_flag_over_it(tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys

    path = tmp_path / "serve.toml"
    path.write_text(SETTINGS_FILE)
    root = tmp_path / "root"
    argv = [sys.executable, "-m", "logstore", "serve", str(root), "--config", str(path)]
    proc = subprocess.Popen([*argv, "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        address = ("127.0.0.1", int(match.group(1)))
        assert _produce(address, "auto") == (codec.ErrorCode.none, 0)
        keys = [
            "log.retention.ms",
            "log.flush.interval.ms",
            "num.partitions",
            "auto.create.topics.enable",
        ]
        body = {
            "resources": [{"resource_type": 4, "resource_name": "0", "configuration_keys": keys}]
        }
        (broker,) = _call(address, 32, 4, body).results
        assert [(c.name, c.value, c.config_source) for c in broker.configs] == [
            ("auto.create.topics.enable", "true", 4),
            ("log.flush.interval.ms", LONG_MAX, 4),
            ("log.retention.ms", "1234", 4),
            ("num.partitions", "2", 4),
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    with logstore.Broker.open(root, maintenance_interval_ms=None) as opened:
        assert opened.topic("auto").partitions == 2


def test_alterations_while_a_producer_sends_lose_nothing(served) -> None:  # type: ignore[no-untyped-def]
    """Each alteration reopens the partitions under a producer sending with acks=all:
    every record is acknowledged once, at contiguous offsets, and stored."""
    import threading

    server, admin, root = served
    producer = ck.Producer(
        {
            "bootstrap.servers": "{}:{}".format(*server.address),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
        }
    )
    reports: list[Any] = []
    done = threading.Event()

    def alter() -> None:
        size = 1 << 20
        while not done.is_set():
            size = (1 << 21) if size == (1 << 20) else (1 << 20)
            _alter(admin, "t", ("segment.bytes", str(size), SET))

    altering = threading.Thread(target=alter)
    altering.start()
    try:
        for i in range(3000):
            producer.produce(
                "t",
                b"v%d" % i,
                partition=i % 2,
                on_delivery=lambda err, msg: reports.append(
                    (err, msg.partition(), msg.offset(), msg.value())
                ),
            )
            producer.poll(0)
        assert producer.flush(30) == 0
    finally:
        done.set()
        altering.join()
    assert [r for r in reports if r[0] is not None] == []
    for p in (0, 1):
        mine = sorted((offset, value) for _, part, offset, value in reports if part == p)
        assert mine == [(n, b"v%d" % (2 * n + p)) for n in range(1500)]
    server.close()
    with logstore.Broker.open(root, DEFAULTS, maintenance_interval_ms=None) as broker:
        assert [r.value for r in broker.topic("t").partition(1).read(0, max_records=2000)] == [
            b"v%d" % (2 * n + 1) for n in range(1500)
        ]


def test_the_security_options_come_from_the_file_too(tmp_path: Path) -> None:
    """The TLS and SASL options of the server, unknown to the loader, are found in its signature."""
    path = tmp_path / "secure.toml"
    path.write_text(
        'tls_cert = "server.pem"\ntls_key = "server.key"\nsasl_mechanisms = ["PLAIN"]\n'
    )
    assert logstore.load_serve_settings(path) == {
        "tls_cert": "server.pem",
        "tls_key": "server.key",
        "sasl_mechanisms": ["PLAIN"],
    }
    path.write_text("sasl_users = 7\n")
    with pytest.raises(logstore.ConfigError, match=r"sasl_users must be .*, not 7 \(int\)"):
        logstore.load_serve_settings(path)


# ------------------------------------------------------------ the legacy AlterConfigs


def _settings(admin: AdminClient) -> dict[str, tuple[str, int, bool]]:
    """Topic ``t``'s settings as DESCRIBED shows them."""
    return {
        n: (e.value, int(e.source), e.is_read_only)
        for n, e in _describe(admin, ResourceType.TOPIC, "t").items()
    }


def test_kafka_python_alter_configs_replaces_the_settings(served) -> None:  # type: ignore[no-untyped-def]
    kafka_admin = need("kafka.admin")
    server, admin, root = served
    client = kafka_admin.KafkaAdminClient(bootstrap_servers="{}:{}".format(*server.address))
    topic_type, broker_type = (
        kafka_admin.ConfigResourceType.TOPIC,
        kafka_admin.ConfigResourceType.BROKER,
    )
    try:
        # kafka-python adds the topic's other own settings (retention.bytes) to the request.
        wanted = {"retention.ms": "1000", "cleanup.policy": "compact"}
        resource = kafka_admin.ConfigResource(topic_type, "t", wanted)
        assert client.alter_configs([resource], incremental=False) == {"topic": {"t": "OK"}}
        changed = {
            "retention.ms": ("1000", 1, False),
            "cleanup.policy": ("compact", 1, False),
        }
        assert _settings(admin) == DESCRIBED | changed
        # A partial reset sends every own setting but the one reset: that one reverts.
        resource = kafka_admin.ConfigResource(topic_type, "t", ["retention.bytes"])
        assert client.reset_configs([resource], incremental=False) == {"topic": {"t": "OK"}}
        reverted = {"retention.bytes": ("-1", 5, False)}
        assert _settings(admin) == DESCRIBED | changed | reverted
        bad = kafka_admin.ConfigResource(topic_type, "t", {"segment.bytes": "1"})
        assert client.alter_configs([bad], incremental=False, raise_on_unknown=False) == {
            "topic": {
                "t": "[Error 40] InvalidConfigurationError: segment_bytes must be an integer >= 64, got 1"
            }
        }
        broker = kafka_admin.ConfigResource(broker_type, "0", {"log.retention.ms": "1"})
        assert client.alter_configs([broker], incremental=False, raise_on_unknown=False) == {
            "broker": {
                "0": "[Error 42] InvalidRequestError: the broker's settings are read-only: "
                "they come from logstore serve --config"
            }
        }
        assert _settings(admin) == DESCRIBED | changed | reverted
    finally:
        client.close()
    server.close()
    with logstore.Broker.open(root, DEFAULTS, maintenance_interval_ms=None) as broker_root:
        assert broker_root.topic_overrides("t") == {
            "retention_ms": 1000,
            "cleanup_policy": "compact",
        }


def _legacy_alter(
    address: tuple[str, int],
    version: int,
    validate_only: bool,
    *resources: tuple[int, str, dict[str, str | None] | list[tuple[str, str | None]]],
) -> list[tuple[int, str | None]]:
    """A raw AlterConfigs: each resource's (error code, message); a list may repeat a name."""
    body = {
        "resources": [
            {
                "resource_type": kind,
                "resource_name": name,
                "configs": [
                    {"name": n, "value": v}
                    for n, v in (given.items() if isinstance(given, dict) else given)
                ],
            }
            for kind, name, given in resources
        ],
        "validate_only": validate_only,
    }
    answer = _call(address, 33, version, body)
    assert [(r.resource_type, r.resource_name) for r in answer.responses] == [
        (kind, name) for kind, name, _ in resources
    ]
    return [(r.error_code, r.error_message) for r in answer.responses]


def test_raw_alter_configs_validate_only_and_errors(served) -> None:  # type: ignore[no-untyped-def]
    server, admin, root = served
    ok = (codec.ErrorCode.none, None)
    # validate_only: a valid replacement is answered and changes nothing; a bad one is refused.
    assert _legacy_alter(server.address, 2, True, (2, "t", {"segment.ms": "1000"})) == [ok]
    assert _legacy_alter(server.address, 2, True, (2, "t", {"segment.bytes": "1"})) == [
        (codec.ErrorCode.invalid_config, "segment_bytes must be an integer >= 64, got 1")
    ]
    assert _settings(admin) == DESCRIBED
    assert _legacy_alter(
        server.address,
        0,
        False,
        # Only what is given: retention.bytes (null, as if not given) reverts to the default.
        (2, "t", {"segment.ms": "1000", "flush.ms": "250", "retention.bytes": None}),
        (2, "t", [("retention.ms", "1"), ("cleanup.policy", "compact"), ("retention.ms", "2")]),
        (2, "t", {"retention.hours": "1"}),
        (2, "t", {"compression.type": "producer"}),
        (2, "missing", {"retention.ms": "1"}),
        (4, "0", {"log.retention.ms": "1"}),
        (32, "g", {"x": "1"}),
    ) == [
        ok,
        (codec.ErrorCode.invalid_request, "duplicate config keys: retention.ms"),
        (
            codec.ErrorCode.invalid_config,
            "unknown topic config 'retention.hours': this broker knows "
            + ", ".join(configs.SETTINGS),
        ),
        (
            codec.ErrorCode.invalid_config,
            "compression.type is fixed here (batches are kept as the producer compressed them): it cannot be altered",
        ),
        (codec.ErrorCode.unknown_topic_or_partition, f"no topic 'missing' in {root}"),
        (
            codec.ErrorCode.invalid_request,
            "the broker's settings are read-only: they come from logstore serve --config",
        ),
        (
            codec.ErrorCode.invalid_request,
            "config resource type 32 is not supported here (TOPIC and BROKER are)",
        ),
    ]
    assert _settings(admin) == DESCRIBED | {
        "retention.bytes": ("-1", 5, False),
        "segment.ms": ("1000", 1, False),
        "flush.ms": ("250", 1, False),
        "flush.messages": (LONG_MAX, 1, False),
    }
    assert _legacy_alter(server.address, 1, False, (2, "t", {"segment.ms": "5"}), (2, "t", {})) == [
        ok,
        ok,
    ]  # the second empties the topic's settings: all defaults
    assert _settings(admin) == DESCRIBED | {"retention.bytes": ("-1", 5, False)}
    assert _legacy_alter(
        server.address,
        2,
        False,
        (2, "t", {"segment.ms": "1000", "flush.ms": "250", "max.message.bytes": "2048"}),
    ) == [ok]
    assert _settings(admin) == DESCRIBED | {
        "retention.bytes": ("-1", 5, False),
        "segment.ms": ("1000", 1, False),
        "flush.ms": ("250", 1, False),
        "flush.messages": (LONG_MAX, 1, False),
        "max.message.bytes": ("2048", 1, False),
    }
    server.close()
    with logstore.Broker.open(root, DEFAULTS, maintenance_interval_ms=None) as broker:
        assert broker.topic_overrides("t") == {
            "segment_ms": 1000,
            "max_message_bytes": 2048,
            "fsync": "interval",
            "fsync_interval_ms": 250,
            "fsync_interval_messages": None,
        }
