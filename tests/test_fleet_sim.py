"""The fleet benchmark's simulated hosts (benchmarks/fleet_sim.py): real ``Worker`` objects, many
in one process, each with its own client. Checked here because the benchmark's figures for 1,000
workers stand on it: its workers register, each with at most two named connections, run a task
like any worker, start no guard process, and leave the registry when the process is stopped. No
timing is asserted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import keys

REPO = Path(__file__).resolve().parent.parent
COUNT = 3


def _until(check, timeout_s: float = 120.0) -> None:
    """Wait for ``check()`` to hold (a condition on Redis, polled), at most ``timeout_s``."""
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not check():
            assert not done.wait(0.05), f"not met within {timeout_s:g}s: {check.__doc__ or check}"
    finally:
        deadline.cancel()


def test_simulated_workers_register_run_a_task_and_leave(conn, tmp_path):
    Queue.create("simq")
    names = [f"simtest-{i}" for i in range(COUNT)]
    log = open(tmp_path / "sim.log", "w")  # noqa: SIM115
    argv = [sys.executable, str(REPO / "benchmarks" / "fleet_sim.py"), "--count", str(COUNT)]
    proc = subprocess.Popen(
        [*argv, "--prefix", "simtest", "--queue", "simq", "--spread-s", "0"],
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def registered() -> bool:
            """every simulated worker registered"""
            return all(conn.sismember(keys.WORKERS, n) for n in names) or proc.poll() is not None

        _until(registered)
        assert proc.poll() is None, (tmp_path / "sim.log").read_text()
        own = [c for c in conn.client_list() if c.get("name", "").startswith("trainyard-worker:simtest-")]
        per_worker = {n: sum(c["name"] == f"trainyard-worker:{n}" for c in own) for n in names}
        assert all(1 <= k <= 2 for k in per_worker.values()), per_worker
        task = Task.create("sim", command=[sys.executable, "-c", "print('ran')"]).enqueue("simq")
        task.wait(timeout=120)
        assert task.status == TaskStatus.COMPLETED
        assert task.data.runtime.worker in names
        children = [" ".join(c.cmdline()) for c in psutil.Process(proc.pid).children(recursive=True)]
        assert not [c for c in children if "guard" in c], children  # the one thing a simulated worker leaves out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "sim.log").read_text()
    assert not any(conn.sismember(keys.WORKERS, n) for n in names)  # each unregistered on the way out
