"""Shared GPU pools with the stand-in NVML (no GPU here: worker/standin_nvml.py replaces NVML).

Every test checks placement from the task records: which GPUs each task held and when; two
tasks that held the same GPU must never have run at the same time.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from workerproc import FAST, WorkerProcess, wait_status, wait_worker_registered

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import keys
from trainyard.worker.standin_nvml import write_config

SHOW = "import os, time; print('GPUS', os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep({})"


@pytest.fixture
def gpus(tmp_path):
    """Four stand-in GPUs of 16 GB (tests rewrite the file to change memory and processes)."""
    path = tmp_path / "gpus.json"

    def configure(specs=None):
        write_config(path, specs or [{"name": f"Stand-in {i}", "memory_total_mb": 16384} for i in range(4)])
        return {"TRAINYARD_NVML": "standin", "TRAINYARD_STANDIN_GPUS_FILE": str(path)}

    return configure


def _task(name: str, queue: str, seconds: float = 0.3, **kwargs) -> Task:
    return Task.create(name, command=["python", "-c", SHOW.format(seconds)], **kwargs).enqueue(queue)


def _check_no_double_booking(tasks: list[Task]) -> None:
    records = [Task.get(t.id).data for t in tasks]
    for r in records:
        assert r.status == TaskStatus.COMPLETED, (r.name, r.runtime)
    for i, a in enumerate(records):
        for b in records[i + 1 :]:
            shared = set(a.runtime.gpus) & set(b.runtime.gpus)
            if shared:
                overlap = a.started < b.ended and b.started < a.ended
                assert not overlap, (
                    f"{a.name} and {b.name} both held GPU {shared} at once: "
                    f"{a.runtime.worker} {a.started:.3f}-{a.ended:.3f} / "
                    f"{b.runtime.worker} {b.started:.3f}-{b.ended:.3f}"
                )


def test_pool_runs_tasks_side_by_side_each_on_its_own_gpus(gpus, conn):
    env = gpus()
    Queue.create("dual")
    Queue.create("single")
    tasks = [_task(f"dual-{i}", "dual", 0.5) for i in range(2)] + [_task(f"one-{i}", "single", 0.5) for i in range(4)]
    with WorkerProcess("--gpus", "0-3", "-q", "dual=2", "-q", "single=1", "--burst", env=env) as worker:
        assert worker.wait(timeout=120) == 0
    _check_no_double_booking(tasks)
    records = {t.name: Task.get(t.id).data for t in tasks}
    assert all(len(records[f"dual-{i}"].runtime.gpus) == 2 for i in range(2))
    assert all(len(records[f"one-{i}"].runtime.gpus) == 1 for i in range(4))
    # the two 2-GPU tasks ran at the same time, on all four GPUs between them
    a, b = records["dual-0"], records["dual-1"]
    assert a.started < b.ended and b.started < a.ended
    assert sorted(a.runtime.gpus + b.runtime.gpus) == ["0", "1", "2", "3"]


def test_two_workers_on_one_host_never_double_book(gpus, conn):
    env = gpus()
    Queue.create("single")
    with (
        # overlapping pools: GPUs 1 and 2 are shared; 0 and 3 are each worker's own, so both take work
        WorkerProcess("--gpus", "0-2", "-q", "single", "--name", "pool-a", env=env),
        WorkerProcess("--gpus", "1-3", "-q", "single", "--name", "pool-b", env=env),
    ):
        wait_worker_registered(conn, "pool-a")
        wait_worker_registered(conn, "pool-b")
        template = Task.create("t", command=["python", "-c", SHOW.format(0.3)], gpus=1)
        tasks = template.clone_many([{} for _ in range(16)], name="t{i}", queue="single")  # all at once
        for task in tasks:
            wait_status(task, timeout=180)
    _check_no_double_booking(tasks)
    workers = {Task.get(t.id).data.runtime.worker for t in tasks}
    assert workers == {"pool-a", "pool-b"}  # both took work from the shared pool


def test_memory_aware_placement_and_foreign_processes(gpus, conn):
    env = gpus(
        [
            {"name": "small", "memory_total_mb": 16384, "memory_used_mb": 15000},  # little free memory
            {"name": "hogged", "memory_total_mb": 16384, "processes": [{"pid": 4242, "used_memory_mb": 4000}]},
            {"name": "free", "memory_total_mb": 16384},
        ]
    )
    Queue.create("q")
    task = _task("needs-8gb", "q", 0.1, gpus=1, gpu_memory_mb=8000)
    with WorkerProcess("--gpus", "0-2", "-q", "q", "--burst", env=env) as worker:
        assert worker.wait(timeout=60) == 0
    assert Task.get(task.id).data.runtime.gpus == ["2"]  # not 0 (memory), not 1 (someone else's process)


def test_a_killed_workers_gpus_come_free(gpus, conn, tmp_path):
    env = {**gpus(), **FAST}
    Queue.create("q")
    first = Task.create(
        "long", command=["python", "-c", "print('UP', flush=True); import time; time.sleep(600)"], gpus=1
    ).enqueue("q")
    victim = WorkerProcess("--gpus", "0", "-q", "q", "--name", "gpu-victim", env=env)
    from workerproc import wait_for_log

    wait_for_log(conn, first.id, "UP", exact=True)
    assert conn.hexists(keys.gpu_holds(Task.get(first.id).data.runtime.host, 0), first.id)
    victim.signal(9)
    victim.wait()
    second = _task("next", "q", 0.1, gpus=1)
    with WorkerProcess("--gpus", "0", "-q", "q", env=env):
        assert wait_status(second, timeout=120).status == TaskStatus.COMPLETED
        # The dead worker's GPU hold expires on its own clock, its claim on the reaper's: the second
        # task may finish before the first is reaped, so wait for the reaper (run by the live worker).
        assert wait_status(first, timeout=120).status == TaskStatus.FAILED  # reaped, not left running
    assert Task.get(second.id).data.runtime.gpus == ["0"]


def test_a_two_gpu_head_is_not_starved_by_a_stream_of_one_gpu_tasks(gpus, conn):
    env = gpus([{"name": f"g{i}", "memory_total_mb": 16384} for i in range(2)])
    Queue.create("big")
    Queue.create("small")
    done = threading.Event()
    smalls: list[Task] = []

    def feed():  # keep one 1-GPU task waiting at all times until the big one has started
        while not done.is_set() and len(smalls) < 60:
            if Queue("small").info().length == 0:
                smalls.append(_task(f"s{len(smalls)}", "small", 0.4))
            conn.xread({keys.EVENTS: "$"}, block=200)

    for _ in range(2):
        smalls.append(_task(f"s{len(smalls)}", "small", 0.4))
    feeder = threading.Thread(target=feed, daemon=True)
    with WorkerProcess("--gpus", "0-1", "-q", "big=2", "-q", "small=1", "--backfill-window", "1", env=env):
        from workerproc import wait_for_log

        wait_for_log(conn, smalls[0].id, "GPUS")
        feeder.start()
        big = _task("big", "big", 0.2)
        result = wait_status(big, timeout=120)
        done.set()
        feeder.join(timeout=30)
    assert result.status == TaskStatus.COMPLETED
    record = result.data
    assert sorted(record.runtime.gpus) == ["0", "1"]
    # once the big head had waited the backfill window, no new small task started before it
    late = [
        s for s in smalls if (r := Task.get(s.id).data).started and record.queued_at + 1.5 < r.started < record.started
    ]
    assert late == [], [Task.get(s.id).name for s in late]


def test_queue_concurrency_limit_and_stats(gpus, conn, run_cli):
    env = gpus()
    Queue.create("team", max_running=1)
    tasks = [_task(f"t{i}", "team", 0.3, gpus=1) for i in range(3)]
    stats = json.loads(run_cli("queue", "list", "--json", check=True).stdout)
    assert stats[0]["length"] == 3 and stats[0]["max_running"] == 1 and stats[0]["oldest_wait_s"] >= 0
    with WorkerProcess("--gpus", "0-3", "-q", "team", "--burst", env=env) as worker:
        assert worker.wait(timeout=120) == 0
    records = sorted((Task.get(t.id).data for t in tasks), key=lambda r: r.started)
    for a, b in zip(records, records[1:]):
        assert a.ended <= b.started, "a queue limited to 1 ran two tasks at once"
    run_cli("queue", "limit", "team", "0", check=True)
    assert Queue("team").info().max_running == 0


def test_gpu_share_packs_small_tasks_while_memory_fits(gpus, conn):
    """--gpu-share 2 on one 16 GB stand-in GPU: two 4 GB tasks share it; a 10 GB one waits its turn."""
    env = gpus([{"name": "shared", "memory_total_mb": 16384}])
    Queue.create("q")
    small = [_task(f"small{i}", "q", 0.8, gpus=1, gpu_memory_mb=4000) for i in range(2)]
    large = _task("large", "q", 0.1, gpus=1, gpu_memory_mb=10000)
    with WorkerProcess("--gpus", "0", "-q", "q", "--gpu-share", "2", "--burst", env=env) as worker:
        assert worker.wait(timeout=120) == 0
    a, b = (Task.get(t.id).data for t in small)
    big = Task.get(large.id).data
    assert a.started < b.ended and b.started < a.ended  # the two small ones shared the GPU
    assert big.started >= min(a.ended, b.ended)  # 4 + 4 + 10 GB does not fit in 16 GB
    assert a.runtime.gpus == b.runtime.gpus == big.runtime.gpus == ["0"]


def test_gpu_share_keeps_declared_memory_when_heartbeats_refresh_holds(gpus, conn, tmp_path):
    """Heartbeats used to rewrite a running task's hold with 0 MB, so after the first one a task that
    does not fit beside it (4 + 14 GB on 16 GB) was started all the same."""
    env = gpus([{"name": "shared", "memory_total_mb": 16384}])
    Queue.create("q")
    Queue.create("later")
    go = tmp_path / "go"
    waits = f"import os, time\nprint('up', flush=True)\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)"
    small = Task.create("small", command=["python", "-c", waits], gpus=1, gpu_memory_mb=4000).enqueue("q")
    with WorkerProcess("--gpus", "0", "-q", "q", "-q", "later", "--gpu-share", "2", env=env):
        first = _hold_value(conn, small.id, lambda value: True)
        refreshed = _hold_value(conn, small.id, lambda value: value != first)  # a heartbeat has refreshed it
        assert refreshed.split("|")[1] == "4000"
        big = _task("big", "q", 0.1, gpus=1, gpu_memory_mb=14000)
        tiny = _task("tiny", "later", 0.1, gpus=1, gpu_memory_mb=100)  # fits beside small: runs while big waits
        assert wait_status(tiny).status == TaskStatus.COMPLETED
        assert Task.get(big.id).status == TaskStatus.QUEUED
        go.touch()
        assert wait_status(big).status == TaskStatus.COMPLETED
    assert Task.get(big.id).data.started >= Task.get(small.id).data.ended


def _hold_value(conn, task_id: str, wanted, timeout: float = 60) -> str:
    """The task's hold on GPU 0 (``worker|memory MB|expires``) once ``wanted(value)`` is true; holds
    change without an event, so each look waits on the event stream up to 0.2 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key in conn.scan_iter(match=keys.gpu_holds("*", 0)):
            value = conn.hget(key, task_id)
            if value is not None and wanted(value.decode()):
                return value.decode()
        conn.xread({keys.EVENTS: "$"}, block=200)
    raise AssertionError(f"task {task_id}: no such hold on GPU 0 within {timeout}s")
