"""A second logstore, built from an earlier revision, measured beside this tree in one run.

``bench/run.py --baseline REV`` installs the package as it was at git revision
``REV`` (the compiled codec built) into ``bench/work/baseline-<sha>/``, and
registers two more engines, ``logstore@REV`` and ``logstore-pure@REV``, whose
child processes import that copy (``PYTHONPATH``) and prove it
(``logstore.__file__``). They run the same workloads in the same interleaved
repeats as this tree's engines, so a change's cost is a ratio from one run on
one machine, not a comparison of two runs on a shared, noisy one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from engines import ENGINES, Engine, LogstoreEngine, LogstorePureEngine

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
#: Set in a baseline engine's children: ``REV=DIRECTORY``, so they register it too.
ENV = "LOGSTORE_BENCH_BASELINE"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", ROOT, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def install(rev: str) -> str:
    """Install the package at ``rev`` into its own directory (once); return the directory."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    target = os.path.join(WORK, f"baseline-{sha[:12]}")
    if os.path.exists(os.path.join(target, ".complete")):
        return target
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="logstore-baseline-src-") as src:
        archive = subprocess.run(
            ["git", "-C", ROOT, "archive", sha], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                target,
                src,
            ],
            check=True,
        )
    with open(os.path.join(target, ".complete"), "w", encoding="utf-8") as f:
        f.write(sha + "\n")
    return target


def register(rev: str, directory: str) -> list[str]:
    """Register ``logstore@rev`` and ``logstore-pure@rev`` reading ``directory``; return names."""
    names = []
    for base in (LogstoreEngine, LogstorePureEngine):
        name = f"{base.name}@{rev}"
        if name not in ENGINES:
            attrs: dict[str, Any] = {
                "name": name,
                "label": f"{base.label} @{rev}",
                "env": {**base.env, "PYTHONPATH": directory, ENV: f"{rev}={directory}"},
                "baseline_directory": directory,
            }
            ENGINES[name] = type(f"Baseline{base.__name__}", (base,), attrs)
        names.append(name)
    return names


def register_from_environment() -> None:
    """In a child process: register the baseline engines the parent registered."""
    value = os.environ.get(ENV)
    if value:
        rev, _, directory = value.partition("=")
        register(rev, directory)


def check_origin(engine: type[Engine[Any]]) -> None:
    """Fail unless a logstore child imported the copy its engine is meant to measure."""
    if not issubclass(engine, LogstoreEngine):
        return
    import logstore

    origin = os.path.realpath(logstore.__file__)
    wanted: str | None = getattr(engine, "baseline_directory", None)
    inside = wanted is not None and origin.startswith(os.path.realpath(wanted) + os.sep)
    if (wanted is not None) != inside:
        raise RuntimeError(f"{engine.name}: imported logstore from {origin}")


EXTRAS = """
import json, sys
import broker, compaction, recovery
quick, records = sys.argv[1] == "quick", int(sys.argv[2])
lines = [*recovery.run(quick=quick), "", *compaction.run(), "", *broker.run(records)]
print(json.dumps(lines))
"""


def extras(directory: str, *, quick: bool, records: int) -> list[str]:
    """The recovery, compaction and broker sections, run with the baseline's package."""
    env = {k: v for k, v in os.environ.items() if k != "LOGSTORE_PURE"}
    env["PYTHONPATH"] = directory
    proc = subprocess.run(
        [sys.executable, "-c", EXTRAS, "quick" if quick else "full", str(records)],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"baseline extras failed (exit {proc.returncode}):\n{proc.stderr}")
    lines: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return lines
