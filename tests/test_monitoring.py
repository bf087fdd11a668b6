"""Live worker stats (CPU, memory, disk, network, GPUs) and the per-task GPU usage summary.

This machine has no GPU: the stand-in NVML (``TRAINYARD_NVML=standin``, fake GPUs described in
a JSON file that is re-read on every call) replaces real GPUs in these tests, so a test sets the
utilization and memory a "GPU" reports and changes them while a worker runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from workerproc import WorkerProcess, wait_status, wait_worker_registered

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import keys, workers
from trainyard.worker.agent import Worker, WorkerConfig
from trainyard.worker.gpus import Nvml
from trainyard.worker.monitor import GpuUsage, Monitor, sample
from trainyard.worker.standin_nvml import write_config


def _gpu(name: str, utilization: int, temperature: int = 40, **extra) -> dict:
    return {"name": name, "memory_total_mb": 16384, "utilization": utilization, "temperature": temperature, **extra}


@pytest.fixture(autouse=True)
def clean_nvml_env(monkeypatch):
    """No test inherits a backend choice or a GPU description from the environment."""
    for name in ("TRAINYARD_NVML", "TRAINYARD_STANDIN_GPUS", "TRAINYARD_STANDIN_GPUS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def nvml():
    instance = Nvml()
    yield instance
    instance.reset()


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """Stand-in NVML (in place of real GPUs) with three GPUs in a file; returns the file's path."""
    path = write_config(
        tmp_path / "gpus.json",
        [
            {"name": "Stand-in A", "memory_total_mb": 40960, "memory_used_mb": 1024, "utilization": 7},
            {"name": "Stand-in B", "memory_total_mb": 16384, "processes": [{"pid": 42, "used_memory_mb": 512}]},
            {"name": "Stand-in C", "memory_total_mb": 8192, "utilization": 99, "temperature": 80},
        ],
    )
    monkeypatch.setenv("TRAINYARD_NVML", "standin")
    monkeypatch.setenv("TRAINYARD_STANDIN_GPUS_FILE", str(path))
    return path


def _burn_cpu(seconds: float) -> None:
    """Keep one CPU busy for a measurement window (so the CPU percent has something to show)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _check_usage(part: dict) -> None:
    assert part["total_mb"] > 0 and 0 <= part["used_mb"] <= part["total_mb"]
    assert 0 <= part["percent"] <= 100


# --- sample() -------------------------------------------------------------------------


def test_sample_has_sane_system_values_and_notes_missing_nvml(monkeypatch, nvml):
    """A real psutil sample; with NVML off (no GPUs here) the snapshot says why instead of failing."""
    monkeypatch.setenv("TRAINYARD_NVML", "off")
    monitor = Monitor(nvml)
    _burn_cpu(0.3)
    snap = monitor.sample()
    assert json.loads(json.dumps(snap)) == snap  # JSON-able as it is
    assert 0 < snap["cpu_percent"] <= 100
    assert snap["cpu_count"] >= 1
    assert len(snap["load_avg"]) == 3 and all(x >= 0 for x in snap["load_avg"])
    _check_usage(snap["memory"])
    _check_usage(snap["disk"])
    assert snap["net"]["sent_bytes_per_s"] >= 0 and snap["net"]["recv_bytes_per_s"] >= 0
    assert abs(snap["time"] - time.time()) < 60
    assert 0 <= snap["sample_ms"] < 1000
    assert snap["gpus"] is None
    assert snap["gpu_note"] == nvml.reason() == "NVML disabled (TRAINYARD_NVML=off)"


def test_sample_notes_an_nvml_that_fails_to_start(monkeypatch, tmp_path, nvml):
    """A broken GPU description makes the stand-in NVML fail to start, like a broken driver."""
    bad = tmp_path / "gpus.json"
    bad.write_text("[{")
    monkeypatch.setenv("TRAINYARD_NVML", "standin")
    monkeypatch.setenv("TRAINYARD_STANDIN_GPUS_FILE", str(bad))
    snap = sample(nvml, [0])
    assert snap["gpus"] is None
    assert "not valid JSON" in snap["gpu_note"] and snap["gpu_note"] == nvml.reason()
    assert snap["memory"]["total_mb"] > 0


def test_sample_reads_the_standin_gpus_and_sees_changes(standin, nvml):
    """GPU fields come from the stand-in file (no real GPU); a changed file shows in the next sample."""
    snap = sample(nvml)
    assert "gpu_note" not in snap
    assert snap["gpus"] == [
        {
            "index": 0,
            "name": "Stand-in A",
            "utilization_pct": 7,
            "memory_used_mb": 1024,
            "memory_total_mb": 40960,
            "temperature_c": 35,
            "processes": 0,
        },
        {
            "index": 1,
            "name": "Stand-in B",
            "utilization_pct": 0,
            "memory_used_mb": 512,
            "memory_total_mb": 16384,
            "temperature_c": 35,
            "processes": 1,
        },
        {
            "index": 2,
            "name": "Stand-in C",
            "utilization_pct": 99,
            "memory_used_mb": 0,
            "memory_total_mb": 8192,
            "temperature_c": 80,
            "processes": 0,
        },
    ]
    assert [g["index"] for g in sample(nvml, [0, 2])["gpus"]] == [0, 2]

    write_config(standin, [_gpu("Stand-in A", 55, memory_used_mb=3000), _gpu("Stand-in B", 12, temperature=66)])
    snap = sample(nvml, [0, 1, 2])
    assert [(g["utilization_pct"], g["memory_used_mb"], g["temperature_c"]) for g in snap["gpus"]] == [
        (55, 3000, 40),
        (12, 0, 66),
    ]
    assert snap["gpu_note"] == "NVML does not report GPU 2"


def test_cpu_only_sample_does_not_start_nvml(standin, nvml):
    snap = sample(nvml, [])
    assert snap["gpus"] == [] and "gpu_note" not in snap
    assert nvml._state is None  # a CPU-only worker never initialises NVML


def test_cpu_counter_is_primed_per_thread(monkeypatch, nvml):
    """psutil keeps the non-blocking CPU counter per thread: a new thread's first sample is None."""
    monkeypatch.setenv("TRAINYARD_NVML", "off")
    monitor = Monitor(nvml)
    seen: list = []

    def in_thread() -> None:
        seen.append(monitor.sample()["cpu_percent"])
        _burn_cpu(0.3)
        seen.append(monitor.sample()["cpu_percent"])

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen[0] is None and 0 < seen[1] <= 100


