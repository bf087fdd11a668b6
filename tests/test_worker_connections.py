"""A worker process holds at most 2 Redis connections (issue 17: a fleet of thousands must fit in
Redis's client limit): its blocking wait and one shared by everything else (heartbeat, claims, log
shipping of every running task, in-task reads). Counted on the server (CLIENT LIST), where the
worker names its connections ``trainyard-worker:<name>``."""

from __future__ import annotations

import sys

from workerproc import WorkerProcess, wait_for_log, wait_status, wait_worker_registered

from trainyard import Queue, Task, TaskStatus

CHATTY = """
import pathlib, sys, time
go = pathlib.Path(sys.argv[1])
print("ready", flush=True)
n = 0
while not go.exists():
    n += 1
    print("line", n, "x" * 200, flush=True)
    time.sleep(0.002)
"""


def _connections(conn, name: str) -> int:
    return sum(1 for client in conn.client_list() if client.get("name") == f"trainyard-worker:{name}")


def test_a_worker_running_tasks_in_services_mode_holds_at_most_two_connections(conn, tmp_path):
    Queue.create("svc")
    go = tmp_path / "go"
    with WorkerProcess("-q", "svc", "--services-mode", "3", "--name", "conns") as worker:
        wait_worker_registered(conn, "conns")
        assert 1 <= _connections(conn, "conns") <= 2, worker.output()
        tasks = [
            Task.create(f"chatty-{i}", command=[sys.executable, "-c", CHATTY, str(go)]).enqueue("svc") for i in range(3)
        ]
        for task in tasks:  # all three running, each shipping log lines as fast as it prints them
            wait_for_log(conn, task.id, "ready", exact=True)
        counts = [_connections(conn, "conns") for _ in range(50)]
        go.touch()
        for task in tasks:
            assert wait_status(task, timeout=120).status == TaskStatus.COMPLETED
        # a pool keeps what it opened: the count now is the most the worker ever held at once
        counts.append(_connections(conn, "conns"))
        assert max(counts) <= 2 and min(counts) >= 1, (counts, worker.output()[-2000:])
