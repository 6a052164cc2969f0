"""``logstore serve``: a broker root served to Kafka clients until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from typing import Any

import click

import logstore

from . import common

_FILE = click.Path(exists=True, dir_okay=False)


async def _run(root: str, listen: str, advertise: str | None, **security: Any) -> None:
    server = await logstore.serve_async(root, listen=listen, advertise=advertise, **security)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    assert server.address is not None
    host, port = server.address
    click.echo(f"listening on {host}:{port}", err=True)
    try:
        await stop.wait()
    finally:
        await server.aclose()


@click.command()
@click.argument("root", type=click.Path(file_okay=False))
@click.option(
    "--listen",
    default="127.0.0.1:9092",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen; port 0 takes a free one.",
)
@click.option(
    "--advertise",
    default=None,
    metavar="HOST:PORT",
    help="The address clients are told to connect to (default: the listening one).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback --listen address without TLS or SASL (clients unauthenticated).",
)
@click.option(
    "--tls-cert",
    type=_FILE,
    default=None,
    help="The server's certificate (PEM; with its chain): every connection uses TLS >= 1.2.",
)
@click.option("--tls-key", type=_FILE, default=None, help="The certificate's private key (PEM).")
@click.option(
    "--tls-client-ca",
    type=_FILE,
    default=None,
    help="CA certificates (PEM): clients must present a certificate they signed (mutual TLS).",
)
@click.option(
    "--sasl-users",
    type=_FILE,
    default=None,
    help="The users file (see `logstore users add`): clients must authenticate with SASL.",
)
@click.option(
    "--sasl-mechanisms",
    default="PLAIN,SCRAM-SHA-256",
    show_default=True,
    metavar="LIST",
    help="The SASL mechanisms offered, comma-separated.",
)
@common.one_line_errors
def serve(root: str, listen: str, advertise: str | None, insecure: bool, **security: Any) -> None:
    """Serve the broker root ROOT over Kafka's protocol to any Kafka client.

    Prints `listening on HOST:PORT` on stderr once ready; SIGTERM or SIGINT
    stops it, every log closed cleanly.
    """
    host = listen.rpartition(":")[0].strip("[]") if ":" in listen else listen
    secured = security["tls_cert"] is not None or security["sasl_users"] is not None
    if not insecure and not secured and not _loopback(host):
        raise click.UsageError(
            f"--listen {listen} is not a loopback address: without TLS or SASL "
            "anyone who reaches it can read and write every topic; pass --insecure to allow it"
        )
    asyncio.run(_run(root, listen, advertise, **security))


def _loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name counts only if it is localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
