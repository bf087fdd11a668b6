"""Job functions for the raw RQ rows of ``bench_dispatch.py`` (RQ workers import them by name).

Each runs a command as a child process, as a trainyard worker does for a task, so both sides
pay for the same process start.
"""

from __future__ import annotations

import subprocess
import time


def run_stamp(argv: list[str]) -> float:
    """Run ``argv`` (a command that prints its own start time) and return the time it printed."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, check=True)
    return float(proc.stdout)


def run_true() -> int:
    """Run ``/bin/true``: a task that does nothing, for throughput."""
    return subprocess.run(["/bin/true"], check=True).returncode


def run_stamp_end(argv: list[str]) -> list[float]:
    """``run_stamp``, and the time this job's function returned: ``[stamp, end]`` (a chain step)."""
    stamp = run_stamp(argv)
    return [stamp, time.time()]
