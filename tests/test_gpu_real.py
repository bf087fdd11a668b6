"""Checks that need a real NVIDIA GPU (marked ``gpu``; skipped without one).

Run them on a GPU machine with ``python -m pytest -m gpu tests/test_gpu_real.py``. They use the
real NVML (not the stand-in) and the CUDA driver API through ctypes (no framework needed):
the task itself counts the devices CUDA lets it see.
"""

from __future__ import annotations

import json

import pytest
from workerproc import WorkerProcess, log_text

from trainyard import Queue, Task, TaskStatus
from trainyard.worker.gpus import Nvml

pytestmark = pytest.mark.gpu

COUNT_DEVICES = """
import ctypes, json, os
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0, "cuInit failed"
count = ctypes.c_int()
assert cuda.cuDeviceGetCount(ctypes.byref(count)) == 0
print("SEEN " + json.dumps({"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "count": count.value}), flush=True)
import time; time.sleep(float(os.environ.get("HOLD_S", "0")))
"""


def _real_gpus() -> int:
    nvml = Nvml()
    return nvml.device_count() if nvml.available() else 0


needs_gpu = pytest.mark.skipif(_real_gpus() < 1, reason="no NVIDIA GPU with NVML on this machine")
needs_two = pytest.mark.skipif(_real_gpus() < 2, reason="needs two NVIDIA GPUs")


def _seen(conn, task: Task) -> dict:
    line = next(ln for ln in log_text(conn, task.id).splitlines() if ln.startswith("SEEN "))
    return json.loads(line[5:])


@needs_gpu
def test_task_sees_only_its_gpu(conn):
    Queue.create("gpu")
    task = Task.create("count", command=["python", "-c", COUNT_DEVICES]).enqueue("gpu")
    with WorkerProcess("-q", "gpu", "--gpus", "0", "--burst", env={"TRAINYARD_NVML": "pynvml"}) as worker:
        assert worker.wait(timeout=120) == 0
    assert Task.get(task.id).status == TaskStatus.COMPLETED, log_text(conn, task.id)
    assert _seen(conn, task) == {"visible": "0", "count": 1}


@needs_gpu
def test_nvml_numbers_are_sane():
    for gpu in Nvml().devices():
        assert gpu.memory_total_mb > 1000 and 0 <= gpu.memory_used_mb <= gpu.memory_total_mb
        assert gpu.utilization_pct is None or 0 <= gpu.utilization_pct <= 100
        assert gpu.temperature_c is None or 0 < gpu.temperature_c < 120


@needs_two
def test_two_tasks_on_two_gpus_at_once(conn):
    Queue.create("one")
    tasks = [
        Task.create(f"t{i}", command=["python", "-c", COUNT_DEVICES], gpus=1, env={"HOLD_S": "3"}).enqueue("one")
        for i in range(2)
    ]
    with WorkerProcess("-q", "one=1", "--gpus", "0-1", "--burst", env={"TRAINYARD_NVML": "pynvml"}) as worker:
        assert worker.wait(timeout=180) == 0
    records = [Task.get(t.id).data for t in tasks]
    assert sorted(r.runtime.gpus[0] for r in records) == ["0", "1"]
    a, b = records
    assert a.started < b.ended and b.started < a.ended  # side by side
    assert all(_seen(conn, t)["count"] == 1 for t in tasks)
