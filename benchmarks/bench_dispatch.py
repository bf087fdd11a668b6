"""Dispatch latency, throughput and worker memory: a trainyard worker against raw RQ workers.

Run from the repository root::

    python benchmarks/bench_dispatch.py [--samples 200] [--tasks 200] [--json-out benchmarks/results/dispatch.json]

Everything runs against one throwaway redis-server (no persistence), emptied with FLUSHALL
before every measurement. Workers are separate processes started (and always stopped) by this
script; client, workers, tasks and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from common import (
    REPO,
    ChildProcesses,
    RedisServer,
    console,
    machine_facts,
    per_second,
    print_table,
    read_stamp,
    summarize,
    write_json,
)
from rq import Queue as RQQueue
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.worker_registration import REDIS_WORKER_KEYS

import trainyard
from trainyard.queues import keys, logs
from trainyard.queues.task import create_many

sys.path.insert(0, str(REPO))  # benchmarks.celeryjobs: the module Celery workers load by that name
from benchmarks import celeryjobs  # noqa: E402

QUEUE = "bench"  # the trainyard queue
RQ_QUEUE = "bench-rq"  # raw RQ's (trainyard queues are RQ lists too: never share a name)
# The task everywhere: a process that prints its own start time.
STAMP_CMD = [sys.executable, "-S", "-c", "import time,sys; sys.stdout.write(repr(time.time()))"]
TRUE_CMD = ["/bin/true"]
STAMP_FUNC = "benchmarks.rqjobs.run_stamp"  # runs STAMP_CMD with subprocess, returns the stamp
TRUE_FUNC = "benchmarks.rqjobs.run_true"
WORKER_KINDS = ("rq_worker", "rq_simple", "celery", "trainyard")
LABELS = {
    "popen": "Popen by hand",
    "rq_worker": "RQ Worker (fork)",
    "rq_simple": "RQ SimpleWorker",
    "celery": "Celery worker (prefork, 1 child)",
    "trainyard": "trainyard worker",
}
CELERY_QUEUE = "bench-celery"  # Celery's own list on the same Redis
CELERY_STAMP = "bench.run_stamp"  # celeryjobs.py: the same functions as rqjobs.py
CELERY_TRUE = "bench.run_true"
CELERY_ARGS = ["-c", "1", "-P", "prefork", "-l", "WARNING"]
CELERY_ARGS += ["--without-gossip", "--without-mingle", "--without-heartbeat"]  # no cluster chatter: one worker each
RQ_CLASSES = {"rq_worker": "rq.worker.Worker", "rq_simple": "rq.worker.SimpleWorker"}
OVERHEAD_TARGET_MS = 10.0  # trainyard median - Popen median
LATENCY_RATIO_TARGET = 1.2  # trainyard median / RQ Worker median
THROUGHPUT_TARGET = 0.8  # trainyard tasks/s / RQ Worker tasks/s, same worker count
SETTLE_S = 0.5  # after a worker registered: its listening loop is up
WAIT_S = 60.0  # longest wait for one task, or for a worker to start
POLL_S = 0.005
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "dispatch.json"
TRACE_WORKER = Path(__file__).resolve().parent / "trace_worker.py"


class Bench:
    """One Redis, the children started on it, and the environment they all get."""

    def __init__(self, server: RedisServer, children: ChildProcesses):
        self.server = server
        self.conn = server.client()
        self.children = children
        home = children.directory / "home"
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        # Workers, their tasks and the baseline Popen all get this environment.
        self.env = {
            **os.environ,
            "PYTHONPATH": pythonpath,
            "TRAINYARD_REDIS_URL": server.url,
            "TRAINYARD_HOME": str(home),
            "TRAINYARD_ARTIFACTS": str(home / "artifacts"),
        }
        self._names = 0
        self.celery_ids: list[str] = []  # the tasks of the current Celery throughput run
        celeryjobs.configure(server.url)

    def reset(self) -> None:
        """An empty database holding only the trainyard benchmark queue."""
        self.conn.flushall()
        trainyard.Queue.create(QUEUE, connection=self.conn, exist_ok=True)

    def rq_queue(self) -> RQQueue:
        return RQQueue(RQ_QUEUE, connection=self.conn, serializer=JSONSerializer)

    # -- workers ---------------------------------------------------------------------------
    def worker_argv(self, kind: str, name: str, burst: bool, launcher: list[str] | None = None) -> list[str]:
        if kind == "trainyard":
            argv = [*(launcher or [sys.executable, "-m", "trainyard"]), "worker", "-q", QUEUE, "--cpu-only"]
            argv += ["--name", name]
        elif kind == "celery":
            if burst:
                raise ValueError("Celery workers have no burst mode")
            argv = [sys.executable, "-m", "celery", "-A", "benchmarks.celeryjobs", "worker", "-Q", CELERY_QUEUE]
            return [*argv, "-n", f"{name}@bench", *CELERY_ARGS]
        else:
            argv = [sys.executable, "-m", "rq.cli", "worker", "-u", self.server.url, "-w", RQ_CLASSES[kind]]
            argv += ["-S", "json", "-P", str(REPO), "-n", name]
        if burst:
            argv.append("--burst")
        return argv if kind == "trainyard" else [*argv, RQ_QUEUE]

    def start_workers(
        self, kind: str, count: int, burst: bool = False, launcher: list[str] | None = None, wait: bool = True
    ) -> list[WorkerProc]:
        started = []
        for _ in range(count):
            self._names += 1
            name = f"bench-{kind}-{self._names}"
            now = time.perf_counter()
            proc = self.children.start(self.worker_argv(kind, name, burst, launcher), name, env=self.env)
            started.append(WorkerProc(kind, name, proc, now))
        if wait:
            self.wait_ready(started)
        return started

    def is_registered(self, worker: WorkerProc) -> bool:
        if worker.kind == "trainyard":
            return bool(self.conn.sismember(keys.WORKERS, worker.name))
        if worker.kind == "celery":
            return bool(self.conn.exists(celeryjobs.READY_PREFIX + f"{worker.name}@bench"))
        return bool(self.conn.sismember(REDIS_WORKER_KEYS, f"rq:worker:{worker.name}"))

    def wait_ready(self, workers: list[WorkerProc], settle: float = SETTLE_S) -> None:
        """Until every worker has registered (its start-up time is noted), then ``settle`` more."""
        deadline = time.monotonic() + WAIT_S
        pending = list(workers)
        while pending:
            for worker in list(pending):
                if self.is_registered(worker):
                    worker.startup_s = time.perf_counter() - worker.started
                    pending.remove(worker)
                elif worker.proc.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited ({worker.proc.returncode}):\n{self.tail(worker)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pending[0].name} did not register within {WAIT_S:g}s")
            time.sleep(POLL_S)
        time.sleep(settle)

    def stop(self, workers: list[WorkerProc]) -> None:
        self.children.stop([w.proc for w in workers])

    def tail(self, worker: WorkerProc) -> str:
        return self.children.tail(worker.proc)

    def check_alive(self, workers: list[WorkerProc]) -> None:
        for worker in workers:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"{worker.name} exited ({worker.proc.returncode}):\n{self.tail(worker)}")


class WorkerProc:
    """A worker process this script started."""

    def __init__(self, kind: str, name: str, proc: subprocess.Popen, started: float):
        self.kind = kind
        self.name = name
        self.proc = proc
        self.started = started  # perf_counter at Popen
        self.startup_s: float | None = None  # Popen -> registered

    def memory(self) -> dict[str, float]:
        """The worker process's RSS and USS, and the RSS of it with its child processes (an idle
        worker's children are its own: Celery's pool process; tasks are not running)."""
        proc = psutil.Process(self.proc.pid)
        info = proc.memory_full_info()
        tree = info.rss + sum(child.memory_info().rss for child in proc.children(recursive=True))
        return {"rss_mib": info.rss / 2**20, "uss_mib": info.uss / 2**20, "tree_rss_mib": tree / 2**20}


# -- 1. dispatch latency ----------------------------------------------------------------------
# A sampler runs one task and returns (enqueue -> process start, enqueue -> result seen) in seconds.
Sampler = Callable[[int], tuple[float, float]]


def popen_sampler(bench: Bench) -> Sampler:
    def sample(_: int) -> tuple[float, float]:
        t0 = time.time()
        proc = subprocess.Popen(STAMP_CMD, stdout=subprocess.PIPE, env=bench.env)
        out, _ = proc.communicate(timeout=WAIT_S)
        t1 = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"the stamp command exited {proc.returncode}")
        return float(out) - t0, t1 - t0

    return sample


def rq_sampler(bench: Bench) -> Sampler:
    queue = bench.rq_queue()

    def sample(_: int) -> tuple[float, float]:
        t0 = time.time()
        job = queue.enqueue(STAMP_FUNC, STAMP_CMD)
        result = job.latest_result(timeout=int(WAIT_S))
        t1 = time.time()
        if result is None:
            raise RuntimeError(f"RQ job {job.id}: no result within {WAIT_S:g}s")
        if result.type != Result.Type.SUCCESSFUL:
            raise RuntimeError(f"RQ job {job.id} failed: {result.exc_string}")
        return float(result.return_value) - t0, t1 - t0

    return sample


def celery_sampler(bench: Bench) -> Sampler:
    app = celeryjobs.app

    def sample(_: int) -> tuple[float, float]:
        t0 = time.time()
        result = app.send_task(CELERY_STAMP, args=[STAMP_CMD], queue=CELERY_QUEUE)
        value = result.get(timeout=WAIT_S)
        t1 = time.time()
        result.forget()
        return float(value) - t0, t1 - t0

    return sample


def trainyard_sampler(bench: Bench) -> Sampler:
    conn = bench.conn

    def sample(i: int) -> tuple[float, float]:
        task = trainyard.Task.create(f"stamp-{i}", command=STAMP_CMD, connection=conn)
        t0 = time.time()
        task.enqueue(QUEUE)
        task.wait(timeout=WAIT_S)
        t1 = time.time()
        if task.status != trainyard.TaskStatus.COMPLETED:
            text = "\n".join(line.text for line in logs.read(conn, task.id))
            raise RuntimeError(f"task {task.id} ended {task.status.value}:\n{text}")
        return read_stamp(conn, task.id) - t0, t1 - t0

    return sample


def run_samples(
    samplers: dict[str, Sampler], warmup: int, samples: int, gap: float
) -> dict[str, tuple[list[float], list[float]]]:
    """``warmup`` untimed rounds, then ``samples`` timed ones; each round runs every sampler once,
    in turn, one task at a time, ``gap`` s apart. Returns (latencies, round trips) per sampler."""
    got: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in samplers}
    for i in range(warmup + samples):
        for name, sample in samplers.items():
            time.sleep(gap)  # the worker finishes its bookkeeping and is idle again
            latency, roundtrip = sample(i)
            if i >= warmup:
                got[name][0].append(latency)
                got[name][1].append(roundtrip)
    return got


def latency_entry(kind: str, latencies: list[float], roundtrips: list[float]) -> dict[str, Any]:
    ms = summarize([x * 1000 for x in latencies])
    return {
        "label": LABELS[kind],
        "latency_ms": {k: round(v, 3) for k, v in ms.items()},
        "roundtrip_ms": {k: round(v, 3) for k, v in summarize([x * 1000 for x in roundtrips]).items()},
        "samples_ms": [round(x * 1000, 3) for x in latencies],
    }


def measure_latency(bench: Bench, samples: int, warmup: int, gap: float) -> tuple[dict, dict]:
    """Every row of the latency table, and the idle workers' memory (fresh and after the samples).

    The baseline Popen samples are taken alternately with each worker's samples, so each worker
    is compared with the baseline of the same minutes (a busy neighbour slows both alike); the
    baseline row holds all of them.
    """
    results: dict[str, Any] = {"popen": None}
    memory = {}
    baseline: tuple[list[float], list[float]] = ([], [])
    popen = popen_sampler(bench)
    for kind in WORKER_KINDS:
        bench.reset()
        (worker,) = bench.start_workers(kind, 1)
        fresh = worker.memory()
        try:
            sampler = {"trainyard": trainyard_sampler, "celery": celery_sampler}.get(kind, rq_sampler)(bench)
            got = run_samples({"popen": popen, kind: sampler}, warmup, samples, gap)
            time.sleep(SETTLE_S)
            after = worker.memory()
            bench.check_alive([worker])
        finally:
            bench.stop([worker])
        results[kind] = latency_entry(kind, *got[kind])
        paired = latency_entry("popen", *got["popen"])["latency_ms"]["median"]
        results[kind]["paired_popen_median_ms"] = paired
        results[kind]["overhead_vs_popen_ms"] = round(results[kind]["latency_ms"]["median"] - paired, 3)
        results[kind]["worker_startup_s"] = round(worker.startup_s or 0.0, 3)
        baseline[0].extend(got["popen"][0])
        baseline[1].extend(got["popen"][1])
        memory[kind] = {
            "label": LABELS[kind],
            "fresh_rss_mib": round(fresh["rss_mib"], 1),
            "fresh_uss_mib": round(fresh["uss_mib"], 1),
            "rss_mib": round(after["rss_mib"], 1),
            "uss_mib": round(after["uss_mib"], 1),
            "tree_rss_mib": round(after["tree_rss_mib"], 1),
        }
        report_progress(kind, results[kind])
    results["popen"] = latency_entry("popen", *baseline)
    results["popen"]["overhead_vs_popen_ms"] = 0.0
    report_progress("popen", results["popen"])
    return results, memory


def report_progress(kind: str, entry: dict[str, Any]) -> None:
    ms = entry["latency_ms"]
    console.print(
        f"  latency {LABELS[kind]}: median {ms['median']:.2f} ms, p99 {ms['p99']:.2f} ms ({ms['count']} samples)",
        style="dim",
    )


# -- 2. throughput ------------------------------------------------------------------------------
def enqueue_bulk(bench: Bench, kind: str, n: int) -> None:
    """``n`` /bin/true tasks in one round trip: create_many for trainyard, enqueue_many for RQ."""
    if kind == "trainyard":
        create_many([{"name": f"true-{i}", "command": TRUE_CMD} for i in range(n)], queue=QUEUE, connection=bench.conn)
    elif kind == "celery":  # no bulk call: one publish per task on one producer connection
        app = celeryjobs.app
        with app.producer_or_acquire() as producer:
            bench.celery_ids = [app.send_task(CELERY_TRUE, queue=CELERY_QUEUE, producer=producer).id for _ in range(n)]
    else:
        bench.rq_queue().enqueue_many([RQQueue.prepare_data(TRUE_FUNC) for _ in range(n)])


def done_count(bench: Bench, kind: str) -> tuple[int, int]:
    """(tasks ended, of which failed)."""
    conn = bench.conn
    if kind == "celery":  # the result backend's keys of this run's tasks
        names = [f"celery-task-meta-{i}" for i in bench.celery_ids]
        done = int(conn.exists(*names)) if names else 0
        if done < len(names):
            return done, 0
        failed = sum(json.loads(raw).get("status") != "SUCCESS" for raw in conn.mget(names) if raw)
        return done, failed
    with conn.pipeline(transaction=False) as pipe:
        if kind == "trainyard":
            for status in ("completed", "failed", "aborted"):
                pipe.zcard(keys.status_index(status))
            completed, failed, aborted = pipe.execute()
            return completed + failed + aborted, failed + aborted
        pipe.zcard(f"rq:finished:{RQ_QUEUE}")
        pipe.zcard(f"rq:failed:{RQ_QUEUE}")
        finished, failed = pipe.execute()
        return finished + failed, failed


def wait_done(bench: Bench, kind: str, n: int, workers: list[WorkerProc], burst: bool) -> int:
    """Block until ``n`` tasks have ended; returns how many failed."""
    deadline = time.monotonic() + WAIT_S + n
    while True:
        done, failed = done_count(bench, kind)
        if done >= n:
            return failed
        if not burst:
            bench.check_alive(workers)
        elif all(w.proc.poll() is not None for w in workers):
            raise RuntimeError(f"{LABELS[kind]}: burst workers exited with {done} of {n} tasks done")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{LABELS[kind]}: {done} of {n} tasks done before the deadline")
        time.sleep(POLL_S)


def throughput_warm(bench: Bench, kind: str, count: int, n: int) -> dict[str, Any]:
    """Workers started on an empty queue and idle; then bulk-enqueue, time until all ended."""
    bench.reset()
    workers = bench.start_workers(kind, count)
    try:
        start = time.perf_counter()
        enqueue_bulk(bench, kind, n)
        failed = wait_done(bench, kind, n, workers, burst=False)
        elapsed = time.perf_counter() - start
    finally:
        bench.stop(workers)
    return {
        "label": LABELS[kind],
        "workers": count,
        "tasks": n,
        "failed": failed,
        "seconds": round(elapsed, 4),
        "per_second": round(per_second(n, elapsed), 1),
        "worker_startup_s": round(max(w.startup_s or 0.0 for w in workers), 3),
    }


def throughput_burst(bench: Bench, kind: str, count: int, n: int) -> dict[str, Any]:
    """Tasks pre-enqueued, then burst workers started: start-up is in the figure."""
    bench.reset()
    enqueue_bulk(bench, kind, n)
    start = time.perf_counter()
    workers = bench.start_workers(kind, count, burst=True, wait=False)
    try:
        failed = wait_done(bench, kind, n, workers, burst=True)
        done = time.perf_counter() - start
        for worker in workers:
            worker.proc.wait(timeout=WAIT_S)
        exited = time.perf_counter() - start
    finally:
        bench.stop(workers)
    return {
        "label": LABELS[kind],
        "workers": count,
        "tasks": n,
        "failed": failed,
        "seconds_to_done": round(done, 4),
        "per_second": round(per_second(n, done), 1),
        "seconds_to_exit": round(exited, 4),
        "exit_codes": [w.proc.returncode for w in workers],
    }


def measure_throughput(bench: Bench, n: int, counts: list[int], burst: bool) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"warm": [], "burst": []}
    modes = [("warm", throughput_warm)] + ([("burst", throughput_burst)] if burst else [])
    for mode, measure in modes:
        for count in counts:
            for kind in WORKER_KINDS:
                if mode == "burst" and kind == "celery":
                    continue  # Celery workers have no burst mode
                entry = measure(bench, kind, count, n)
                out[mode].append({"kind": kind, **entry})
                console.print(
                    f"  throughput ({mode}) {LABELS[kind]} x{count}: {entry['per_second']:.1f} tasks/s", style="dim"
                )
    return out


# -- profile: where trainyard's dispatch time goes ----------------------------------------------
STAGES = [  # (stage recorded by trace_worker.py, label); times are since the enqueue call
    ("enqueue_end", "enqueue call returned"),
    ("event_seen", "queued event read by the listener thread"),
    ("claim_begin", "claim Lua sent (main thread woke)"),
    ("claim_end", "claim Lua returned"),
    ("start_end", "start transaction done (record running)"),
    ("run_begin", "task thread running"),
    ("run_folder_end", "run folder created"),
    ("reporter_end", "Reporter started"),
    ("prepare_end", "launch spec prepared (prepare step)"),
    ("spawn_begin", "Popen called"),
    ("spawn_end", "Popen returned"),
    ("process_start", "task process's own stamp"),
    ("set_pgid_end", "pgid stored in the claim"),
]


def trace_dispatch(
    bench: Bench, samples: int, warmup: int, gap: float, trace: Path, pstats_path: Path | None
) -> dict[str, Any]:
    """``samples`` sequential dispatches to a trainyard worker run through trace_worker.py: the
    median time from the enqueue call to each stage it records (and the cProfile, if asked)."""
    launcher = [sys.executable, str(TRACE_WORKER), "--trace", str(trace)]
    if pstats_path is not None:
        launcher += ["--cprofile", str(pstats_path)]
    bench.reset()
    (worker,) = bench.start_workers("trainyard", 1, launcher=launcher)
    measured: list[tuple[str, float, float, float]] = []  # task id, enqueue call, its return, stamp

    def sample(i: int) -> tuple[float, float]:
        task = trainyard.Task.create(f"stamp-{i}", command=STAMP_CMD, connection=bench.conn)
        t0 = time.time()
        task.enqueue(QUEUE)
        returned = time.time()
        task.wait(timeout=WAIT_S)
        stamp = read_stamp(bench.conn, task.id)
        if i >= warmup:
            measured.append((task.id, t0, returned, stamp))
        return stamp - t0, returned - t0

    try:
        latencies = run_samples({"trainyard": sample}, warmup, samples, gap)["trainyard"][0]
    finally:
        bench.stop([worker])  # SIGTERM: the worker drains and exits; the profile is written then
    points: dict[str, dict[str, float]] = {}
    for raw in trace.read_text().splitlines():
        item = json.loads(raw)
        points.setdefault(item["task"], {}).setdefault(item["stage"], item["t"])
    rows = []
    for stage, label in STAGES:
        values = []
        for task_id, t0, returned, stamp in measured:
            t = {"enqueue_end": returned, "process_start": stamp}.get(stage, points.get(task_id, {}).get(stage))
            if t is not None:
                values.append((t - t0) * 1000)
        if values:
            stats = summarize(values)
            rows.append(
                {
                    "stage": stage,
                    "label": label,
                    "median_ms": round(stats["median"], 3),
                    "p90_ms": round(stats["p90"], 3),
                    "count": stats["count"],
                }
            )
    rows.sort(key=lambda r: r["median_ms"])
    return {
        "samples": len(measured),
        "latency_median_ms": round(summarize([x * 1000 for x in latencies])["median"], 3),
        "stages": rows,
    }


def profile_trainyard(bench: Bench, samples: int, warmup: int, gap: float, out_stem: Path) -> dict[str, Any]:
    """Stage timestamps of trainyard dispatches, then the same again with every worker thread
    under cProfile (a run of its own: the profiler slows the worker down)."""
    pstats_path = out_stem.with_suffix(".worker.pstats")
    pstats_path.parent.mkdir(parents=True, exist_ok=True)
    directory = bench.children.directory
    traced = trace_dispatch(bench, samples, warmup, gap, directory / "trace.jsonl", None)
    cprofiled = trace_dispatch(bench, samples, warmup, gap, directory / "trace-cprofile.jsonl", pstats_path)
    if not pstats_path.exists():
        raise RuntimeError(f"the profiled worker wrote no {pstats_path}")
    functions = focus_rows(str(pstats_path))
    return {"traced": traced, "cprofiled": cprofiled, "pstats": str(pstats_path), "functions": functions}


# Functions of the dispatch path (and of a task's end, which bounds throughput), as
# (file name, function name) in the cProfile stats; "~" is a built-in.
PROFILE_FOCUS = [
    ("agent.py", "_try_claim"),
    ("dispatch.py", "claim"),
    ("dispatch.py", "start"),
    ("store.py", "update"),
    ("main.py", "model_copy"),
    ("threading.py", "start"),
    ("runfolder.py", "create_run_folder"),
    ("reporter.py", "__init__"),
    ("agent.py", "_prepare_local"),  # the worker's prepare step (older trainyard)
    ("modes.py", "__call__"),  # the worker's prepare step (Preparer, older trainyard)
    ("preparer.py", "__call__"),  # the worker's prepare step (Preparer)
    ("launch.py", "task_env"),
    ("process.py", "spawn"),
    ("subprocess.py", "_execute_child"),
    ("~", "<built-in method _posixsubprocess.fork_exec>"),
    ("dispatch.py", "set_pgid"),
    ("reporter.py", "close"),
    ("executor.py", "_store_log"),
    ("dispatch.py", "finish"),
    ("shutil.py", "rmtree"),
]


def focus_rows(path: str) -> list[dict[str, Any]]:
    """Calls and per-call times of the PROFILE_FOCUS functions in a saved profile."""
    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    rows = []
    for file_name, function in PROFILE_FOCUS:
        for (filename, line, name), (prim, calls, tottime, cumtime, _) in stats.items():
            if name == function and (filename == file_name or filename.endswith("/" + file_name)):
                rows.append(
                    {
                        "function": f"{file_name}:{line}({name})" if line else name,
                        "calls": calls,
                        "cum_ms_per_call": round(cumtime / prim * 1000, 3) if prim else 0.0,
                        "own_ms_per_call": round(tottime / calls * 1000, 3) if calls else 0.0,
                    }
                )
    return rows


def print_profile(profile: dict[str, Any]) -> None:
    for key, title in (("traced", "stage timestamps"), ("cprofiled", "same, under cProfile (slower)")):
        data = profile[key]
        rows, previous = [], 0.0
        for row in data["stages"]:
            rows.append(
                [
                    row["label"],
                    f"{row['median_ms']:.2f}",
                    f"{row['median_ms'] - previous:+.2f}",
                    f"{row['p90_ms']:.2f}",
                    str(row["count"]),
                ]
            )
            previous = row["median_ms"]
        print_table(
            f"trainyard dispatch, {title}: ms since the enqueue call "
            f"({data['samples']} samples, latency median {data['latency_median_ms']:.2f} ms)",
            ["stage", "median", "step", "p90", "seen"],
            rows,
        )
    print_table(
        "trainyard worker under cProfile (every thread): dispatch-path functions",
        ["function", "calls", "cumulative ms/call", "own ms/call"],
        [
            [r["function"], str(r["calls"]), f"{r['cum_ms_per_call']:.3f}", f"{r['own_ms_per_call']:.3f}"]
            for r in profile["functions"]
        ],
        caption=f"whole profile: {profile['pstats']} (python -m pstats)",
    )


# -- report -----------------------------------------------------------------------------------
def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(latency: dict, memory: dict, throughput: dict[str, list[dict]], samples: int) -> list[dict[str, Any]]:
    rq_ref = latency["rq_worker"]["latency_ms"]["median"]
    celery_ref = latency["celery"]["latency_ms"]["median"] if "celery" in latency else float("nan")
    rows = []
    for kind, entry in latency.items():
        ms = entry["latency_ms"]
        entry["vs_rq_worker"] = round(ratio(ms["median"], rq_ref), 3)
        entry["vs_celery"] = round(ratio(ms["median"], celery_ref), 3)
        paired = entry.get("paired_popen_median_ms")
        rows.append(
            [
                entry["label"],
                f"{ms['count']}",
                f"{ms['median']:.2f}",
                f"{ms['mean']:.2f}",
                f"{ms['p99']:.2f}",
                f"{ms['max']:.2f}",
                "-" if kind == "popen" else f"{paired:.2f}",
                "-" if kind == "popen" else f"{entry['overhead_vs_popen_ms']:+.2f}",
                f"{entry['vs_rq_worker']:.2f}x",
                f"{entry['vs_celery']:.2f}x",
                f"{entry['roundtrip_ms']['median']:.2f}",
            ]
        )
    print_table(
        f"Dispatch latency, idle worker: enqueue call -> task process started (ms; {samples} samples per worker)",
        [
            "measurement",
            "samples",
            "median",
            "mean",
            "p99",
            "max",
            "paired Popen",
            "vs Popen",
            "/ RQ Worker",
            "/ Celery",
            "round trip",
        ],
        rows,
        caption=(
            "paired Popen: median of the baseline samples taken alternately with that worker's; vs Popen: "
            "median - paired Popen; / RQ Worker, / Celery: median ratio; round trip: median, enqueue call -> result "
            "(RQ, Celery) or completed status (trainyard) seen by the client"
        ),
    )

    for mode, title in (
        ("warm", "Throughput, /bin/true tasks: workers idle on an empty queue, then one bulk enqueue"),
        ("burst", "Throughput, /bin/true tasks: pre-enqueued, burst workers started (start-up included)"),
    ):
        entries = throughput.get(mode) or []
        if not entries:
            continue
        refs = {e["workers"]: e["per_second"] for e in entries if e["kind"] == "rq_worker"}
        celery = {e["workers"]: e["per_second"] for e in entries if e["kind"] == "celery"}
        rows = []
        for e in entries:
            e["vs_rq_worker"] = round(ratio(e["per_second"], refs[e["workers"]]), 3)
            e["vs_celery"] = round(ratio(e["per_second"], celery.get(e["workers"], float("nan"))), 3)
            seconds = e["seconds"] if mode == "warm" else e["seconds_to_done"]
            extra = f"{e['worker_startup_s']:.2f}" if mode == "warm" else f"{e['seconds_to_exit']:.2f}"
            rows.append(
                [
                    e["label"],
                    str(e["workers"]),
                    f"{e['tasks']:,}",
                    f"{seconds:.2f}",
                    f"{e['per_second']:.1f}",
                    f"{e['vs_rq_worker']:.2f}x",
                    "-" if e["workers"] not in celery else f"{e['vs_celery']:.2f}x",
                    extra,
                    str(e["failed"]),
                ]
            )
        extra_col = "worker start-up s" if mode == "warm" else "all exited s"
        print_table(
            title,
            ["measurement", "workers", "tasks", "seconds", "tasks/s", "vs RQ Worker", "vs Celery", extra_col, "failed"],
            rows,
            caption=(
                "seconds: bulk enqueue -> every task ended; start-up: worker Popen -> registered (not in the figure)"
                if mode == "warm"
                else "seconds: worker Popen -> every task ended; all exited: -> every burst worker exited"
            ),
        )

    print_table(
        "Idle worker memory (psutil)",
        ["worker", "RSS fresh MiB", "RSS after samples MiB", "USS after samples MiB", "with its children RSS MiB"],
        [
            [
                m["label"],
                f"{m['fresh_rss_mib']:.1f}",
                f"{m['rss_mib']:.1f}",
                f"{m['uss_mib']:.1f}",
                f"{m['tree_rss_mib']:.1f}",
            ]
            for m in memory.values()
        ],
        caption=(
            "fresh: right after it registered; after samples: idle after the latency samples; with its children: "
            "the worker and its own processes (Celery's pool child), idle"
        ),
    )

    ty = latency["trainyard"]
    targets = [
        {
            "target": f"trainyard overhead above starting the process by hand < {OVERHEAD_TARGET_MS:g} ms median",
            "value": ty["overhead_vs_popen_ms"],
            "threshold": OVERHEAD_TARGET_MS,
            "unit": "ms",
            "met": ty["overhead_vs_popen_ms"] < OVERHEAD_TARGET_MS,
        },
        {
            "target": f"trainyard enqueue-to-start <= {LATENCY_RATIO_TARGET}x raw RQ (Worker)",
            "value": ty["vs_rq_worker"],
            "threshold": LATENCY_RATIO_TARGET,
            "unit": "x",
            "met": ty["vs_rq_worker"] <= LATENCY_RATIO_TARGET,
        },
    ]
    for e in throughput.get("warm", []):
        if e["kind"] == "trainyard":
            targets.append(
                {
                    "target": f"trainyard throughput >= {THROUGHPUT_TARGET}x raw RQ (Worker), {e['workers']} worker(s)",
                    "value": e["vs_rq_worker"],
                    "threshold": THROUGHPUT_TARGET,
                    "unit": "x",
                    "met": e["vs_rq_worker"] >= THROUGHPUT_TARGET,
                }
            )

    def show(value: float, unit: str) -> str:
        return f"{value:.2f} ms" if unit == "ms" else f"{value:.2f}x"

    print_table(
        "Targets",
        ["target", "value", "threshold", "status"],
        [
            [
                t["target"],
                show(t["value"], t["unit"]),
                show(t["threshold"], t["unit"]),
                "[green]met[/]" if t["met"] else "[red]missed[/]",
            ]
            for t in targets
        ],
    )
    return targets


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the context managers: children are stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="latency samples per row (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed samples before each row (default 5)")
    parser.add_argument(
        "--gap", type=float, default=0.02, help="seconds between latency samples, so the worker is idle (default 0.02)"
    )
    parser.add_argument("--tasks", type=int, default=200, help="tasks per throughput run (default 200)")
    parser.add_argument(
        "--workers", default="1,2,4", help="worker counts for the throughput runs, comma-separated (default 1,2,4)"
    )
    parser.add_argument(
        "--no-burst", action="store_true", help="skip the burst-mode throughput runs (start-up included)"
    )
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON, help="result file (default: %(default)s)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also time the stages of trainyard's dispatch path and cProfile the worker (stats saved beside the JSON)",
    )
    parser.add_argument("--profile-samples", type=int, default=50, help="samples for --profile (default 50)")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    if args.samples < 1 or args.tasks < 1 or args.warmup < 0 or not counts or min(counts) < 1:
        parser.error("--samples, --tasks and --workers must be at least 1, --warmup at least 0")

    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    profile = None
    with RedisServer() as server, ChildProcesses(prefix="trainyard-bench-dispatch-") as children:
        bench = Bench(server, children)
        facts = machine_facts(bench.conn)
        console.print(
            f"redis {facts['redis_version']} at {server.url}, python {facts['python']}, {facts['cpu_count']} CPUs; "
            f"{args.samples} latency samples, {args.tasks} tasks per throughput run"
        )
        latency, memory = measure_latency(bench, args.samples, args.warmup, args.gap)
        throughput = measure_throughput(bench, args.tasks, counts, burst=not args.no_burst)
        targets = report(latency, memory, throughput, args.samples)
        if args.profile:
            profile = profile_trainyard(bench, args.profile_samples, args.warmup, args.gap, args.json_out)
            print_profile(profile)
        bench.conn.close()
    wall = time.perf_counter() - started

    payload = {
        "samples": args.samples,
        "warmup": args.warmup,
        "gap_s": args.gap,
        "tasks": args.tasks,
        "worker_counts": counts,
        "stamp_command": STAMP_CMD,
        "rq_functions": {"latency": STAMP_FUNC, "throughput": TRUE_FUNC},
        "rq_serializer": "rq.serializers.JSONSerializer",
        "rq_worker_classes": RQ_CLASSES,
        "latency": latency,
        "throughput": throughput,
        "memory": memory,
        "targets": targets,
        "profile": profile,
        "wall_seconds": round(wall, 3),
    }
    path = write_json(args.json_out, "dispatch", payload, facts)
    console.print(f"results written to {path} (ran {wall:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
