"""Imports point down the layering table of the style guide, never up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "logstore"

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "model": set(),
    "config": {"errors", "compression"},
    "_varint": {"errors"},
    "compression": {"errors"},
    "batch": {"_varint", "compression", "model", "errors", "_native"},
    "_native": {"errors", "model", "_speedups"},
    "index": {"_fs", "errors"},
    "_fs": {"errors"},
    "_dirkind": {"checkpoints", "_fs", "errors"},
    "checkpoints": {"_fs", "errors"},
    "batchfile": {"batch", "_fs", "errors"},
    "segment": {"batchfile", "batch", "index", "_fs", "errors", "_varint"},
    "segments": {"segment", "_fs", "errors"},
    "indexcheck": {"segment", "index", "errors"},
    "loader": {"segment", "indexcheck", "checkpoints", "_fs", "config", "errors"},
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
    "opener": {"local", "segments", "loader", "_dirkind", "_fs", "config", "errors"},
    "cleaner": {
        "local",
        "segment",
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
    "reader": {"batch", "segment", "model", "errors"},
    "housekeeping": {"cleaner", "retention", "local", "maintenance", "segment", "model", "errors"},
    "log": {
        "housekeeping",
        "maintenance",
        "local",
        "opener",
        "validator",
        "reader",
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
    "broker": {
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
    },
    "diagnostics": {
        "_dirkind",
        "indexcheck",
        "checkpoints",
        "loader",
        "segment",
        "index",
        "batch",
        "errors",
        "_fs",
        "compression",
        "model",
        "_offsets",
    },
    "cli": {"__init__"},
    "__main__": {"cli"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "logstore":
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
                if len(parts) == 1:
                    found.update(alias.name for alias in node.names if alias.name in ALLOWED)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "logstore":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def test_every_module_is_in_the_table() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= set(ALLOWED), modules - set(ALLOWED)


def test_imports_follow_the_layering() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        used = _imports(path) - {path.stem}
        if path.stem == "cli":
            # The CLI sees the package's public names only (diagnostics is exported).
            used -= {"diagnostics"}
        assert used <= ALLOWED[path.stem], (
            f"{path.name} imports {sorted(used - ALLOWED[path.stem])}"
        )
