"""``Server``: a broker root served over Kafka's protocol, on an asyncio loop.

Owns the listening socket, the connections' tasks, the order of starting
(open the root, then listen: a root another process holds fails before any
port is taken) and of stopping (stop accepting, end the connections, then
close the broker so every log gets its clean-shutdown marker), the
thread a synchronous caller's server runs its loop in, and a connection's
TLS handshake (its failure costs that connection only, with a log line).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
import threading
import uuid
from types import TracebackType
from typing import Any

from .. import Broker, ConfigError, LogConfig
from .connection import Connection, serve_connection
from .groups import MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS, Groups
from .memory import reuse_freed_memory
from .producers import EXPIRATION_MS, Producers
from .sasl import MECHANISMS, SaslSettings, parse_mechanisms
from .state import ServerState
from .tls import server_context
from .users import load_users

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 100 << 20
MAX_BUFFERED_BYTES = 1 << 20
MAX_CONNECTIONS = 1000
SHUTDOWN_GRACE_S = 10.0
TLS_HANDSHAKE_TIMEOUT_S = 10.0


def parse_address(text: str, *, default_port: int = 9092) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a pair.

    Raises:
        ValueError: no host, or a port that is not in 0..65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port_text)


class Server:
    """A broker root served to Kafka clients.

    ``await start()`` and ``await aclose()`` on a running loop; or, from
    synchronous code, ``logstore.serve`` (a loop in a thread of its own) and
    ``close()``; either way usable as a context manager.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        listen: str = "127.0.0.1:9092",
        advertise: str | None = None,
        config: LogConfig | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        auto_create_topics: bool = False,
        default_partitions: int = 1,
        max_connections: int = MAX_CONNECTIONS,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
        keep_freed_memory: bool = False,
        group_min_session_timeout_ms: int = MIN_SESSION_TIMEOUT_MS,
        group_max_session_timeout_ms: int = MAX_SESSION_TIMEOUT_MS,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_client_ca: str | os.PathLike[str] | None = None,
        sasl_users: str | os.PathLike[str] | None = None,
        sasl_mechanisms: str | tuple[str, ...] | list[str] = MECHANISMS,
        producer_id_expiration_ms: int = EXPIRATION_MS,
        max_topics: int | None = None,
        max_groups: int | None = None,
        recovery_threads: int | None = None,
    ) -> None:
        self.root = os.fspath(root)
        self._listen = parse_address(listen)
        self._advertise = parse_address(advertise) if advertise else None
        self._config = config
        #: Store limits, checked by ``Broker.open`` (see ``logstore.limits``).
        self._limits = (max_topics, max_groups)
        #: Partitions opened at once (``None``: ``Broker.open``'s default); checked there.
        self._recovery_threads = recovery_threads
        self._max_request_bytes = max_request_bytes
        self._auto_create_topics = auto_create_topics
        if type(default_partitions) is not int or default_partitions < 1:
            raise ConfigError(f"default_partitions must be an int >= 1, got {default_partitions!r}")
        self._default_partitions = default_partitions
        self._max_connections = max_connections
        self._max_buffered_bytes = max_buffered_bytes
        self._shutdown_grace_s = shutdown_grace_s
        # Process-wide (glibc's malloc thresholds): the command's own process turns it on;
        # an application embedding the server decides for itself.
        self._keep_freed_memory = keep_freed_memory
        if not 0 <= group_min_session_timeout_ms <= group_max_session_timeout_ms:
            raise ConfigError(
                "expected 0 <= group_min_session_timeout_ms <= group_max_session_timeout_ms, got "
                f"{group_min_session_timeout_ms!r} and {group_max_session_timeout_ms!r}"
            )
        self._session_timeout_range = (group_min_session_timeout_ms, group_max_session_timeout_ms)
        if type(producer_id_expiration_ms) is not int or producer_id_expiration_ms < 1:
            raise ConfigError(
                f"producer_id_expiration_ms must be an int >= 1, got {producer_id_expiration_ms!r}"
            )
        self._producer_id_expiration_ms = producer_id_expiration_ms
        # Security settings are checked here, before the root is opened or a port taken.
        if (tls_key is not None or tls_client_ca is not None) and tls_cert is None:
            raise ValueError(
                "a TLS key or client CA needs a TLS certificate (tls_cert, --tls-cert)"
            )
        self._tls: ssl.SSLContext | None = (
            server_context(tls_cert, tls_key, tls_client_ca) if tls_cert is not None else None
        )
        mechanisms = parse_mechanisms(sasl_mechanisms)
        if sasl_users is None and mechanisms != MECHANISMS:
            raise ValueError("sasl_mechanisms needs sasl_users (the users file)")
        self._sasl: SaslSettings | None = (
            SaslSettings(load_users(sasl_users), mechanisms) if sasl_users is not None else None
        )
        self._server: asyncio.Server | None = None
        self._state: ServerState | None = None
        self._connections: dict[asyncio.Task[None], Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        #: Where the server listens, once started: ``(host, port)`` with the real port.
        self.address: tuple[str, int] | None = None

    # ------------------------------------------------------------ on a running loop

    async def start(self) -> None:
        """Open the root (``LogLockedError`` if another process holds it), then listen."""
        if self._keep_freed_memory:
            reuse_freed_memory()  # a fetch's MBs without a page fault per 4 KiB (see memory)
        max_topics, max_groups = self._limits
        options: dict[str, Any] = {"max_topics": max_topics, "max_groups": max_groups}
        if self._recovery_threads is not None:
            options["recovery_threads"] = self._recovery_threads
        broker = await asyncio.to_thread(Broker.open, self.root, self._config, **options)
        try:
            self._server = await asyncio.start_server(self._accept, *self._listen)
        except BaseException:
            await asyncio.to_thread(broker.close)
            raise
        port = self._server.sockets[0].getsockname()[1]
        self.address = (self._listen[0], port)
        advertised = self._advertise or (self._listen[0], port)
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        low, high = self._session_timeout_range
        groups = Groups(broker, min_session_timeout_ms=low, max_session_timeout_ms=high)
        producers = await asyncio.to_thread(
            Producers.open, broker, self.root, expiration_ms=self._producer_id_expiration_ms
        )
        self._state = ServerState(
            broker=broker,
            host=advertised[0],
            port=advertised[1] or port,
            cluster_id=_cluster_id(self.root),
            groups=groups,
            producers=producers,
            auto_create_topics=self._auto_create_topics,
            default_partitions=self._default_partitions,
            sasl_mechanisms=self._sasl.mechanisms if self._sasl else (),
        )
        groups.start()
        logger.info("%s served on %s:%d", self.root, *self.address)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._state is not None
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self._max_connections:
            # Kafka's protocol has no "too many connections" answer: close, and say so here.
            logger.warning(
                "%s: %d connections open (max_connections): connection refused",
                writer.get_extra_info("peername"),
                len(self._connections),
            )
            writer.close()
            return
        conn = Connection(sasl=self._sasl)
        self._connections[task] = conn
        try:
            if self._tls is not None and not await self._start_tls(writer):
                return
            await serve_connection(
                self._state,
                reader,
                writer,
                max_request_bytes=self._max_request_bytes,
                max_buffered_bytes=self._max_buffered_bytes,
                connection=conn,
            )
        finally:
            self._connections.pop(task, None)

    async def _start_tls(self, writer: asyncio.StreamWriter) -> bool:
        """TLS on an accepted connection; ``False`` (and a log line) when the handshake fails."""
        assert self._tls is not None
        peer = writer.get_extra_info("peername")
        try:
            if sys.version_info >= (3, 11):
                await writer.start_tls(self._tls, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
            else:  # pragma: no cover - kio, hence the server, needs Python 3.11
                raise RuntimeError("TLS for logstore serve needs Python >= 3.11")
        except (ssl.SSLError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            logger.warning("%s: TLS handshake failed: %s: connection closed", peer, reason)
            writer.transport.abort()
            return False
        logger.debug("%s: TLS, client certificate %s", peer, writer.get_extra_info("peercert"))
        return True

    async def wait_closed(self) -> None:
        """Return when the server was closed (by ``aclose`` from any task)."""
        assert self._stopped is not None, "start() first"
        await self._stopped.wait()

    async def aclose(self) -> None:
        """Stop accepting, end every connection, close the broker (clean markers); idempotent."""
        if self._server is None or self._state is None:
            return
        server, state, self._server = self._server, self._state, None
        server.close()
        # Idle connections end now; a request being served is answered first
        # (within the grace, after which its connection is cut too).
        for task, conn in list(self._connections.items()):
            conn.stopping = True
            if not conn.busy:
                task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=self._shutdown_grace_s)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1)
        state.groups.stop()
        await asyncio.to_thread(state.producers.close)
        await asyncio.to_thread(state.broker.close)
        assert self._stopped is not None
        self._stopped.set()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ in a thread of its own

    def start_in_thread(self) -> None:
        """Run the server's loop in a daemon thread; return once it listens (or raise why not)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                ready.set()
            await self.wait_closed()

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), name=f"logstore-serve-{self.root}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    def close(self) -> None:
        """Stop a server started with ``start_in_thread``; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result()
        thread.join()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"{self.address[0]}:{self.address[1]}" if self.address else "not started"
        return f"<logstore.server.Server {self.root} {where}>"


def _cluster_id(root: str) -> str:
    """A cluster id stable for one root path (clients compare it between connections)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "logstore:" + os.path.abspath(root)))
