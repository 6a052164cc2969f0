"""The server's TLS settings as an ``ssl.SSLContext``: certificate, key, optional client CA.

Owns the choices a listener makes for TLS (TLS 1.2 at least, the server's
certificate chain and key, and, when a client CA file is given, client
certificates required and verified against it: mutual TLS) and the one-line
error when a file cannot be used. Knows nothing of Kafka's protocol.
"""

from __future__ import annotations

import os
import re
import ssl

from ..errors import LogStoreError

__all__ = ["TLSConfigError", "server_context"]


class TLSConfigError(LogStoreError, ValueError):
    """A TLS certificate, key or CA file that cannot be used (the message names it)."""


def server_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str] | None = None,
    client_ca: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A server-side context; ``key`` may be omitted when ``cert`` holds the key too.

    Raises:
        TLSConfigError: a file is missing, unreadable, not PEM, an encrypted key,
            or a key that does not match the certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert_path = os.fspath(cert)
    key_path = os.fspath(key) if key is not None else None
    for what, path in (("certificate", cert_path), ("key", key_path)):
        if path is not None and not os.path.isfile(path):
            raise TLSConfigError(f"TLS {what} {path}: no such file")
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except TLSConfigError:
        raise
    except (ssl.SSLError, OSError) as exc:
        where = f"{cert_path} with key {key_path}" if key_path else cert_path
        raise TLSConfigError(f"TLS certificate {where}: cannot be used: {_reason(exc)}") from None
    if client_ca is not None:
        ca_path = os.fspath(client_ca)
        if not os.path.isfile(ca_path):
            raise TLSConfigError(f"TLS client CA {ca_path}: no such file")
        try:
            context.load_verify_locations(cafile=ca_path)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(
                f"TLS client CA {ca_path}: cannot be used: {_reason(exc)}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _no_password() -> bytes:
    # Without this callback OpenSSL would prompt on the terminal for an encrypted key.
    raise TLSConfigError(
        "an encrypted private key is not supported (store it unencrypted, mode 0600)"
    )


def _reason(exc: BaseException) -> str:
    """OpenSSL's reason without its source location: ``[SSL] PEM lib (_ssl.c:3905)`` → ``PEM lib``."""
    if isinstance(exc, ssl.SSLError):
        text = exc.reason or (exc.args[1] if len(exc.args) > 1 else str(exc))
        return re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(text)).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
