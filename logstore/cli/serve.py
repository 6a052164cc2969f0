"""``logstore serve``: a broker root served to Kafka clients until SIGTERM or SIGINT.

``--config FILE`` gives the server's options (``logstore.load_serve_settings``);
a flag given on the command line overrides the file's value.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import sys
from typing import Any

import click

import logstore

from . import common

_FILE = click.Path(exists=True, dir_okay=False)


async def _run(root: str, options: dict[str, Any]) -> None:
    # This process is the server's own: freed buffers kept for reuse (logstore.server.memory).
    server = await logstore.serve_async(root, **{"keep_freed_memory": True, **options})
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
    "--config",
    "config_file",
    default=None,
    metavar="FILE",
    help="A TOML file of server options and a [topic_defaults] table (see the README).",
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
def serve(
    root: str,
    listen: str,
    advertise: str | None,
    config_file: str | None,
    insecure: bool,
    **security: Any,
) -> None:
    """Serve the broker root ROOT over Kafka's protocol to any Kafka client.

    Prints `listening on HOST:PORT` on stderr once ready; SIGTERM or SIGINT
    stops it, every log closed cleanly.
    """
    options = _file_options(config_file) if config_file else {}
    ctx = click.get_current_context()
    flags = {"listen": listen, "advertise": advertise, **security}
    for name, value in flags.items():  # a flag given on the command line wins over the file
        if (
            name not in options
            or ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT
        ):
            options[name] = value
    listen = options["listen"]
    host = listen.rpartition(":")[0].strip("[]") if ":" in listen else listen
    secured = options["tls_cert"] is not None or options["sasl_users"] is not None
    if not insecure and not secured and not _loopback(host):
        raise click.UsageError(
            f"--listen {listen} is not a loopback address: without TLS or SASL "
            "anyone who reaches it can read and write every topic; pass --insecure to allow it"
        )
    asyncio.run(_run(root, options))


def _file_options(path: str) -> dict[str, Any]:
    """The file's options; a file that cannot be used is a usage error (one line, exit 2)."""
    try:
        return logstore.load_serve_settings(path)
    except (logstore.ConfigError, OSError) as exc:
        click.echo(f"logstore: {common.describe(exc)}", err=True)
        sys.exit(2)


def _loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name counts only if it is localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
