"""Pipeline hop latency: how long a step waits after its parent is done, with real workers.

Run from the repository root::

    python benchmarks/bench_pipeline.py [--steps 20] [--runs 3] [--json-out benchmarks/results/pipeline.json]

One throwaway redis-server (no persistence) and a temp ``TRAINYARD_HOME``. A linear pipeline of
``--steps`` trivial steps (each clones one template task whose process prints its own start time)
runs ``--runs`` times: with the controller as a task on a services worker and the steps on CPU
workers (separate processes), with the controller in this process and the steps on the CPU
workers (traced: the controller's stages are timed), and with ``start_locally(run_steps_locally=True)``
(controller and an in-process worker here). Client, workers, tasks and server share the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from common import (
    REPO,
    ChildProcesses,
    RedisServer,
    console,
    machine_facts,
    print_table,
    read_stamp,
    summarize,
    write_json,
)

import trainyard
from trainyard.controller import engine
from trainyard.queues import keys, logs
from trainyard.queues.store import TaskStore

SERVICES_QUEUE = "services"
STEP_QUEUE = "cpu"
PROJECT = "bench"
# The step template's command: a process that prints its own start time (as in bench_dispatch.py).
STAMP_CMD = [sys.executable, "-S", "-c", "import time,sys; sys.stdout.write(repr(time.time()))"]
HOP_TARGET_MS = 50.0  # median, parent done -> child running
# ClearML's documented polling: PipelineController(pool_frequency=0.2) is in minutes (12 s between
# the controller's checks of its steps), and clearml-agent looks at its queues every 5 s.
CLEARML_POOL_S = 12.0
CLEARML_AGENT_POLL_S = 5.0
SETTLE_S = 0.3  # after the workers registered
WAIT_S = 120.0  # longest wait for one pipeline, or for a worker to register
POLL_S = 0.005
POPEN_SAMPLES = 20
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "pipeline.json"

MODES = {
    "services": "start(queue='services'): controller on a services worker, steps on CPU worker(s)",
    "traced": "start_locally(): controller in this process (stages timed), steps on CPU worker(s)",
    "local": "start_locally(run_steps_locally=True): controller and worker in this process",
}
SHORT = {
    "services": "services controller + CPU worker",
    "traced": "controller here (traced) + CPU worker",
    "local": "start_locally(run_steps_locally)",
    "popen": "Popen by hand (process start)",
}


class Bench:
    """One Redis, the worker processes started on it, and the environment they all get."""

    def __init__(self, server: RedisServer, children: ChildProcesses):
        self.server = server
        self.conn = server.client()
        self.children = children
        self.home = children.directory / "home"
        self.overrides = {
            "TRAINYARD_REDIS_URL": server.url,
            "TRAINYARD_HOME": str(self.home),
            "TRAINYARD_ARTIFACTS": str(self.home / "artifacts"),
        }
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        self.env = {**os.environ, "PYTHONPATH": pythonpath, **self.overrides}
        self.workers: dict[str, subprocess.Popen] = {}
        self.descendants: dict[int, psutil.Process] = {}
        self.conn.flushall()
        for queue in (SERVICES_QUEUE, STEP_QUEUE):
            trainyard.Queue.create(queue, connection=self.conn, exist_ok=True)
        self.template = trainyard.Task.create("hop", PROJECT, command=STAMP_CMD, connection=self.conn)

    # -- workers ---------------------------------------------------------------------------------
    def start_workers(self, cpu_workers: int) -> dict[str, float]:
        """One services worker (2 slots) and ``cpu_workers`` CPU workers; returns each one's
        start-up (Popen -> registered) in seconds."""
        argvs = {f"bench-services-{os.getpid()}": ["-q", SERVICES_QUEUE, "--services-mode", "2"]}
        for i in range(cpu_workers):
            argvs[f"bench-cpu{i + 1}-{os.getpid()}"] = ["-q", STEP_QUEUE, "--cpu-only"]
        started = {}
        for name, args in argvs.items():
            argv = [sys.executable, "-m", "trainyard", "worker", *args, "--name", name]
            started[name] = time.perf_counter()
            self.workers[name] = self.children.start(argv, name, env=self.env)
        startup = {}
        deadline = time.monotonic() + WAIT_S
        while len(startup) < len(started):
            for name, proc in self.workers.items():
                if name in startup:
                    continue
                if self.conn.sismember(keys.WORKERS, name):
                    startup[name] = round(time.perf_counter() - started[name], 3)
                elif proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.children.tail(proc)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not register within {WAIT_S:g}s")
            time.sleep(POLL_S)
        time.sleep(SETTLE_S)
        return startup

    def check_workers(self) -> None:
        for name, proc in self.workers.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.children.tail(proc)}")

    def stop_workers(self) -> None:
        """SIGTERM (drain), then SIGKILL; then whatever they had started and left is killed, by pid."""
        for proc in self.workers.values():
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    self.descendants[child.pid] = child
        self.children.stop(list(self.workers.values()))
        for child in self.descendants.values():
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
                    child.wait(timeout=5)

    def leftovers(self) -> list[int]:
        alive = [p.pid for p in self.workers.values() if p.poll() is None]
        alive += [p.pid for p in self.descendants.values() if _running(p)]
        return alive

    def worker_log(self, name_part: str) -> str:
        for name, proc in self.workers.items():
            if name_part in name:
                return self.children.tail(proc, 30)
        return ""

    # -- pipelines ------------------------------------------------------------------------------
    def pipeline(self, steps: int, name: str) -> trainyard.Pipeline:
        """A linear pipeline: step i clones the template, its parent is step i-1."""
        pipe = trainyard.Pipeline(name, project=PROJECT, default_queue=STEP_QUEUE, connection=self.conn)
        for i in range(steps):
            pipe.add_step(step_name(i), base_task=self.template, parents=[step_name(i - 1)] if i else [])
        return pipe

    def run_once(self, mode: str, steps: int) -> dict[str, Any]:
        """One pipeline run in ``mode``; returns its timings (every hop included)."""
        pipe = self.pipeline(steps, f"chain-{mode}")
        t0 = time.time()
        if mode == "services":
            pipe.start(queue=SERVICES_QUEUE)
            run = pipe.wait(timeout=WAIT_S)
        elif mode == "traced":
            run = pipe.start_locally()
        else:
            run = pipe.start_locally(run_steps_locally=True)
        t1 = time.time()
        if run.status != "completed":
            detail = self.worker_log("services") if mode == "services" else ""
            log = "\n".join(line.text for line in logs.read(self.conn, run.id))
            raise RuntimeError(f"{mode} pipeline {run.id} ended {run.status}: {run.message}\n{log}\n{detail}")
        return collect(self.conn, run, steps, t0, t1)


def step_name(i: int) -> str:
    return f"s{i:03d}"


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def collect(conn, run, steps: int, t0: float, t1: float) -> dict[str, Any]:
    """Every hop of a finished run, from the step task records and the steps' own start stamps."""
    store = TaskStore(conn)
    records = [store.get(run.state[step_name(i)].task_id) for i in range(steps)]
    stamps = [read_stamp(conn, r.id) for r in records]
    hops = []
    for i in range(1, steps):
        parent, child = records[i - 1], records[i]
        hops.append(
            {
                "child": step_name(i),
                "hop_ms": ms(stamps[i] - parent.ended),
                "controller_ms": ms(child.queued_at - parent.ended),
                "worker_ms": ms(child.started - child.queued_at),
                "process_ms": ms(stamps[i] - child.started),
                "parent_end_ms": ms(parent.ended - stamps[i - 1]),  # the parent's process stamp -> ended
                "cadence_ms": ms(stamps[i] - stamps[i - 1]),
            }
        )
    return {
        "run_id": run.id,
        "wall_s": round(t1 - t0, 4),
        "startup_s": round(stamps[0] - t0, 4),  # start() call -> first step running
        "tail_s": round(t1 - records[-1].ended, 4),  # last step ended -> pipeline seen completed
        "controller_ended_s": round((run.ended or t1) - t0, 4),
        "controller_started_s": round((store.get(run.id).started or t0) - t0, 4),  # its task's started
        "first_queued_s": round(records[0].queued_at - t0, 4),
        "hops": hops,
        "task_ids": [r.id for r in records],
    }


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- the controller's stages (this process) -----------------------------------------------------
class ControllerTrace:
    """Times the stages of the controller running in this process: a few Controller, TaskStore and
    Task methods are wrapped while the context is open (trainyard is not changed on disk).

    Each call appends (stage, key, begin, end, step status after) to ``marks``; the key is the
    step name, or the task id for ``enqueue``.
    """

    def __init__(self) -> None:
        self.marks: list[tuple[str, str, float, float, str]] = []
        self._lock = threading.Lock()

    def _add(self, stage: str, key: str, begin: float, status: str = "") -> None:
        with self._lock:
            self.marks.append((stage, key, begin, time.time(), status))

    @contextlib.contextmanager
    def installed(self) -> Iterator[ControllerTrace]:
        trace = self
        originals: list[tuple[Any, str, Any]] = []

        def patch(owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
            original = owner.__dict__[name]
            originals.append((owner, name, original))
            setattr(owner, name, make(original))

        def by_step(stage: str):
            def make(original):
                def traced(self, name, *args, **kwargs):
                    begin = time.time()
                    try:
                        return original(self, name, *args, **kwargs)
                    finally:
                        trace._add(stage, name, begin, self.run.state[name].status)

                return traced

            return make

        def save(original):
            def traced(self):
                begin = time.time()
                try:
                    return original(self)
                finally:
                    trace._add("save", "", begin)

            return traced

        def create(original):
            def traced(self, record, *args, **kwargs):
                begin = time.time()
                try:
                    return original(self, record, *args, **kwargs)
                finally:
                    trace._add("create", record.name, begin)

            return traced

        def enqueue(original):
            def traced(self, *args, **kwargs):
                begin = time.time()
                try:
                    return original(self, *args, **kwargs)
                finally:
                    trace._add("enqueue", self.id, begin)

            return traced

        patch(engine.Controller, "_sync", by_step("sync"))
        patch(engine.Controller, "_launch", by_step("launch"))
        patch(engine.Controller, "_build", by_step("build"))
        patch(engine.Controller, "_save", save)
        patch(TaskStore, "create", create)
        patch(trainyard.Task, "enqueue", enqueue)
        try:
            yield self
        finally:
            for owner, name, original in reversed(originals):
                setattr(owner, name, original)

    def stages(self, conn, result: dict[str, Any], steps: int) -> list[dict[str, float]]:
        """Per hop, each stage's end in ms since the parent's ``ended`` (from this run's marks)."""
        store = TaskStore(conn)
        ids = result["task_ids"]
        records = [store.get(task_id) for task_id in ids]
        out = []
        for i in range(1, steps):
            parent, child = step_name(i - 1), step_name(i)
            ended = records[i - 1].ended
            sync = next(
                (m for m in self.marks if m[0] == "sync" and m[1] == parent and m[4] == "completed"),
                None,
            )
            launch = next((m for m in self.marks if m[0] == "launch" and m[1] == child), None)
            build = next((m for m in self.marks if m[0] == "build" and m[1] == child), None)
            create = next((m for m in self.marks if m[0] == "create" and m[1] == child), None)
            enqueue = next((m for m in self.marks if m[0] == "enqueue" and m[1] == ids[i]), None)
            if not (sync and launch and build and create and enqueue):
                continue
            save = next((m for m in self.marks if m[0] == "save" and sync[3] <= m[2] <= launch[2]), None)
            points = {
                "woke": sync[2],
                "synced": sync[3],
                "saved": save[3] if save else sync[3],
                "launch": launch[2],
                "built": build[3],
                "created": create[3],
                "queued_at": records[i].queued_at,
                "enqueued": enqueue[3],
                "started": records[i].started,
            }
            out.append({k: ms(v - ended) for k, v in points.items()})
        return out


STAGE_LABELS = [
    ("woke", "controller woke: _sync(parent) begins (event read)"),
    ("synced", "_sync(parent) done: record read, step marked completed"),
    ("saved", "_save: run document written (+ pipeline event)"),
    ("launch", "_launch(child) begins (_launch_ready scan)"),
    ("built", "_build: template record read, clone built"),
    ("created", "TaskStore.create: child record stored"),
    ("queued_at", "child record's queued_at (inside Task.enqueue)"),
    ("enqueued", "Task.enqueue returned"),
    ("started", "child record's started (worker claimed it)"),
]


# -- cProfile of the controller -----------------------------------------------------------------
PROFILE_FOCUS = [
    ("engine.py", "execute"),
    ("engine.py", "_launch_ready"),
    ("engine.py", "_launch"),
    ("engine.py", "_build"),
    ("engine.py", "_base_task"),
    ("engine.py", "_sync"),
    ("engine.py", "_sync_all"),
    ("engine.py", "_save"),
    ("engine.py", "_check_queues"),
    ("engine.py", "_stop_flag"),
    ("runs.py", "save"),
    ("store.py", "get"),
    ("store.py", "create_many"),
    ("store.py", "update"),
    ("task.py", "enqueue"),
    ("newrecords.py", "clone_record"),
    ("broker.py", "require"),
    ("core.py", "xread"),
    ("main.py", "model_dump_json"),
    ("main.py", "model_validate_json"),
]


def profile_controller(bench: Bench, steps: int, out_stem: Path) -> dict[str, Any]:
    """One run of ``start_locally()`` (controller in this process, steps on the CPU workers) with
    cProfile on the controller's thread; stats saved beside the JSON."""
    path = out_stem.with_suffix(".controller.pstats")
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        result = bench.run_once("traced", steps)
    finally:
        profiler.disable()
    profiler.dump_stats(str(path))
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = []
    for file_name, function in PROFILE_FOCUS:
        for (filename, line, name), (prim, calls, _own, cumtime, _) in stats.items():
            if name == function and filename.endswith("/" + file_name):
                rows.append(
                    {
                        "function": f"{file_name}:{line}({name})",
                        "calls": calls,
                        "cum_ms_per_call": round(cumtime / prim * 1000, 3) if prim else 0.0,
                        "cum_ms_total": round(cumtime * 1000, 1),
                    }
                )
    hops = summarize([h["hop_ms"] for h in result["hops"]])
    return {"pstats": str(path), "functions": rows, "hop_median_ms_under_profile": round(hops["median"], 3)}


# -- baseline --------------------------------------------------------------------------------------
def popen_samples(env: dict[str, str], count: int) -> list[float]:
    """The stamp command started with subprocess by hand: Popen call -> its own start stamp (ms)."""
    out = []
    for _ in range(count):
        t0 = time.time()
        proc = subprocess.run(STAMP_CMD, capture_output=True, text=True, env=env, timeout=WAIT_S, check=True)
        out.append(ms(float(proc.stdout) - t0))
        time.sleep(0.01)
    return out


# -- series -----------------------------------------------------------------------------------------
def run_series(bench: Bench, mode: str, steps: int, count: int, warmup: int, trace: ControllerTrace | None):
    """``warmup`` untimed short runs, then ``count`` timed ones."""
    for _ in range(warmup):
        bench.run_once(mode, min(steps, 3))
    results = []
    stage_rows: list[dict[str, float]] = []
    for i in range(count):
        if trace is not None:
            trace.marks.clear()
            with trace.installed():
                result = bench.run_once(mode, steps)
            stage_rows += trace.stages(bench.conn, result, steps)
        else:
            result = bench.run_once(mode, steps)
        results.append(result)
        if mode != "local":
            bench.check_workers()
        hop = summarize([h["hop_ms"] for h in result["hops"]])
        console.print(
            f"  {SHORT[mode]} run {i + 1}/{count}: {result['wall_s']:.2f} s, hop median {hop['median']:.1f} ms, "
            f"max {hop['max']:.1f} ms",
            style="dim",
        )
    return series_entry(mode, results), stage_rows


def series_entry(mode: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    hops = [h for r in results for h in r["hops"]]

    def stats(key: str) -> dict[str, float]:
        return {k: round(v, 3) for k, v in summarize([h[key] for h in hops]).items()}

    def seconds(key: str) -> dict[str, float]:
        return {k: round(v, 4) for k, v in summarize([r[key] for r in results]).items()}

    return {
        "label": MODES[mode],
        "runs": len(results),
        "hops": len(hops),
        "hop_ms": stats("hop_ms"),
        "controller_ms": stats("controller_ms"),
        "worker_ms": stats("worker_ms"),
        "process_ms": stats("process_ms"),
        "parent_end_ms": stats("parent_end_ms"),
        "cadence_ms": stats("cadence_ms"),
        "wall_s": seconds("wall_s"),
        "startup_s": seconds("startup_s"),
        "controller_started_s": seconds("controller_started_s"),
        "first_queued_s": seconds("first_queued_s"),
        "tail_s": seconds("tail_s"),
        "controller_wait_per_run_s": round(
            summarize([sum(h["controller_ms"] for h in r["hops"]) / 1000 for r in results])["median"], 4
        ),
        "run_results": results,
    }


# -- report -------------------------------------------------------------------------------------------
def report(series: dict[str, dict], popen: dict[str, float], stages: list[dict], steps: int, workers: int) -> dict:
    popen_median = popen["median"]
    rows = []
    for mode, entry in series.items():
        hop = entry["hop_ms"]
        rows.append(
            [
                SHORT[mode],
                str(entry["hops"]),
                f"{hop['median']:.2f}",
                f"{hop['mean']:.2f}",
                f"{hop['p90']:.2f}",
                f"{hop['p99']:.2f}",
                f"{hop['max']:.2f}",
                f"{hop['median'] - popen_median:+.2f}",
            ]
        )
    rows.append(
        [
            SHORT["popen"],
            str(popen["count"]),
            f"{popen_median:.2f}",
            f"{popen['mean']:.2f}",
            f"{popen['p90']:.2f}",
            f"{popen['p99']:.2f}",
            f"{popen['max']:.2f}",
            "-",
        ]
    )
    print_table(
        f"Pipeline hop: parent done -> child running (ms; {steps}-step linear pipeline, {workers} CPU worker(s))",
        ["measurement", "hops", "median", "mean", "p90", "p99", "max", "vs Popen"],
        rows,
        caption=(
            "hop: the child's own process start stamp - the parent task record's ended; vs Popen: median - the "
            "median of starting the same command with subprocess by hand (the floor of any hop)"
        ),
    )

    rows = []
    for mode, entry in series.items():
        rows.append(
            [
                SHORT[mode],
                f"{entry['controller_ms']['median']:.2f} / {entry['controller_ms']['p99']:.2f}",
                f"{entry['worker_ms']['median']:.2f} / {entry['worker_ms']['p99']:.2f}",
                f"{entry['process_ms']['median']:.2f} / {entry['process_ms']['p99']:.2f}",
                f"{entry['parent_end_ms']['median']:.2f}",
                f"{entry['cadence_ms']['median']:.2f}",
            ]
        )
    print_table(
        "Where a hop goes (ms, median / p99)",
        ["measurement", "controller", "worker", "process start", "parent stamp->ended", "step cadence"],
        rows,
        caption=(
            "controller: parent ended -> child queued_at; worker: child queued_at -> started (claimed); process "
            "start: started -> the child's own stamp. Not in the hop: parent stamp->ended (the parent's process "
            "exits, its worker stores the log and ends it); step cadence: stamp to stamp"
        ),
    )

    rows = []
    for mode, entry in series.items():
        wall = entry["wall_s"]
        rows.append(
            [
                SHORT[mode],
                str(entry["runs"]),
                f"{wall['median']:.3f}",
                f"{wall['min']:.3f}",
                f"{wall['max']:.3f}",
                f"{entry['controller_started_s']['median']:.3f}",
                f"{entry['first_queued_s']['median']:.3f}",
                f"{entry['startup_s']['median']:.3f}",
                f"{entry['tail_s']['median']:.3f}",
                f"{wall['median'] / steps * 1000:.1f}",
            ]
        )
    print_table(
        f"Whole pipeline ({steps} steps): wall time in s",
        ["measurement", "runs", "median", "min", "max", "ctrl started", "1st queued", "1st running", "tail", "ms/step"],
        rows,
        caption=(
            "wall: start() / start_locally() call -> pipeline completed (wait() returned); then, medians since "
            "that call: the controller task's started, the first step's queued_at, the first step's own stamp; tail: "
            "last step ended -> completed seen"
        ),
    )

    if stages:
        rows, previous = [], 0.0
        for key, label in STAGE_LABELS:
            values = [s[key] for s in stages if key in s]
            if not values:
                continue
            st = summarize(values)
            rows.append([label, f"{st['median']:.2f}", f"{st['median'] - previous:+.2f}", f"{st['p90']:.2f}"])
            previous = st["median"]
        print_table(
            f"Controller stages (controller in this process, {len(stages)} hops): ms since the parent's ended",
            ["stage", "median", "step", "p90"],
            rows,
            caption="medians of each mark; 'step' is the difference from the row above",
        )

    ty = series["services"]
    edges = steps - 1
    clearml_wait = edges * CLEARML_POOL_S
    clearml = {
        "pool_frequency_s": CLEARML_POOL_S,
        "agent_poll_s": CLEARML_AGENT_POLL_S,
        "edges": edges,
        "controller_wait_lower_bound_s": clearml_wait,
        "hop_upper_bound_s": CLEARML_POOL_S + CLEARML_AGENT_POLL_S,
    }
    ratio = clearml_wait / ty["wall_s"]["median"]
    clearml["ratio_to_trainyard_wall"] = round(ratio, 1)
    print_table(
        f"Against ClearML's documented polling ({steps}-step linear pipeline, {edges} DAG edges)",
        ["system", "controller / hop", "worker pickup / hop", "controller waiting / run", "whole run"],
        [
            [
                "trainyard (measured, median)",
                f"{ty['controller_ms']['median']:.1f} ms",
                f"{ty['worker_ms']['median']:.1f} ms",
                f"{ty['controller_wait_per_run_s'] * 1000:.0f} ms",
                f"{ty['wall_s']['median']:.2f} s",
            ],
            [
                "ClearML (documented polling)",
                f"<= {CLEARML_POOL_S:g} s",
                f"<= {CLEARML_AGENT_POLL_S:g} s",
                f">= {clearml_wait:.0f} s",
                f">= {clearml_wait:.0f} s ({ratio:.0f}x)",
            ],
        ],
        caption=(
            f"ClearML: PipelineController(pool_frequency=0.2) minutes = {CLEARML_POOL_S:g} s between the controller's "
            f"checks of its steps, clearml-agent polls its queues every {CLEARML_AGENT_POLL_S:g} s. A step launched "
            f"at one check is seen done at a later one, so launches along a chain are >= {CLEARML_POOL_S:g} s apart "
            f"whatever the steps take: >= {edges} x {CLEARML_POOL_S:g} s. trainyard: the controller and the workers "
            "block on the Redis event stream and wake on the change; controller waiting / run = the sum of its "
            "hops' controller parts"
        ),
    )

    hop = ty["hop_ms"]["median"]
    target = {
        "target": f"pipeline hop (parent done -> child running) under {HOP_TARGET_MS:g} ms median",
        "value": hop,
        "threshold": HOP_TARGET_MS,
        "unit": "ms",
        "met": hop < HOP_TARGET_MS,
        "p99": ty["hop_ms"]["p99"],
    }
    print_table(
        "Targets",
        ["target", "value", "threshold", "status"],
        [
            [
                target["target"] + " (services controller, CPU worker)",
                f"{hop:.2f} ms (p99 {ty['hop_ms']['p99']:.2f})",
                f"{HOP_TARGET_MS:.2f} ms",
                "[green]met[/]" if target["met"] else "[red]missed[/]",
            ]
        ],
    )
    return {"target": target, "clearml": clearml}


def print_peers(services: dict[str, Any], peers: dict[str, dict], steps: int) -> None:
    """trainyard's services-mode hop beside the same chain in raw RQ and Celery."""
    ours = services["hop_ms"]["median"]
    rows = [["trainyard pipeline (services controller)", f"{ours:.1f}", f"{services['hop_ms']['p99']:.1f}", "1.00x"]]
    for peer in peers.values():
        hop = peer["hop_ms"]
        peer["trainyard_vs_peer"] = round(ours / hop["median"], 3) if hop["median"] else None
        rows.append([peer["label"], f"{hop['median']:.1f}", f"{hop['p99']:.1f}", f"{peer['trainyard_vs_peer']:.2f}x"])
    print_table(
        f"Hop of a {steps}-step linear chain: trainyard against raw RQ and Celery (ms)",
        ["chain", "hop median", "hop p99", "trainyard / this"],
        rows,
        caption=(
            "peers: child's process start - the parent job function's return (before the peer stores its result); "
            "trainyard: child's process start - the parent record's ended"
        ),
    )


def print_profile(profile: dict[str, Any]) -> None:
    print_table(
        f"Controller under cProfile (one run; hop median {profile['hop_median_ms_under_profile']:.2f} ms "
        "under the profiler)",
        ["function", "calls", "cumulative ms/call", "cumulative ms total"],
        [
            [r["function"], str(r["calls"]), f"{r['cum_ms_per_call']:.3f}", f"{r['cum_ms_total']:.1f}"]
            for r in profile["functions"]
        ],
        caption=f"whole profile: {profile['pstats']} (python -m pstats); xread's time is mostly waiting for steps",
    )


def join_new_threads(before: set[threading.Thread], timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait for the threads started since ``before`` that are still alive (the in-process step
    worker's event listener outlives start_locally() by up to its blocking-read time); returns
    each one's name and how long it went on after this call, so the Redis client is only closed
    once nothing reads from it."""
    t0 = time.perf_counter()
    out = []
    for thread in [t for t in threading.enumerate() if t not in before and t.is_alive()]:
        thread.join(timeout=max(0.1, timeout - (time.perf_counter() - t0)))
        out.append(
            {"name": thread.name, "alive_for_s": round(time.perf_counter() - t0, 3), "joined": not thread.is_alive()}
        )
    if out:
        names = ", ".join(f"{t['name']} ({t['alive_for_s']:.2f} s)" for t in out)
        console.print(f"  threads left by start_locally(run_steps_locally=True), waited for: {names}", style="dim")
    return out


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the context managers: children are stopped


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ while the block runs (start_locally's worker and its tasks read them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps of the linear pipeline (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="timed pipeline runs per mode (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed 3-step runs before each mode (default 1)")
    parser.add_argument("--cpu-workers", type=int, default=1, help="CPU worker processes for the steps (default 1)")
    parser.add_argument("--no-local", action="store_true", help="skip start_locally(run_steps_locally=True)")
    parser.add_argument("--no-trace", action="store_true", help="skip the traced in-process controller runs")
    parser.add_argument("--no-peers", action="store_true", help="skip the same chain in raw RQ and Celery")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON, help="result file (default: %(default)s)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the controller for one run (done anyway when the target is missed)",
    )
    args = parser.parse_args(argv)
    if args.steps < 2 or args.runs < 1 or args.warmup < 0 or args.cpu_workers < 1:
        parser.error("--steps must be at least 2, --runs and --cpu-workers at least 1, --warmup at least 0")

    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    lingering: list[dict[str, Any]] = []
    series: dict[str, dict] = {}
    stages: list[dict] = []
    profile = None
    peers: dict[str, dict] = {}
    with RedisServer() as server, ChildProcesses(prefix="trainyard-bench-pipeline-") as children:
        bench = Bench(server, children)
        with environment(bench.overrides):
            try:
                facts = machine_facts(bench.conn)
                console.print(
                    f"redis {facts['redis_version']} at {server.url}, python {facts['python']}, "
                    f"{facts['cpu_count']} CPUs; {args.steps}-step linear pipeline, {args.runs} runs per mode, "
                    f"{args.cpu_workers} CPU worker(s)"
                )
                popen = popen_samples(bench.env, POPEN_SAMPLES)
                startup = bench.start_workers(args.cpu_workers)
                series["services"], _ = run_series(bench, "services", args.steps, args.runs, args.warmup, None)
                if not args.no_trace:
                    series["traced"], stages = run_series(
                        bench, "traced", args.steps, args.runs, args.warmup, ControllerTrace()
                    )
                missed = series["services"]["hop_ms"]["median"] >= HOP_TARGET_MS
                if args.profile or missed:
                    profile = profile_controller(bench, args.steps, args.json_out)
                bench.stop_workers()
                if not args.no_local:
                    before = set(threading.enumerate())
                    series["local"], _ = run_series(bench, "local", args.steps, args.runs, args.warmup, None)
                    lingering = join_new_threads(before)
                popen += popen_samples(bench.env, POPEN_SAMPLES)
                if not args.no_peers:
                    from pipeline_peers import run_peers

                    peers = run_peers(bench.conn, server.url, bench.env, STAMP_CMD, args.steps, args.runs)
            finally:
                bench.stop_workers()
            popen_stats = {k: round(v, 3) for k, v in summarize(popen).items()}
            outcome = report(series, popen_stats, stages, args.steps, args.cpu_workers)
            if peers:
                print_peers(series["services"], peers, args.steps)
            if profile is not None:
                print_profile(profile)
            left = bench.leftovers()
        bench.conn.close()
    own = [p.pid for p in psutil.Process().children(recursive=True) if _running(p)]
    wall = time.perf_counter() - started
    console.print(f"cleanup: workers and their tasks stopped; processes still alive: {(left + own) or 'none'}")

    payload = {
        "steps": args.steps,
        "runs": args.runs,
        "warmup": args.warmup,
        "cpu_workers": args.cpu_workers,
        "stamp_command": STAMP_CMD,
        "worker_startup_s": startup,
        "popen_ms": popen_stats,
        "series": series,
        "controller_stages_ms": stages,
        "clearml": outcome["clearml"],
        "peers": peers,
        "targets": [outcome["target"]],
        "profile": profile,
        "cleanup": {"processes_left": left + own, "threads_after_start_locally": lingering},
        "wall_seconds": round(wall, 3),
    }
    path = write_json(args.json_out, "pipeline", payload, facts)
    console.print(f"results written to {path} (ran {wall:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
