"""The Kafka-protocol server over a ``Broker`` root: ``logstore serve``.

Needs the optional ``kio`` package (Kafka's protocol schemas): ``pip install
'logstore[serve]'``. This module imports nothing of it until a server is
made, so ``import logstore`` works without it and ``serve`` says what to
install. The modules below it see logstore's public names only.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any

from ..errors import LogStoreError
from .users import UsersFileError, add_user, load_users, remove_user

if TYPE_CHECKING:
    from .app import Server

__all__ = [
    "ServeUnavailableError",
    "UsersFileError",
    "add_user",
    "load_serve_settings",
    "load_users",
    "remove_user",
    "serve",
    "serve_async",
]


class ServeUnavailableError(LogStoreError, ImportError):
    """The server's protocol library (``kio``) is not installed."""


def _server_class() -> type[Server]:
    if importlib.util.find_spec("kio") is None:
        raise ServeUnavailableError(
            "logstore serve needs the kio package (Kafka's protocol schemas, Python >= 3.11): "
            "pip install 'logstore[serve]'"
        )
    from .app import Server

    return Server


def serve(
    root: str | os.PathLike[str], *, listen: str = "127.0.0.1:9092", **options: Any
) -> Server:
    """Serve the broker root ``root`` to Kafka clients from a thread of its own.

    Returns once the server listens (``server.address`` has the real port,
    ``listen="127.0.0.1:0"`` takes a free one); ``server.close()`` or leaving
    its ``with`` block stops it and closes every log cleanly. ``options``:
    ``advertise`` (``HOST:PORT`` clients are told to connect to), ``config``
    (the broker's default ``LogConfig``), ``max_request_bytes``,
    ``auto_create_topics`` (a Metadata or Produce request creates an unknown
    topic, off by default as in Kafka 4), ``default_partitions`` (its
    partitions, and those of a CreateTopics without a count; default 1),
    ``max_connections`` (more are closed at once,
    default 1000), ``max_buffered_bytes`` (a connection's unsent answers
    above which its next request is not read, default 1 MiB),
    ``shutdown_grace_s`` (how long a stop waits for requests being served
    to be answered, default 10), ``keep_freed_memory`` (glibc keeps freed
    buffers for reuse, so a fetch's MBs cost no page fault per 4 KiB; it
    sets the whole process's malloc thresholds, so it is off unless asked;
    ``logstore serve`` turns it on), ``group_min_session_timeout_ms`` and
    ``group_max_session_timeout_ms`` (a JoinGroup asking for a session
    timeout outside is refused with INVALID_SESSION_TIMEOUT; Kafka's 6 s and
    30 min by default), ``producer_id_expiration_ms`` (Kafka's
    ``producer.id.expiration.ms``, default one day: an idempotent producer
    whose last batch on a partition is older is forgotten there, in memory
    and in ``ROOT/serve-producer-state``; its next batch is then taken as a
    new producer's, appended whatever its sequence, so a retry of a batch
    from before the expiry is appended again, as in Kafka; a producer's time
    is its last append, or for batches rebuilt from the log their max
    timestamp). Security: ``tls_cert`` and ``tls_key``
    (PEM files: TLS 1.2 or later on every connection), ``tls_client_ca``
    (a CA file: client certificates required and verified against it),
    ``sasl_users`` (a users file, see ``logstore users add``: every
    connection must authenticate) and ``sasl_mechanisms`` (``PLAIN`` and
    ``SCRAM-SHA-256`` by default).

    Raises:
        LogLockedError: another process serves or opened the root.
        ServeUnavailableError: ``kio`` is not installed.
        OSError: the address cannot be listened on, or the users file cannot be read.
        TLSConfigError: a certificate, key or CA file cannot be used.
        UsersFileError: a line of the users file is malformed (the message names it).
    """
    server = _server_class()(root, listen=listen, **options)
    server.start_in_thread()
    return server


async def serve_async(
    root: str | os.PathLike[str], *, listen: str = "127.0.0.1:9092", **options: Any
) -> Server:
    """``serve`` on the running event loop: ``await server.aclose()`` (or ``async with``) ends it."""
    server = _server_class()(root, listen=listen, **options)
    await server.start()
    return server


def load_serve_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The options a server settings file (TOML) gives, for ``serve(root, **options)``.

    Top-level keys are ``serve``'s options (``listen``, ``advertise``,
    ``auto_create_topics``, ``default_partitions``, ``max_request_bytes``,
    ``max_connections``, ``max_buffered_bytes``, ``shutdown_grace_s``, and any
    the server takes besides); the ``[topic_defaults]`` table holds
    ``LogConfig`` fields and becomes ``config``, the broker's defaults.

    Raises:
        ConfigError: not TOML, an unknown key, or a value of the wrong kind;
            the message names the file and the key.
        OSError: the file cannot be read.
        ServeUnavailableError: ``kio`` is not installed.
    """
    from .settings import load

    return load(path, _server_class())
