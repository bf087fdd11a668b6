"""Queue order seen by a worker, and the GPUs a task sees (stand-in NVML: no GPU here)."""

from __future__ import annotations

import json

import pytest
from workerproc import WorkerProcess, log_text

from trainyard import Queue, Task, TaskStatus
from trainyard.worker.standin_nvml import write_config


def _fill(queues: list[str], per_queue: int) -> None:
    for q in queues:
        Queue.create(q)
        for i in range(per_queue):
            Task.create(f"{q}-{i}", command=["python", "-c", "pass"]).enqueue(q)


def _run_order() -> list[str]:
    done = Task.list(status="completed", limit=100)
    return [t.name for t in sorted(done, key=lambda t: t.data.started)]


def test_strict_order_drains_queues_in_the_given_order():
    _fill(["high", "mid", "low"], 3)
    with WorkerProcess("-q", "high", "-q", "mid", "-q", "low", "--cpu-only", "--burst") as worker:
        assert worker.wait() == 0
    assert _run_order() == ["high-0", "high-1", "high-2", "mid-0", "mid-1", "mid-2", "low-0", "low-1", "low-2"]


def test_order_fairness_takes_queues_round_robin():
    _fill(["a", "b", "c"], 3)
    Task.create("a-3", command=["python", "-c", "pass"]).enqueue("a")
    with WorkerProcess("-q", "a", "-q", "b", "-q", "c", "--cpu-only", "--burst", "--order-fairness") as worker:
        assert worker.wait() == 0
    assert _run_order() == ["a-0", "b-0", "c-0", "a-1", "b-1", "c-1", "a-2", "b-2", "c-2", "a-3"]


SHOW_ENV = (
    "import json, os; print('ENV ' + json.dumps({k: os.environ.get(k) for k in "
    "('CUDA_VISIBLE_DEVICES', 'NVIDIA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER', 'TRAINYARD_REDIS_URL')}))"
)


def _seen_env(conn, task: Task) -> dict:
    line = next(ln for ln in log_text(conn, task.id).splitlines() if ln.startswith("ENV "))
    return json.loads(line[4:])


@pytest.fixture
def standin_gpus(tmp_path):
    """Four stand-in GPUs (the stand-in NVML replaces a real GPU on this machine)."""
    path = write_config(tmp_path / "gpus.json", [{"name": f"Stand-in {i}", "memory_total_mb": 16384} for i in range(4)])
    return {"TRAINYARD_NVML": "standin", "TRAINYARD_STANDIN_GPUS_FILE": str(path)}


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--gpus", "0,1"), {"CUDA_VISIBLE_DEVICES": "0,1", "NVIDIA_VISIBLE_DEVICES": "0,1"}),
        (("--gpus", "2-3"), {"CUDA_VISIBLE_DEVICES": "2,3", "NVIDIA_VISIBLE_DEVICES": "2,3"}),
        (("--cpu-only",), {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}),
    ],
)
def test_task_sees_exactly_the_workers_gpus(conn, standin_gpus, args, expected):
    """Stand-in NVML with 4 GPUs: pinning is checked from inside the task."""
    Queue.create("gpu")
    task = Task.create("env", command=["python", "-c", SHOW_ENV]).enqueue("gpu")
    with WorkerProcess("-q", "gpu", "--burst", *args, env=standin_gpus) as worker:
        assert worker.wait() == 0
    assert Task.get(task.id).status == TaskStatus.COMPLETED
    seen = _seen_env(conn, task)
    assert seen == {**expected, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "TRAINYARD_REDIS_URL": None}
    assert Task.get(task.id).data.runtime.gpus == [g for g in expected["CUDA_VISIBLE_DEVICES"].split(",") if g]


def test_controller_tasks_get_the_redis_connection(conn):
    Queue.create("services")
    task = Task.create("ctl", command=["python", "-c", SHOW_ENV], task_type="controller").enqueue("services")
    with WorkerProcess("-q", "services", "--cpu-only", "--burst") as worker:
        assert worker.wait() == 0
    assert _seen_env(conn, task)["TRAINYARD_REDIS_URL"]
