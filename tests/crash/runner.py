"""Trace a workload in a child, then build, recover and check its crash states."""

from __future__ import annotations

import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .check import check_state, operations
from .model import Op, annotate, crash_states, digest, materialise, replay, tree

REPO = Path(__file__).resolve().parent.parent.parent


def trace(workload: str, workdir: str, *, scale: int = 1) -> list[Op]:
    """Run ``workload`` in a child interpreter under the tracer; its annotated trace.

    ``scale`` multiplies the workload's appends (``LOGSTORE_CRASH_SCALE``).
    """
    root = os.path.join(workdir, f"trace-{workload}")
    os.makedirs(root)
    out = os.path.join(workdir, f"trace-{workload}.pickle")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("LOGSTORE_CRASH_AT", None)
    env["LOGSTORE_CRASH_SCALE"] = str(scale)
    child = subprocess.run(
        [sys.executable, "-m", "tests.crash.tracer", workload, root, out],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    if child.returncode != 0:
        raise AssertionError(f"workload {workload} failed in the tracer:\n{child.stderr}")
    with open(out, "rb") as f:
        events = pickle.load(f)
    shutil.rmtree(root)
    return annotate(events)


@dataclass
class Report:
    workload: str
    operations: int = 0
    crash_points: int = 0
    states: int = 0  # distinct states recovered and checked
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.workload}: {self.operations} operations, {self.crash_points} crash points, "
            f"{self.states} states, {len(self.violations)} violations"
        )


#: Crash states per workload in ``make test``; LOGSTORE_CRASH_STATES sets the total for a
#: longer run (for example 50000), spread over the workloads that must pass.
DEFAULT_STATES = 600
WORKLOAD_COUNT = 7


def states_per_workload(override: int | None = None) -> tuple[int, int, int]:
    """``(max_states, per_point, scale)`` for each workload, from the environment or
    ``override``: a larger budget draws more variants at each crash point and, as
    the distinct states of a short trace run out, makes the traces longer."""
    if override is None:
        total = os.environ.get("LOGSTORE_CRASH_STATES")
        override = DEFAULT_STATES if total is None else max(int(total) // WORKLOAD_COUNT, 10)
    if override <= DEFAULT_STATES:
        return override, 12, 1
    return override, min(12 * override // DEFAULT_STATES, 400), min(override // 1500 + 1, 8)


#: Every report ``explore`` made in this process (the pytest summary prints them).
REPORTS: list[Report] = []


def scratch_dir() -> str:
    """A parent for materialised states: tmpfs when there is one (thousands of tiny trees)."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="logstore-crash-", dir=base)


def explore(
    workload: str, ops: list[Op], *, max_states: int, per_point: int = 12, seed: int = 0
) -> Report:
    """Recover and check up to ``max_states`` distinct crash states of a trace.

    States are drawn at every crash point (``per_point`` at most each), then, if
    there are more than ``max_states``, a fixed-seed sample of them is checked.
    """
    report = Report(workload, operations=sum(op[0] != "mark" for op in ops))
    candidates = list(crash_states(ops, per_point=per_point, seed=seed))
    report.crash_points = len({s.point for s in candidates})
    # The systematic states first (nothing unsynced kept, one file or directory
    # losing its unsynced operations, everything kept), then random combinations,
    # each group in a fixed-seed order; distinct states are checked up to the budget.
    rng = random.Random(seed)
    order = {"nothing unsynced kept": 0, "all kept": 2, "random": 3}
    candidates.sort(key=lambda s: (order.get(s.label, 1), rng.random()))
    markers_before = _markers_before(ops)
    history = operations(ops)
    seen: set[tuple[bytes, int]] = set()
    base = scratch_dir()
    try:
        for n, state in enumerate(candidates):
            if report.states >= max_states:
                break
            paths = tree(replay(ops, state))
            key = (digest(paths), markers_before[state.point])
            if key in seen:
                continue
            seen.add(key)
            target = os.path.join(base, f"s{n}")
            os.mkdir(target)
            materialise(paths, target)
            problems = check_state(workload, target, history, state.point)
            report.states += 1
            if problems:
                report.violations.append(
                    f"crash after op {state.point} ({state.label}; dropped "
                    f"{sorted(state.dropped)[:8]}{'...' if len(state.dropped) > 8 else ''}, "
                    f"torn {state.torn}): {'; '.join(problems[:3])}"
                )
            shutil.rmtree(target)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    REPORTS.append(report)
    return report


def _markers_before(ops: list[Op]) -> list[int]:
    counts, n = [], 0
    for op in ops:
        counts.append(n)
        n += op[0] == "mark"
    counts.append(n)
    return counts