def test_gpu_usage_summarises_only_the_tasks_gpus():
    usage = GpuUsage(["0", "2"])
    assert usage.summary() == {}
    for util0, mem0 in ((10, 100), (30, 500), (None, 300)):
        usage.add(
            [
                {"index": 0, "name": "A", "utilization_pct": util0, "memory_used_mb": mem0, "memory_total_mb": 1000},
                {"index": 1, "name": "B", "utilization_pct": 90, "memory_used_mb": 900, "memory_total_mb": 1000},
            ]
        )
    usage.add(None)  # a sample without NVML changes nothing
    assert usage.summary() == {
        "0": {
            "name": "A",
            "utilization_max_pct": 30,
            "utilization_mean_pct": 20.0,
            "memory_max_mb": 500,
            "memory_total_mb": 1000,
            "samples": 3,
        }
    }


def test_a_failing_sample_never_breaks_the_heartbeat(conn, standin, nvml, tmp_path):
    """The worker's heartbeat step: stats in its entry, GPU samples fed to running tasks, errors contained."""
    agent = Worker(conn, WorkerConfig(queues=["q"], gpus=[0, 1], home=tmp_path / "home"))
    run = SimpleNamespace(gpu_usage=GpuUsage(["1"]))
    agent.running["t1"] = run
    agent._sample_stats(Monitor(nvml))
    assert [g["index"] for g in agent.info.stats["gpus"]] == [0, 1]
    assert run.gpu_usage.summary()["1"]["memory_max_mb"] == 512

    class Broken:
        def sample(self, gpus):
            raise RuntimeError("sensor on fire")

    agent._sample_stats(Broken())
    assert agent.info.stats["error"] == "RuntimeError: sensor on fire"


# --- the CLI --------------------------------------------------------------------------------


def test_worker_list_and_show_say_no_nvml(conn, run_cli, monkeypatch, nvml):
    monkeypatch.setenv("TRAINYARD_NVML", "off")
    monitor = Monitor(nvml)
    info = workers.WorkerInfo(name="nogpu", host="h", pid=1, queues=["q"], gpus=[0], stats=monitor.sample([0]))
    workers.register(conn, info, lambda pid: True)
    listed = run_cli("worker", "list", check=True, env={"COLUMNS": "400"}).stdout
    assert "no NVML" in listed
    shown = run_cli("worker", "show", "nogpu", check=True, env={"COLUMNS": "400"}).stdout
    assert "no NVML: NVML disabled (TRAINYARD_NVML=off)" in shown
    assert "memory" in shown and "disk (home)" in shown and "sample cost" in shown


# --- a real worker -------------------------------------------------------------------------

WAIT_FOR_GO = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.05)\nprint('went')"


@pytest.fixture
def keyspace_events(conn):
    """Redis keyspace notifications for string writes, so a test can block on a key's next SET."""
    old = conn.config_get("notify-keyspace-events")["notify-keyspace-events"]
    conn.config_set("notify-keyspace-events", "K$")
    yield
    conn.config_set("notify-keyspace-events", old)


