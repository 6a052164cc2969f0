"""``logstore serve``: a broker root served to Kafka clients until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import ipaddress
import signal

import click

import logstore

from . import common


async def _run(root: str, listen: str, advertise: str | None) -> None:
    server = await logstore.serve_async(root, listen=listen, advertise=advertise)
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
@common.one_line_errors
def serve(root: str, listen: str, advertise: str | None, insecure: bool) -> None:
    """Serve the broker root ROOT over Kafka's protocol to any Kafka client.

    Prints `listening on HOST:PORT` on stderr once ready; SIGTERM or SIGINT
    stops it, every log closed cleanly.
    """
    host = listen.rpartition(":")[0].strip("[]") if ":" in listen else listen
    if not insecure and not _loopback(host):
        raise click.UsageError(
            f"--listen {listen} is not a loopback address: without TLS or SASL "
            "anyone who reaches it can read and write every topic; pass --insecure to allow it"
        )
    asyncio.run(_run(root, listen, advertise))


def _loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name counts only if it is localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
