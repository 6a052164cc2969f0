"""``python -m tests.crash [--states N] [--seed S] [WORKLOAD...]``: print the harness's figures.

Traces each workload, recovers up to ``N`` crash states of it (default: the
``make test`` budget) and prints, per workload and in total, the operations
traced, the crash points, the states checked and the violations found (each
one listed). Exit status 1 if any workload that must pass had a violation.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile

import logstore

from .runner import explore, states_per_workload, trace
from .workloads import CORRECT, WORKLOADS


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash")
    parser.add_argument("workloads", nargs="*", help=f"default: {' '.join(CORRECT)}")
    parser.add_argument("--states", type=int, default=None, help="states per workload")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(sorted(unknown))}; known: {', '.join(WORKLOADS)}"
        )
    args.workloads = args.workloads or list(CORRECT)
    logging.disable(logging.CRITICAL)  # recovery's warnings: one per torn tail, thousands
    max_states, per_point, scale = states_per_workload(args.states)
    total_states = total_violations = 0
    failed = False
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.workloads:
            report = explore(
                name,
                trace(name, workdir, scale=scale),
                max_states=max_states,
                per_point=per_point,
                seed=args.seed,
            )
            print(report.line())
            for violation in report.violations:
                print("   ", violation)
            total_states += report.states
            total_violations += len(report.violations)
            failed |= bool(report.violations) and name in CORRECT
    print(
        f"total: {total_states} crash states recovered and checked, "
        f"{total_violations} violations (codec: {logstore.__speedups__})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
