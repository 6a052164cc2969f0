"""Fixtures of the real-Kafka tests: Kafka's jars, its tools, one broker per session.

Every test under ``tests/kafka/`` gets the ``kafka`` marker: ``make pytest``
runs them once, in their own pass, not under both codecs (the tests that
need both write with each in a child process). Without ``java``, or without
the jars and ``mvn`` to fetch them, they skip with the reason, unless
``LOGSTORE_KAFKA=required``: then they fail with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import harness

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the marker must be there by then
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.kafka)


def unavailable(reason: str) -> None:
    """Skip for ``reason``, or fail where Kafka is required."""
    if harness.required():
        pytest.fail(f"LOGSTORE_KAFKA=required, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    """The directory of Kafka's jars (fetched once into the cache, see ``harness.ensure_jars``)."""
    try:
        harness.find_java()
        return harness.ensure_jars()
    except harness.KafkaUnavailable as exc:
        unavailable(str(exc))
        raise  # unreachable: skip and fail raise


@pytest.fixture(scope="session")
def kafka_tools(kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory) -> harness.KafkaTools:
    """``kafka_tools(main_class, *args) -> (returncode, stdout, stderr)``: a Kafka tool run.

    Tools log WARN and up to ``kafka_tools.log_file``, not to their stderr.
    """
    return harness.KafkaTools(kafka_jars, tmp_path_factory.mktemp("kafka-tools"))


@pytest.fixture(scope="session")
def kafka_broker(
    kafka_tools: harness.KafkaTools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.KafkaBroker]:
    """One running KRaft broker for the session: ``bootstrap``, ``log_dir``, ``stop()``/``start()``.

    A test that stops it must start it again before it returns (in a
    ``finally``); the broker is stopped at the end of the session whatever happens.
    """
    broker = harness.KafkaBroker(kafka_tools, tmp_path_factory.mktemp("kafka-broker"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
