"""Prints the power-loss harness's figures at the end of a pytest run."""

from __future__ import annotations

from typing import Any

import logstore

from .runner import REPORTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("power-loss crash states")
    for report in REPORTS:
        write(report.line())
    correct = [r for r in REPORTS if not r.workload.startswith(("unsynced_", "new_"))]
    write(
        f"total: {sum(r.states for r in correct)} crash states recovered and checked, "
        f"{sum(len(r.violations) for r in correct)} violations "
        f"(codec: {logstore.__speedups__})"
    )
