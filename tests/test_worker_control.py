"""Abort, drain, stop, crash recovery and Redis outages, with real processes."""

from __future__ import annotations

import signal
import textwrap

import psutil
import pytest
from redis_server import RedisServer
from workerproc import (
    WorkerProcess,
    log_text,
    wait_for_log,
    wait_status,
    wait_worker_registered,
    wait_worker_state,
)

from trainyard import Queue, Task, TaskStatus
from trainyard.connection import reset_connections
from trainyard.queues import keys

SPAWNS_GRANDCHILD = textwrap.dedent(
    """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"PIDS {os.getpid()} {child.pid}", flush=True)
    time.sleep(600)
    """
)

BLOCKS_ON_FIRST_ATTEMPT = textwrap.dedent(
    """
    import time
    from trainyard import current_task
    task = current_task()
    print(f"attempt {task.attempt} started", flush=True)
    if task.attempt == 1:
        time.sleep(600)
    print("finished")
    """
)


def _pids(conn, task_id: str) -> list[int]:
    line = wait_for_log(conn, task_id, "PIDS ")
    return [int(p) for p in line.split()[1:]]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], timeout: float = 30) -> None:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=timeout)
    assert all(_gone(pid) for pid in pids), [p for p in pids if not _gone(p)]


def test_abort_kills_the_task_and_its_grandchild(conn, tmp_path):
    Queue.create("cpu")
    script = tmp_path / "spawn.py"
    script.write_text(SPAWNS_GRANDCHILD)
    task = Task.create("spawner", script=script).enqueue("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--grace", "2"):
        pids = _pids(conn, task.id)
        assert all(psutil.pid_exists(p) for p in pids)
        Task.get(task.id).abort()
        done = wait_status(task)
        assert done.status == TaskStatus.ABORTED
        _wait_gone(pids)
    assert done.data.runtime.attempts[-1].outcome == "aborted"


def test_abort_reaches_the_worker_by_its_event_not_the_heartbeat_backstop(conn, tmp_path):
    """The abort_requested event (previous status: running) used to be taken for "a task ended" and
    dropped; the abort then waited for the heartbeat's flag check. Here the heartbeat never comes back."""
    Queue.create("cpu")
    task = Task.create("sleeper", command=["python", "-c", "print('up', flush=True); import time; time.sleep(600)"])
    task.enqueue("cpu")
    slow_heartbeat = {
        "TRAINYARD_HEARTBEAT_S": "3600",
        "TRAINYARD_WORKER_TTL_S": "7200",
        "TRAINYARD_DEAD_AFTER_S": "7200",
    }
    with WorkerProcess("-q", "cpu", "--cpu-only", "--grace", "2", env=slow_heartbeat):
        wait_for_log(conn, task.id, "up")
        Task.get(task.id).abort()
        done = wait_status(task, timeout=15)  # under the test's reaper bound (20 s); the backstop is an hour away
        assert done.status == TaskStatus.ABORTED


def test_sigterm_drains_then_a_second_sigterm_requeues_at_front(conn, tmp_path):
    Queue.create("cpu")
    go = tmp_path / "go"
    waits = [
        "python",
        "-c",
        f"import os, time\nprint('up', flush=True)\nwhile not os.path.exists({str(go)!r}): "
        "time.sleep(0.01)\nprint('bye')",
    ]
    first = Task.create("first", command=waits).enqueue("cpu")
    second = Task.create("second", command=["python", "-c", "pass"]).enqueue("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--name", "w1") as worker:
        wait_for_log(conn, first.id, "up")
        worker.signal(signal.SIGTERM)  # drain: finish the current task, take no new one
        wait_worker_state(conn, "w1", "draining")
        go.touch()
        assert worker.wait() == 0
    assert Task.get(first.id).status == TaskStatus.COMPLETED
    assert Task.get(second.id).status == TaskStatus.QUEUED

    go.unlink()
    third = Task.create("third", command=waits).enqueue("cpu", front=True)
    with WorkerProcess("-q", "cpu", "--cpu-only", "--grace", "2", "--name", "w2") as worker:
        wait_for_log(conn, third.id, "up")
        worker.signal(signal.SIGTERM)
        wait_worker_state(conn, "w2", "draining")
        worker.signal(signal.SIGTERM)  # stop: the running task goes back, first in line
        assert worker.wait() == 0
    again = Task.get(third.id).data
    assert again.status == TaskStatus.QUEUED and again.runtime.attempts[-1].outcome == "requeued"
    assert Queue("cpu").task_ids() == [third.id, second.id]


def test_drain_command_from_the_cli(run_cli, conn):
    Queue.create("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--name", "w-drain") as worker:
        wait_worker_registered(conn, "w-drain")
        listed = run_cli("worker", "list", check=True).stdout
        assert "w-drain" in listed and "cpu" in listed
        run_cli("worker", "drain", "w-drain", check=True)
        assert worker.wait() == 0
    assert not conn.exists(keys.worker("w-drain"))


@pytest.mark.parametrize("retries, final", [(1, TaskStatus.COMPLETED), (0, TaskStatus.FAILED)])
def test_kill_9_of_a_worker_mid_task(conn, tmp_path, retries, final):
    Queue.create("cpu")
    script = tmp_path / "job.py"
    script.write_text(BLOCKS_ON_FIRST_ATTEMPT)
    task = Task.create("job", script=script, retries=retries).enqueue("cpu")
    victim = WorkerProcess("-q", "cpu", "--cpu-only", "--name", "victim")
    wait_for_log(conn, task.id, "attempt 1 started")
    task_pid = psutil.Process(victim.proc.pid).children()[0].pid
    victim.proc.send_signal(signal.SIGKILL)
    victim.wait()
    _wait_gone([task_pid])  # the task process died with its worker
    with WorkerProcess("-q", "cpu", "--cpu-only", "--name", "rescuer"):
        done = wait_status(task, timeout=60)
    record = done.data
    assert record.status == final, record.runtime
    assert record.runtime.attempts[0].outcome == "lost"
    assert "worker lost: victim" in record.runtime.attempts[0].error
    if final == TaskStatus.COMPLETED:
        assert record.runtime.attempt == 2 and record.runtime.worker == "rescuer"
        assert "finished" in log_text(conn, task.id)
    else:
        assert record.runtime.error.startswith("worker lost: victim")
    assert not conn.hexists(keys.CLAIMS, task.id)


