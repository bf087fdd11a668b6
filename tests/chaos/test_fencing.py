"""A worker cut off from Redis ends its task before a reaper may hand it to another worker: the task
never runs on two workers at once, and the lost attempt is on the record."""

from __future__ import annotations

import json
import sys
import time

from proxy import CuttableProxy
from workerproc import FAST, WorkerProcess, log_text, wait_for_log, wait_status, wait_worker_registered

from trainyard import Queue, Task, TaskStatus
from trainyard.worker.agent import Worker, WorkerConfig, fence_after_s

SLOW = """
import fcntl, json, os, sys, time
attempt = json.load(open(os.path.join(os.environ["TRAINYARD_RUN_DIR"], "task.json")))["attempt"]
lock = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("TWIN RUNNING", flush=True)
    raise SystemExit(3)
print("UP", os.environ["TRAINYARD_TASK_ID"], flush=True)
time.sleep(float(sys.argv[2]) if attempt == 1 else 0)
"""


LATE = """
import fcntl, json, os, sys, time
attempt = json.load(open(os.path.join(os.environ["TRAINYARD_RUN_DIR"], "task.json")))["attempt"]
lock = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("TWIN RUNNING", flush=True)
    raise SystemExit(3)
print("UP", attempt, flush=True)
time.sleep(json.loads(sys.argv[2]).get(str(attempt), 0))
"""


def test_a_cut_off_worker_fences_its_task(redis_server, conn, tmp_path):
    Queue.create("cut")
    dead_after = float(FAST["TRAINYARD_DEAD_AFTER_S"])
    task = Task.create(
        "long", command=[sys.executable, "-c", SLOW, str(tmp_path / "lock"), str(dead_after * 3)], retries=2
    )
    proxy = CuttableProxy(redis_server.port)
    cut_url = f"redis://:{redis_server.password}@127.0.0.1:{proxy.port}/0"
    try:
        with WorkerProcess("-q", "cut", "--cpu-only", "--name", "cut-off", env={"TRAINYARD_REDIS_URL": cut_url}) as w1:
            wait_worker_registered(conn, "cut-off")
            task.enqueue("cut")
            wait_for_log(conn, task.id, "UP")
            proxy.cut()
            with WorkerProcess("-q", "cut", "--cpu-only", "--name", "standby"):
                done = wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=120)
            proxy.restore()
            w1.stop()
        assert "ending it so it cannot run twice" in w1.output()
    finally:
        proxy.close()
    record = done.data
    assert "TWIN RUNNING" not in log_text(conn, task.id).splitlines()
    assert record.status == TaskStatus.COMPLETED, (record.runtime.attempts, record.runtime.error)
    first, second = record.runtime.attempts
    assert (first.worker, first.outcome) == ("cut-off", "lost")
    assert (second.worker, second.outcome) == ("standby", "completed")
    assert first.ended <= second.started  # the first attempt was over (reaped) before the second began


def test_a_late_report_of_a_fenced_attempt_is_dropped(redis_server, conn, tmp_path):
    """The cut-off worker alone serves the queue: when its link comes back it takes the re-queued
    task again (attempt 2) while its fenced attempt 1 is still trying to report. That late report
    must not end or re-queue attempt 2 (found by the chaos suite: it started attempt 3 beside it)."""
    Queue.create("solo")
    Queue.create("elsewhere")
    dead_after = float(FAST["TRAINYARD_DEAD_AFTER_S"])
    pauses = json.dumps({"1": dead_after * 3, "2": dead_after * 1.6})
    task = Task.create("long", command=[sys.executable, "-c", LATE, str(tmp_path / "lock"), pauses], retries=3)
    proxy = CuttableProxy(redis_server.port)
    cut_url = f"redis://:{redis_server.password}@127.0.0.1:{proxy.port}/0"
    try:
        with WorkerProcess(
            "-q", "solo", "--services-mode", "2", "--name", "solo", env={"TRAINYARD_REDIS_URL": cut_url}
        ) as solo:
            wait_worker_registered(conn, "solo")
            task.enqueue("solo")
            wait_for_log(conn, task.id, "UP 1")
            proxy.cut()
            with WorkerProcess("-q", "elsewhere", "--cpu-only", "--name", "reaper"):  # reaps, never runs it
                Task.get(task.id).wait(timeout=60, statuses=[TaskStatus.QUEUED])
                proxy.restore()
                done = wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=120)
    finally:
        proxy.close()
    assert "ending it so it cannot run twice" in solo.output()
    lines = log_text(conn, task.id).splitlines()
    assert "TWIN RUNNING" not in lines
    record = done.data
    assert [(a.attempt, a.worker, a.outcome) for a in record.runtime.attempts] == [
        (1, "solo", "lost"),
        (2, "solo", "completed"),
    ]


def test_a_task_taken_right_after_the_link_returns_is_not_fenced(conn, tmp_path):
    """Issue 15, defect 1: the watchdog counted only heartbeats as contact, so a task claimed right
    after Redis came back, before the next heartbeat, was ended as "lost" within a fraction of a
    second (and, without retries, failed without ever running). The claim reached Redis: contact."""
    Queue.create("back")
    task = Task.create("quick", command=[sys.executable, "-c", "import time; time.sleep(1); print('ran')"])
    task.enqueue("back")
    worker = Worker(conn, WorkerConfig(queues=["back"], burst=True, home=tmp_path / "home"))
    # the state right after an outage: the last heartbeat that reached Redis is older than the bound
    worker._contact = time.monotonic() - 2 * fence_after_s()
    assert worker.run() == 0
    record = Task.get(task.id).data
    assert [(a.attempt, a.outcome) for a in record.runtime.attempts] == [(1, "completed")], record.runtime.error
    assert worker.fenced == 0
    assert "ran" in log_text(conn, task.id).splitlines()
