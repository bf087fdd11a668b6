"""Nothing of a task outlives it (issue 15): processes that detach with ``setsid`` end with their
task and never delay its end; a killed worker's docker container and detached grandchildren end at
once, with no other worker on the host (its guard); a worker that starts on a host ends what a dead
worker there left when even the guard is gone. Real workers, processes, Docker."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap
import time
import uuid

import psutil
import pytest
from workerproc import WorkerProcess, log_text, wait_for_log, wait_status

from trainyard import Queue, Task, TaskStatus

# no reaper may act within a test's life: only the mechanisms under test end what is left
NO_REAPING = {"TRAINYARD_WORKER_TTL_S": "1800", "TRAINYARD_DEAD_AFTER_S": "1800"}


def _pids_with(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


def _wait_gone(marker: str, timeout: float = 30) -> list[int]:
    """Until no process carries ``marker`` on its command line; returns those still alive."""
    procs = []
    for pid in _pids_with(marker):
        with_proc = psutil.Process(pid)
        procs.append(with_proc)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def _kill_all(marker: str) -> None:
    for pid in _pids_with(marker):
        os.kill(pid, signal.SIGKILL)


def test_a_detached_process_ends_with_its_task_and_never_delays_its_end(conn, tmp_path):
    """``setsid`` leaves the task's process group: it used to outlive the task (and the two output
    readers waited 5 s each on the pipes it held). One escapee keeps the task's environment and is
    ended with the task; one also drops TRAINYARD_TASK_ID, so nothing can find it: it still must not
    hold up the task's end (its line 4 s later never reaches the task's log)."""
    marker = f"escapee-{uuid.uuid4().hex[:8]}"
    found = f"{marker}-found"
    hidden = f"{marker}-hidden"
    command = textwrap.dedent(
        f"""
        setsid bash -c 'sleep 300; : {found}' &
        env -u TRAINYARD_TASK_ID setsid bash -c 'sleep 4; echo late; sleep 300; : {hidden}' &
        sleep 0.5; echo started
        """
    )
    Queue.create("cpu")
    task = Task.create("detacher", command=["bash", "-c", command]).enqueue("cpu")
    try:
        with WorkerProcess("-q", "cpu", "--cpu-only", env=NO_REAPING):
            done = wait_status(task)
            assert done.status == TaskStatus.COMPLETED
            assert _wait_gone(found) == []
            assert _pids_with(hidden), "the hidden escapee was started and still runs"
        lines = log_text(conn, task.id).splitlines()
        assert "started" in lines and "late" not in lines
    finally:
        _kill_all(hidden)


DOCKER_TASK = ["sh", "-c", "echo up; sleep 300"]


@pytest.fixture
def busybox():
    from dockerimages import docker_engine, ensure_busybox_image

    engine = docker_engine()
    if engine is None:
        if os.environ.get("TRAINYARD_REQUIRE_DOCKER"):
            pytest.fail("TRAINYARD_REQUIRE_DOCKER is set but no Docker engine answers")
        pytest.skip("no Docker engine")
    return engine, ensure_busybox_image(engine)


def _container_gone(engine, name: str, timeout: float = 60) -> bool:
    """Until the container is removed (blocking on the engine's events, not polling)."""
    import docker

    try:
        engine.containers.get(name)
    except docker.errors.NotFound:
        return True
    until = time.time() + timeout  # the stream ends then: a container that stays fails the test
    events = engine.events(decode=True, until=until, filters={"container": name, "event": ["destroy"]})
    try:
        try:
            engine.containers.get(name)
        except docker.errors.NotFound:
            return True
        for _ in events:
            return True
    finally:
        events.close()
    return False


def _start_leftovers(conn, tmp_path, image: str, worker_env: dict) -> tuple[WorkerProcess, Task, Task, str]:
    """A lone worker running a docker task and a local task with a detached grandchild."""
    marker = f"orphan-{uuid.uuid4().hex[:8]}"
    Queue.create("cpu")
    in_docker = Task.create("boxed", command=DOCKER_TASK, mode="docker", docker_image=image, retries=1)
    local = Task.create("local", command=["bash", "-c", f"setsid bash -c 'sleep 300; : {marker}' & echo up; wait"])
    worker = WorkerProcess("-q", "cpu", "--services-mode", "2", env=worker_env)
    in_docker.enqueue("cpu")
    wait_for_log(conn, in_docker.id, "up", exact=True)
    local.enqueue("cpu")
    wait_for_log(conn, local.id, "up", exact=True)
    return worker, in_docker, local, marker


def test_a_killed_workers_container_and_detached_grandchild_end_at_once(conn, tmp_path, busybox):
    """The only worker on the host is killed: nothing else on the host would end its docker task
    (the engine keeps it running) or the grandchild that left the task's group; its guard does,
    long before the reaper may hand the task to another host."""
    engine, image = busybox
    worker, in_docker, local, marker = _start_leftovers(conn, tmp_path, image, NO_REAPING)
    container = f"trainyard-{in_docker.id}-1"
    try:
        assert engine.containers.get(container).status == "running"
        assert _pids_with(marker)
        worker.proc.kill()
        worker.wait()
        assert _container_gone(engine, container)
        assert _wait_gone(marker) == []
    finally:
        _kill_all(marker)
        with contextlib.suppress(Exception):
            engine.containers.get(container).remove(force=True)


def test_a_starting_worker_ends_what_a_dead_worker_on_its_host_left(conn, tmp_path, busybox):
    """Worker and guard both killed (as by an OOM killer): the next worker to start on the host
    ends the dead worker's container (by label) and processes (by TRAINYARD_WORKER) before it
    takes work."""
    engine, image = busybox
    worker, in_docker, local, marker = _start_leftovers(conn, tmp_path, image, NO_REAPING)
    container = f"trainyard-{in_docker.id}-1"
    try:
        guards = [p for p in psutil.Process(worker.proc.pid).children() if "guard.py" in " ".join(p.cmdline())]
        assert len(guards) == 1
        guards[0].kill()  # a SIGKILLed process runs no more code: it cannot act on its worker's death
        worker.proc.kill()
        worker.wait()
        assert engine.containers.get(container).status == "running"  # nothing left to end it...
        assert _pids_with(marker)
        with WorkerProcess("-q", "other", "--cpu-only", "--create-queue", env=NO_REAPING) as successor:
            assert _container_gone(engine, container)  # ...until a worker starts on the host
            assert _wait_gone(marker) == []
        assert "removed 1 container(s) of dead workers" in successor.output()
    finally:
        _kill_all(marker)
        with contextlib.suppress(Exception):
            engine.containers.get(container).remove(force=True)


def test_after_a_long_redis_outage_the_next_runs_are_not_killed_as_lost(tmp_path, monkeypatch):
    """Defect 1's scenario end to end: one worker runs a long task (retries 1) with another queued
    behind it (retries 0); Redis stops for longer than the fence bound, then returns. The running
    attempt is fenced and lost (right: it could not report); the runs that start after Redis is back
    — its retry and the task that only waited during the outage — complete. (The race itself, a claim
    before the next heartbeat, is pinned down by test_fencing's
    test_a_task_taken_right_after_the_link_returns_is_not_fenced; the chaos storm repeats it.)"""
    from redis_server import RedisServer

    from trainyard.connection import reset_connections

    server = RedisServer(tmp_path / "own-redis").start()
    try:
        monkeypatch.setenv("TRAINYARD_REDIS_URL", server.url)
        reset_connections()
        conn = server.client()
        Queue.create("cpu")
        code = (
            "import os, time; n = os.environ['TRAINYARD_ATTEMPT']; print('attempt', n, flush=True); "
            "time.sleep(600 if n == '1' else 1); print('done', flush=True)"
        )
        first = Task.create("long", command=[sys.executable, "-c", code], retries=1).enqueue("cpu")
        second = Task.create("waiting", command=[sys.executable, "-c", "import time; time.sleep(1)"]).enqueue("cpu")
        # heartbeats every 2 s (the default), so the claim after the outage comes before the next one
        timing = {"TRAINYARD_HEARTBEAT_S": "2", "TRAINYARD_WORKER_TTL_S": "8", "TRAINYARD_DEAD_AFTER_S": "8"}
        with WorkerProcess(
            "-q", "cpu", "--cpu-only", "--grace", "1", env={"TRAINYARD_REDIS_URL": server.url, **timing}
        ):
            wait_for_log(conn, first.id, "attempt 1", exact=True)
            server.stop()
            time.sleep(8 * 0.9)  # the outage: past the fence (half the dead-after bound) and its grace
            server.start()
            reset_connections()
            conn = server.client()
            long_done, waiting_done = wait_status(first, timeout=120), wait_status(second, timeout=120)
        assert [(a.attempt, a.outcome) for a in long_done.data.runtime.attempts] == [(1, "lost"), (2, "completed")]
        assert [(a.attempt, a.outcome) for a in waiting_done.data.runtime.attempts] == [(1, "completed")]
        assert "done" in log_text(conn, first.id).splitlines()
    finally:
        server.cleanup()