def test_waiting_on_a_task_of_a_dead_worker_ends_it(run_cli, conn, tmp_path, monkeypatch):
    """No live worker left: `trainyard task wait` reaps the task itself."""
    Queue.create("cpu")
    script = tmp_path / "job.py"
    script.write_text(BLOCKS_ON_FIRST_ATTEMPT)
    task = Task.create("orphan", script=script).enqueue("cpu")
    victim = WorkerProcess("-q", "cpu", "--cpu-only", "--name", "lonely")
    wait_for_log(conn, task.id, "attempt 1 started")
    victim.proc.send_signal(signal.SIGKILL)
    victim.wait()
    from workerproc import FAST

    proc = run_cli("task", "wait", task.id, "--timeout", "60", env=FAST)
    assert proc.returncode == 1 and proc.stdout.strip() == f"{task.id} failed"
    assert Task.get(task.id).data.runtime.error.startswith("worker lost: lonely")


def test_redis_restart_during_a_task_loses_nothing(tmp_path, monkeypatch):
    server = RedisServer(tmp_path / "own-redis").start()
    try:
        monkeypatch.setenv("TRAINYARD_REDIS_URL", server.url)
        reset_connections()
        conn = server.client()
        Queue.create("cpu")
        go = tmp_path / "go"
        waits = [
            "python",
            "-c",
            f"import os, time\nprint('up', flush=True)\nwhile not os.path.exists({str(go)!r}): "
            "time.sleep(0.01)\nprint('finished after the outage', flush=True)",
        ]
        task = Task.create("survivor", command=waits).enqueue("cpu")
        with WorkerProcess("-q", "cpu", "--cpu-only", env={"TRAINYARD_REDIS_URL": server.url}) as worker:
            wait_for_log(conn, task.id, "up")
            server.stop()
            go.touch()  # the task ends while Redis is down
            server.start()
            reset_connections()
            conn = server.client()
            done = wait_status(task, timeout=120)
            assert done.status == TaskStatus.COMPLETED, done.data.runtime
            assert "finished after the outage" in log_text(conn, task.id)
            after = Task.create("after", command=["python", "-c", "print('still working')"]).enqueue("cpu")
            assert wait_status(after, timeout=60).status == TaskStatus.COMPLETED
            assert worker.proc.poll() is None
    finally:
        server.cleanup()


def test_worker_refuses_bad_input_with_one_line(run_cli, tmp_path):
    from workerproc import FAST

    Queue.create("cpu")
    cases = [
        (("worker", "-q", "nope", "--cpu-only"), "no queue named 'nope'"),
        (("worker", "-q", "cpu", "--gpus", "0,,x"), "bad GPU spec '0,,x'"),
        (("worker", "-q", "cpu", "--gpus", "1"), "cannot use --gpus '1'"),
        (("worker", "-q", "cpu", "--gpus", "0", "--cpu-only"), "exclude each other"),
    ]
    for args, message in cases:
        proc = run_cli(*args, env=FAST)
        assert proc.returncode == 1, (args, proc.stderr)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
    standin = {"TRAINYARD_NVML": "standin", "TRAINYARD_STANDIN_GPUS": '[{"name": "a"}, {"name": "b"}]', **FAST}
    proc = run_cli("worker", "-q", "cpu", "--gpus", "5", env=standin)
    assert proc.returncode == 1 and "GPU 5 does not exist" in proc.stderr


def test_worker_names_are_never_shared(run_cli, conn):
    from workerproc import FAST

    Queue.create("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--name", "holder"):
        wait_worker_registered(conn, "holder")
        same_name = run_cli("worker", "-q", "cpu", "--cpu-only", "--name", "holder", env=FAST)
        assert same_name.returncode == 1 and "worker name 'holder' is in use" in same_name.stderr


def test_stop_command_from_the_cli_requeues_the_running_task(run_cli, conn):
    Queue.create("cpu")
    task = Task.create("long", command=["python", "-c", "print('UP', flush=True); import time; time.sleep(600)"])
    task.enqueue("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--name", "w-stop", "--grace", "1") as worker:
        wait_for_log(conn, task.id, "UP", exact=True)
        run_cli("worker", "stop", "w-stop", check=True)
        assert worker.wait() == 0
    record = Task.get(task.id).data
    assert record.status == TaskStatus.QUEUED and record.runtime.attempts[-1].outcome == "requeued"
    assert Queue("cpu").task_ids() == [task.id]


def test_foreign_entries_on_a_queue_are_dropped_never_deserialised(conn, tmp_path):
    """A pickled payload or a stray id pushed straight onto the RQ list is removed, not run."""
    import pickle

    marker = tmp_path / "pwned"
    Queue.create("cpu")

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    conn.rpush("rq:queue:cpu", pickle.dumps(Evil()), "not-a-task-id")
    good = Task.create("good", command=["python", "-c", "print('fine')"]).enqueue("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=60) == 0
        output = worker.output()
    assert Task.get(good.id).status == TaskStatus.COMPLETED
    assert not marker.exists()
    assert conn.llen("rq:queue:cpu") == 0
    assert output.count("is not a trainyard task") == 2
