"""Imports point down the layering table of the style guide, never up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "logstore"

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "model": {"_native"},
    "config": {"errors", "compression"},
    "_varint": {"errors"},
    "compression": {"errors"},
    "batchheader": {"errors"},
    "recordcodec": {"batchheader", "_varint", "model", "errors", "_native"},
    "batch": {
        "batchheader",
        "recordcodec",
        "_varint",
        "compression",
        "model",
        "errors",
        "_native",
    },
    "_native": {"errors", "_speedups"},
    "index": {"_fs", "errors"},
    "_fs": {"errors"},
    "_dirkind": {"checkpoints", "_fs", "errors"},
    "checkpoints": {"_fs", "errors"},
    "configrecord": {"config", "_fs", "errors"},
    "rangecrc": {"batch"},
    "batchfile": {"batch", "rangecrc", "_fs", "errors", "_native"},
    "segmentscan": {"batchfile", "index", "errors", "_varint"},
    "segmentlookup": {"batchfile", "batch", "index", "errors"},
    "segment": {
        "segmentlookup",
        "segmentscan",
        "batchfile",
        "batch",
        "index",
        "_fs",
        "errors",
        "_varint",
    },
    "segments": {"segment", "_fs", "errors"},
    "indexcheck": {"segment", "index", "errors"},
    "loader": {"segment", "batchfile", "indexcheck", "checkpoints", "_fs", "config", "errors"},
    "local": {
        "segments",
        "segment",
        "loader",
        "validator",
        "checkpoints",
        "batch",
        "_fs",
        "config",
        "model",
        "errors",
        "compression",
    },
    "opener": {
        "local",
        "segments",
        "loader",
        "checkpoints",
        "configrecord",
        "_dirkind",
        "_fs",
        "config",
        "errors",
    },
    "cleaner": {
        "local",
        "segment",
        "transactions",
        "batch",
        "_fs",
        "config",
        "model",
        "errors",
        "_varint",
        "compression",
    },
    "retention": {"local", "segment", "model", "config", "errors"},
    "validator": {"batch", "config", "model", "errors"},
    "transactions": {"batch", "segment", "errors"},
    "fileranges": {"_fs"},
    "reader": {"batch", "batchfile", "fileranges", "segment", "transactions", "model", "errors"},
    "housekeeping": {"cleaner", "retention", "local", "maintenance", "segment", "model", "errors"},
    "accumulator": {"_native", "model"},
    "producer": {"accumulator", "validator", "compression", "_fs", "config", "model", "errors"},
    "log": {
        "producer",
        "configrecord",
        "housekeeping",
        "maintenance",
        "local",
        "opener",
        "validator",
        "reader",
        "fileranges",
        "transactions",
        "loader",
        "_fs",
        "config",
        "model",
        "errors",
    },
    "maintenance": set(),
    "partitioner": {"_native"},
    "_offsets": set(),
    "consumer": {"log", "_fs", "model", "errors", "_offsets", "_native"},
    "limits": {"errors"},
    "recoverypool": {"errors"},
    "broker": {
        "limits",
        "recoverypool",
        "producer",
        "maintenance",
        "log",
        "consumer",
        "partitioner",
        "config",
        "model",
        "errors",
        "_offsets",
        "_fs",
        "_dirkind",
        "checkpoints",
        "loader",
        "topic",
        "topicmeta",
    },
    "topic": {"log", "partitioner", "config", "errors"},
    "topicmeta": {"_offsets", "_dirkind", "_fs", "checkpoints", "config", "errors"},
    "inspection": {
        "indexcheck",
        "batchfile",
        "checkpoints",
        "segment",
        "index",
        "batch",
        "errors",
        "_fs",
        "compression",
        "model",
        "_offsets",
    },
    # The Kafka-protocol server: logstore's public names only (and errors, for the
    # one error its package defines before kio is imported; _fs's atomic_write for
    # the server's own files, its producer state and the users file).
    "server": {"errors", "server.app", "server.settings", "server.users"},
    "server.settings": {"__init__"},
    "server.scram": set(),
    "server.users": {"_fs", "errors", "server.scram"},
    "server.tls": {"errors"},
    "server.sasl": {"server.codec", "server.scram", "server.state"},
    "server.codec": set(),
    "server.memory": set(),
    "server.state": {"__init__", "server.groups", "server.producers"},
    "server.producers": {"__init__", "_fs"},
    "server.producers_api": {"server.codec", "server.state"},
    "server.produce": {
        "__init__",
        "server.codec",
        "server.producers",
        "server.state",
        "server.topics",
    },
    "server.fetch": {"__init__", "server.codec", "server.state"},
    "server.offsets": {"__init__", "server.codec", "server.state"},
    "server.topics": {"__init__", "server.codec", "server.configs", "server.state"},
    "server.configs": {"__init__"},
    "server.configapi": {"__init__", "server.codec", "server.configs", "server.state"},
    "server.groups": {"__init__", "server.codec"},
    "server.groupapi": {"__init__", "server.codec", "server.state"},
    "server.apis": {
        "server.codec",
        "server.configapi",
        "server.fetch",
        "server.groupapi",
        "server.offsets",
        "server.produce",
        "server.producers_api",
        "server.sasl",
        "server.state",
        "server.topics",
    },
    "server.connection": {"__init__", "server.apis", "server.codec", "server.sasl", "server.state"},
    "server.app": {
        "__init__",
        "server.connection",
        "server.groups",
        "server.memory",
        "server.producers",
        "server.sasl",
        "server.state",
        "server.tls",
        "server.users",
    },
    "diagnostics": {"inspection", "_dirkind", "checkpoints", "errors", "_fs"},
    # Onto a Kafka cluster: the client's side, and the copy at the broker layer.
    "kafkacluster": {"errors"},
    "mirrorposition": {"log", "model", "errors"},
    "mirror": {"broker", "consumer", "kafkacluster", "mirrorposition", "topic", "model", "errors"},
    # The command line: a package whose modules see the public names of logstore only.
    "cli": {
        "__init__",
        "cli.common",
        "cli.inspect",
        "cli.verify",
        "cli.recover",
        "cli.compact",
        "cli.produce",
        "cli.consume",
        "cli.mirror",
        "cli.serve",
        "cli.config",
        "cli.users",
    },
    "cli.common": {"__init__"},
    "cli.inspect": {"__init__", "cli.common"},
    "cli.verify": {"__init__", "cli.common"},
    "cli.recover": {"__init__", "cli.common"},
    "cli.compact": {"__init__", "cli.common"},
    "cli.lines": set(),
    "cli.produce": {"__init__", "cli.common", "cli.lines"},
    "cli.consume": {"__init__", "cli.common"},
    "cli.mirror": {"__init__", "cli.common"},
    "cli.serve": {"__init__", "cli.common"},
    "cli.config": {"__init__", "cli.common"},
    # The users file of `serve --sasl-users`: the server package's public names.
    "cli.users": {"cli.common", "server"},
    "__main__": {"cli"},
}


def _module(path: Path) -> str:
    """The table's name of a module: ``log``, ``cli`` (a package), ``cli.inspect``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """The modules of logstore that ``path`` imports, by their names in the table.

    ``from X import name`` counts ``X.name`` when that is a module, else ``X``.
    """
    name = _module(path)
    # The package a relative import starts from (parts below logstore).
    package = [] if name == "__init__" else name.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    known = set(ALLOWED).union(*ALLOWED.values())  # every module, ``_speedups`` (C) too

    def add(parts: list[str], names: list[str]) -> None:
        submodules = {".".join([*parts, n]) for n in names} & known
        found.update(submodules)
        if len(submodules) < len(names):  # some names are defined in the module itself
            found.add(".".join(parts) or "__init__")

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level:
                parts = package[: len(package) - (node.level - 1)]
                add([*parts, *(node.module.split(".") if node.module else [])], names)
            elif node.module and node.module.split(".")[0] == "logstore":
                add(node.module.split(".")[1:], names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "logstore":
                    found.add(".".join(parts[1:]) or "__init__")
    return found


def test_every_module_is_in_the_table() -> None:
    modules = set(_modules()) - {"__init__"}
    assert modules <= set(ALLOWED), modules - set(ALLOWED)


def test_imports_follow_the_layering() -> None:
    for name, path in _modules().items():
        if name == "__init__":
            continue
        used = _imports(path) - {name}
        if name == "cli" or name.startswith("cli."):
            # The CLI sees the package's public names only (diagnostics and mirror are exported).
            used -= {"diagnostics", "mirror"}
        assert used <= ALLOWED[name], (
            f"{path.relative_to(PACKAGE)} imports {sorted(used - ALLOWED[name])}"
        )


def test_modules_stay_small() -> None:
    """The style guide's sizes: ``log.py`` (thin) under 500 lines, no module over 600."""
    lines = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert lines["log"] < 500, lines["log"]
    assert {name: n for name, n in lines.items() if n > 600} == {}