def wait_worker_entry(
    conn, name: str, accept: Callable[[workers.WorkerInfo], bool], timeout: float = 30
) -> workers.WorkerInfo:
    """Block on the worker's registry key (each heartbeat SETs it) until ``accept`` holds for its contents."""
    key = keys.worker(name)
    db = conn.connection_pool.connection_kwargs.get("db", 0)
    pubsub = conn.pubsub()
    pubsub.subscribe(f"__keyspace@{db}__:{key}")
    deadline = time.monotonic() + timeout
    last = None
    try:
        while True:
            last = workers.get(conn, name)
            if last is not None and accept(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {name}: no matching heartbeat in {timeout}s; last entry: {last}")
            pubsub.get_message(timeout=1.0)  # woken by the key's next write
    finally:
        pubsub.close()


def _gpu_util(info: workers.WorkerInfo, index: int) -> int | None:
    return next((g["utilization_pct"] for g in info.stats.get("gpus") or () if g["index"] == index), None)


def test_worker_reports_stats_and_the_task_keeps_its_gpu_usage(conn, run_cli, tmp_path, keyspace_events):
    """A real worker on 2 of 4 stand-in GPUs (the stand-in NVML replaces real GPUs here)."""
    gpus_file = tmp_path / "gpus.json"
    idle = [_gpu(f"Stand-in {i}", 0) for i in range(4)]
    phase1 = [
        _gpu("Stand-in 0", 40, memory_used_mb=1000),
        _gpu("Stand-in 1", 80, memory_used_mb=3000),
        *idle[2:],
    ]
    phase2 = [_gpu("Stand-in 0", 100, processes=[{"pid": 4242, "used_memory_mb": 2000}]), *phase1[1:]]
    write_config(gpus_file, phase1)
    env = {"TRAINYARD_NVML": "standin", "TRAINYARD_STANDIN_GPUS_FILE": str(gpus_file)}
    go = tmp_path / "go"
    Queue.create("gpu")
    task = Task.create("busy-gpu", command=["python", "-c", WAIT_FOR_GO, str(go)]).enqueue("gpu")

    with WorkerProcess("-q", "gpu", "--gpus", "0,1", "--name", "mon", env=env) as worker:
        wait_worker_registered(conn, "mon")
        wait_status(task, TaskStatus.RUNNING)
        # a heartbeat that lists the task, then a later one: its sample was taken while the task ran
        first = wait_worker_entry(conn, "mon", lambda i: task.id in i.current and bool(i.stats))
        wait_worker_entry(conn, "mon", lambda i: i.heartbeat > first.heartbeat and _gpu_util(i, 0) == 40)
        write_config(gpus_file, phase2)
        wait_worker_entry(conn, "mon", lambda i: _gpu_util(i, 0) == 100)

        listed = json.loads(run_cli("worker", "list", "--json", check=True).stdout)
        (entry,) = [w for w in listed if w["name"] == "mon"]
        stats = entry["stats"]
        assert 0 <= stats["cpu_percent"] <= 100
        _check_usage(stats["memory"])
        assert [(g["index"], g["name"], g["utilization_pct"], g["memory_used_mb"]) for g in stats["gpus"]] == [
            (0, "Stand-in 0", 100, 2000),
            (1, "Stand-in 1", 80, 3000),
        ]
        assert stats["gpus"][0]["processes"] == 1

        table = run_cli("worker", "list", check=True, env={"COLUMNS": "400"}).stdout
        header = table.splitlines()[0].split()
        assert {"cpu", "mem", "heartbeat"} <= set(header) and "util/mem" in table.splitlines()[0]
        assert "0:100%/2000MB 1:80%/3000MB" in table

        shown = run_cli("worker", "show", "mon", check=True, env={"COLUMNS": "400"}).stdout
        assert "Stand-in 0: 100% util, 2000 / 16384 MB, 40 C, 1 process(es)" in shown

        go.touch()
        done = wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED)
        assert done.status == TaskStatus.COMPLETED, worker.output()

    runtime = Task.get(task.id).data.runtime
    assert runtime.gpus == ["0", "1"]
    usage = runtime.gpu_usage
    assert set(usage) == {"0", "1"}
    assert usage["0"]["utilization_max_pct"] == 100
    assert 40 < usage["0"]["utilization_mean_pct"] < 100  # samples at 40 % and at 100 %
    assert usage["0"]["memory_max_mb"] == 2000
    assert usage["1"]["utilization_max_pct"] == usage["1"]["utilization_mean_pct"] == 80
    assert usage["1"]["memory_max_mb"] == 3000 and usage["1"]["memory_total_mb"] == 16384
    assert usage["0"]["samples"] >= 2 and usage["1"]["samples"] >= 2
