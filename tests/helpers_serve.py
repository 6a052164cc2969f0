"""What the durability and failover tests of ``logstore serve`` share.

``need`` imports a client library, skipping without it, except under
``LOGSTORE_KAFKA=required`` (CI), where a missing library fails the test.
``ServeProcess`` runs ``logstore serve ROOT`` as a child process (so it can
be SIGKILLed), on a port of its own that a restart keeps (clients reconnect
to the same address). ``RawClient`` speaks InitProducerId, Produce and
ListOffsets with frames encoded by kio, for sending a batch exactly as
given, again. ``idempotent_batch`` builds a RecordBatch v2 with producer
fields.
"""

from __future__ import annotations

import importlib
import io
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from types import ModuleType
from typing import Any

import pytest

from logstore.batch import build_batch, encode_section
from tests.kafka.harness import required


def need(module: str) -> ModuleType:
    """``import module``; a skip when it is missing, a failure under LOGSTORE_KAFKA=required."""
    if required():
        return importlib.import_module(module)
    return pytest.importorskip(module)


class ServeProcess:
    """``logstore serve ROOT --listen 127.0.0.1:PORT`` in a child process."""

    def __init__(self, root: Any, port: int = 0) -> None:
        self.root = str(root)
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []
        self.startup_log: list[str] = []
        self._drain = threading.Thread()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        """Start it (on the port of the last run, if any) and wait for its ready line."""
        deadline = time.monotonic() + 30
        while True:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "logstore",
                    "serve",
                    self.root,
                    "--listen",
                    f"127.0.0.1:{self.port}",
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stderr is not None
            # Log lines may come first (a restart after SIGKILL logs what recovery cut).
            before: list[str] = []
            line = proc.stderr.readline()
            while line and not line.startswith("listening on "):
                before.append(line)
                line = proc.stderr.readline()
            match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
            if match:
                self.port = int(match.group(1))
                self.proc = proc
                self.startup_log = before  # what it logged before it was ready
                self.stderr = []
                # Drained all along: a full pipe would stall a server that logs.
                self._drain = threading.Thread(
                    target=self.stderr.extend, args=(proc.stderr,), daemon=True
                )
                self._drain.start()
                return self
            rest = "".join(before) + line + proc.communicate(timeout=30)[1]
            # The port of a killed server can take a moment to be free again.
            if "address already in use" not in rest.lower():
                raise AssertionError(f"serve did not start: {rest}")
            if time.monotonic() > deadline:
                raise AssertionError(f"port {self.port} stayed busy: {rest}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no snapshot, no clean markers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._drain.join(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, and the clean exit (status 0, nothing more on stderr) it must give."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self._drain.join(timeout=10)
        code, self.proc = self.proc.returncode, None
        rest = "".join(self.stderr)
        assert (code, rest) == (0, ""), rest


def idempotent_batch(
    producer_id: int,
    epoch: int,
    sequence: int,
    values: list[bytes],
    *,
    timestamp_ms: int | None = None,
) -> bytes:
    """A RecordBatch v2 of ``values`` (keyless) carrying producer id, epoch and base sequence.

    Its records are timestamped from ``timestamp_ms``, by default now: a
    producer's state rebuilt from the log expires by the batches' timestamps.
    """
    base_ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    entries = [(v, None, (), base_ts + i) for i, v in enumerate(values)]  # value first
    section, _, max_ts = encode_section(entries, base_ts)
    return build_batch(
        section,
        base_offset=0,
        record_count=len(values),
        last_offset_delta=len(values) - 1,
        base_timestamp=base_ts,
        max_timestamp=max_ts,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
    )


class RawClient:
    """One connection speaking a few APIs with kio-encoded frames (non-flexible versions)."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self._correlation = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, api_key: int, version: int, body: Any, response_class: Any) -> Any:
        from kio.schema.request_header.v1.header import RequestHeader
        from kio.serial import entity_reader, entity_writer

        self._correlation += 1
        out = io.BytesIO()
        header = RequestHeader(
            request_api_key=api_key,  # type: ignore[arg-type]
            request_api_version=version,  # type: ignore[arg-type]
            correlation_id=self._correlation,  # type: ignore[arg-type]
            client_id="durability-test",
        )
        entity_writer(RequestHeader)(out, header)
        entity_writer(type(body))(out, body)
        data = out.getvalue()
        self.sock.sendall(struct.pack(">i", len(data)) + data)
        frame = self._read_frame()
        assert struct.unpack_from(">i", frame) == (self._correlation,)
        response, _ = entity_reader(response_class)(frame, 4)
        return response

    def _read_frame(self) -> bytes:
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"server closed the connection after {len(data)} bytes")
            data += chunk
        return data[4:]

    def init_producer_id(self) -> tuple[int, int]:
        """InitProducerId v1 (no transactional id): ``(producer id, epoch)``."""
        import datetime

        from kio.schema.init_producer_id.v1.request import InitProducerIdRequest
        from kio.schema.init_producer_id.v1.response import InitProducerIdResponse
        from kio.static.primitive import i32Timedelta

        request = InitProducerIdRequest(
            transactional_id=None,
            transaction_timeout=i32Timedelta.parse(datetime.timedelta(seconds=60)),
        )
        response = self._call(22, 1, request, InitProducerIdResponse)
        assert response.error_code.value == 0, response
        return int(response.producer_id), int(response.producer_epoch)

    def produce(self, topic: str, partition: int, records: bytes) -> tuple[int, int]:
        """Produce v8, ``acks=all``: ``(error code, base offset)`` of the one partition."""
        import datetime

        from kio.schema.produce.v8.request import (
            PartitionProduceData,
            ProduceRequest,
            TopicProduceData,
        )
        from kio.schema.produce.v8.response import ProduceResponse
        from kio.static.primitive import i32Timedelta

        request = ProduceRequest(
            transactional_id=None,
            acks=-1,  # type: ignore[arg-type]
            timeout=i32Timedelta.parse(datetime.timedelta(seconds=30)),
            topic_data=(
                TopicProduceData(
                    name=topic,  # type: ignore[arg-type]
                    partition_data=(
                        PartitionProduceData(index=partition, records=records),  # type: ignore[arg-type]
                    ),
                ),
            ),
        )
        response = self._call(0, 8, request, ProduceResponse)
        [answer] = response.responses[0].partition_responses
        return answer.error_code.value, int(answer.base_offset)

    def end_offset(self, topic: str, partition: int) -> int:
        """ListOffsets v1, latest."""
        from kio.schema.list_offsets.v1.request import (
            ListOffsetsPartition,
            ListOffsetsRequest,
            ListOffsetsTopic,
        )
        from kio.schema.list_offsets.v1.response import ListOffsetsResponse

        request = ListOffsetsRequest(
            replica_id=-1,  # type: ignore[arg-type]
            topics=(
                ListOffsetsTopic(
                    name=topic,  # type: ignore[arg-type]
                    partitions=(ListOffsetsPartition(partition_index=partition, timestamp=-1),),  # type: ignore[arg-type]
                ),
            ),
        )
        response = self._call(2, 1, request, ListOffsetsResponse)
        [answer] = response.topics[0].partitions
        assert answer.error_code.value == 0, answer
        return int(answer.offset)
