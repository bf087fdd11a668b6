"""Atomic drain: a worker marked draining in Redis takes no new work, even before it hears of it."""

from __future__ import annotations

import threading

from workerproc import WorkerProcess, wait_status, wait_worker_registered

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import keys, workers
from trainyard.queues.dispatch import DRAINING, Dispatcher


def _register(conn, name: str) -> None:
    workers.register(conn, workers.WorkerInfo(name=name, host="h", pid=1, queues=["cpu"]), lambda _pid: False)


def test_a_claim_by_a_worker_marked_draining_is_refused_and_the_task_stays_first(conn):
    Queue.create("cpu")
    task = Task.create("t", command=["true"]).enqueue("cpu")
    _register(conn, "w1")
    workers.send_command(conn, "w1", "drain")  # the worker has not seen the command
    assert workers.is_draining(conn, "w1")
    assert Dispatcher(conn, "w1", "h").claim_head("cpu", task.id) == DRAINING
    assert Queue("cpu").task_ids() == [task.id]
    assert not conn.hexists(keys.CLAIMS, task.id)
    other = Dispatcher(conn, "w2", "h").claim_head("cpu", task.id)  # another worker may take it
    assert other is not None and other != DRAINING


def test_drain_racing_claims_never_loses_a_task(conn):
    """Many rounds of a claim racing a drain: the task is either claimed by the worker (which then
    runs it) or still first in its queue; never neither."""
    Queue.create("cpu")
    for round_ in range(200):
        name = f"w{round_}"
        _register(conn, name)
        task = Task.create(f"t{round_}", command=["true"]).enqueue("cpu")
        dispatcher = Dispatcher(conn, name, "h")
        got: list = []
        start = threading.Barrier(2)

        def claim(d=dispatcher, tid=task.id, out=got, barrier=start):
            barrier.wait()
            out.append(d.claim_head("cpu", tid))

        thread = threading.Thread(target=claim)
        thread.start()
        start.wait()
        workers.send_command(conn, name, "drain")
        thread.join()
        claimed = conn.hget(keys.CLAIMS, task.id)
        if got[0] == DRAINING:
            assert claimed is None and Queue("cpu").task_ids() == [task.id]
            Task.get(task.id).dequeue()
        else:
            assert claimed is not None and task.id not in Queue("cpu").task_ids()
            conn.hdel(keys.CLAIMS, task.id)
            conn.delete(keys.inflight("cpu"))
        assert Dispatcher(conn, name, "h").claim_head("cpu", "none") == DRAINING
        workers.unregister(conn, name)
        assert not workers.is_draining(conn, name)


def test_a_worker_process_marked_draining_runs_no_new_task_and_exits(conn):
    Queue.create("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--name", "w-mark") as worker:
        wait_worker_registered(conn, "w-mark")
        workers.send_command(conn, "w-mark", "drain")
        task = Task.create("late", command=["python", "-c", "pass"]).enqueue("cpu")
        assert worker.wait() == 0
    assert Task.get(task.id).status == TaskStatus.QUEUED
    with WorkerProcess("-q", "cpu", "--cpu-only", "--burst"):
        assert wait_status(task).status == TaskStatus.COMPLETED
