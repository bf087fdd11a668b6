"""The Redis side of a fleet (issue 17): what N idle and working workers cost one Redis.

Run from the repository root::

    python -m benchmarks.bench_fleet [--processes 1,10] [--sim 1,10,100,1000] [--rq 1,10]
                                     [--tasks 100] [--idle-s 30] [--spread-s 25] [--quick]
                                     [--json-out benchmarks/results/fleet.json]

Each fleet serves one queue on one throwaway redis-server. ``--processes`` fleets are real
``trainyard worker`` processes; ``--sim`` fleets are real ``Worker`` objects, up to
``SIM_PER_HOST`` of them per process, started over ``--spread-s`` (one backstop period, so their
timers do not run out together), each with its own Redis client (``fleet_sim.py``: the
same wait, claim, start, heartbeat and reaper code; no guard process, no start-up sweep): a
thousand worker processes do not fit a 2-core machine, a thousand simulated workers do, and the
rows where both run show they cost Redis the same. ``--rq`` fleets are raw ``rq worker``
processes, the peer. Measured on the Redis side:

- **idle commands/s**: ``INFO commandstats`` over ``--idle-s`` seconds with nothing queued (the
  commands inside Lua scripts count, as Redis counts them), with the busiest commands named;
- **commands and Redis CPU per task**: ``--tasks`` tasks enqueued one at a time (each waited
  for, so the whole fleet is idle at every enqueue: the worst case for a broadcast); the counts
  over the round divided by the tasks, and the same less what the idle fleet sends meanwhile
  (``net``: the cost of the task itself);
- **dispatch latency**: medians of enqueue -> claimed and started (the record's ``started``,
  stamped by the worker) and enqueue -> task process running (the process's own time stamp);
- **lost claim races per task**: a second round under ``MONITOR`` counts the claim scripts the
  workers send; every one beyond one per task lost a race;
- **reaper pass**: commands and Redis CPU of one reaper pass (``reaper.reap``) over the fleet,
  with no claims and with one claim per worker (the claims of a fleet that is all busy).

Each row notes the machine's CPU busy share (every process, over the idle and the task round)
and the fleet's own CPU while idle: on a shared 2-core machine a busy moment slows the workers
(the latencies), not the Redis counts. ``--quick`` is a smoke run (its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, when run as python -m benchmarks.bench_fleet

from bench_dispatch import QUEUE, STAMP_CMD, WAIT_S, Bench, WorkerProc, rq_sampler  # noqa: E402
from common import (  # noqa: E402
    ChildProcesses,
    RedisServer,
    console,
    machine_facts,
    print_table,
    read_stamp,
    write_json,
)

import trainyard  # noqa: E402
from trainyard.queues import keys, reaper  # noqa: E402
from trainyard.queues.backend import fleet, records  # noqa: E402
from trainyard.queues.store import TaskStore  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "fleet.json"
SIM_SCRIPT = Path(__file__).resolve().parent / "fleet_sim.py"
SIM_PER_HOST = 500  # simulated workers per process
START_S = 600.0  # longest wait for a fleet to register
SETTLE_S = 3.0  # after the fleet registered: start-up traffic (registration, first beats) settles
SETTLE_MAX_S = 240.0  # the longest wait for a fleet's start-up CPU to die down
SETTLED_CORES = 0.5  # a fleet using less CPU than this has started
GAP_S = 0.05  # between one task's end and the next enqueue: the worker is idle again
REAPER_PASSES = 10
DEAD_AFTER_S = 20.0  # TRAINYARD_DEAD_AFTER_S's default: a fresh Redis sees no reaper pass before it


def load() -> float:
    return os.getloadavg()[0]


def busy_pct(before) -> float:
    """The machine's CPU busy share (all cores, every process) since ``before`` (``psutil.cpu_times()``)."""
    after = psutil.cpu_times()
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 100.0 * (total - idle) / total if total > 0 else 0.0


class Counters:
    """Redis's own counters at one moment: commands by name (``INFO commandstats``) and CPU seconds."""

    def __init__(self, conn):
        stats = conn.info("commandstats")
        cpu = conn.info("cpu")
        self.at = time.monotonic()
        self.calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        self.cpu_s = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def since(self, before: Counters, own: int = 2) -> tuple[dict[str, int], float, float]:
        """Commands by name, CPU seconds and seconds elapsed from ``before`` to this; ``own``: the
        INFO calls of the measurement itself, left out."""
        calls = {n: c - before.calls.get(n, 0) for n, c in self.calls.items()}
        calls["info"] = calls.get("info", 0) - own
        return {n: c for n, c in calls.items() if c > 0}, self.cpu_s - before.cpu_s, self.at - before.at


def top(calls: dict[str, int], seconds: float, n: int = 5) -> str:
    return ", ".join(f"{name} {count / seconds:.2f}" for name, count in sorted(calls.items(), key=lambda x: -x[1])[:n])


def idle_costs(conn, seconds: float, workers: int) -> dict:
    before = Counters(conn)
    time.sleep(seconds)
    calls, cpu_s, elapsed = Counters(conn).since(before)
    total = sum(calls.values())
    return {
        "idle_cmds_per_s": total / elapsed,
        "idle_cmds_per_s_per_worker": total / elapsed / workers,
        "idle_cpu_ms_per_s": cpu_s * 1000 / elapsed,
        "idle_by_command_per_s": {n: c / elapsed for n, c in sorted(calls.items(), key=lambda x: -x[1])},
        "idle_top": top(calls, elapsed),
        "idle_elapsed_s": elapsed,
    }


def clients(conn) -> int:
    return int(conn.info("clients")["connected_clients"])


# -- fleets ------------------------------------------------------------------------------------
class Fleet:
    """N workers of one kind on the bench's queue: ``process`` (trainyard worker processes),
    ``sim`` (simulated workers, fleet_sim.py) or ``rq`` (raw ``rq worker`` processes)."""

    def __init__(self, bench: Bench, kind: str, n: int, run: int, spread_s: float = 25.0):
        self.bench, self.kind, self.n = bench, kind, n
        self.procs = []
        self.names: list[str] = []
        self.rq_workers: list[WorkerProc] = []
        if kind in ("process", "rq"):
            started = bench.start_workers("trainyard" if kind == "process" else "rq_worker", n, wait=False)
            self.rq_workers = started
            self.procs = [w.proc for w in started]
            self.names = [w.name for w in started]
        else:
            hosts = math.ceil(n / SIM_PER_HOST)
            for h in range(hosts):
                count = n // hosts + (1 if h < n % hosts else 0)
                prefix = f"sim{run}-{h}"
                argv = [sys.executable, str(SIM_SCRIPT), "--count", str(count), "--prefix", prefix, "--queue", QUEUE]
                argv += ["--spread-s", str(spread_s)]
                self.procs.append(bench.children.start(argv, prefix, env=bench.env))
                self.names += [f"{prefix}-{i}" for i in range(count)]

    def registered(self) -> int:
        conn = self.bench.conn
        if self.kind == "rq":
            return sum(self.bench.is_registered(w) for w in self.rq_workers)
        with conn.pipeline(transaction=False) as pipe:
            for name in self.names:
                pipe.sismember(keys.WORKERS, name)
            return sum(bool(x) for x in pipe.execute())

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"a {self.kind} fleet process exited ({proc.returncode}):\n{self.bench.children.tail(proc)}"
                )

    def wait_registered(self) -> float:
        started = time.monotonic()
        while (got := self.registered()) < self.n:
            self.check_alive()
            if time.monotonic() - started > START_S:
                raise RuntimeError(f"{got} of {self.n} {self.kind} workers registered within {START_S:g}s")
            time.sleep(0.2)
        return time.monotonic() - started

    def cpu_s(self) -> float:
        """CPU seconds the fleet's processes (and their children: guards, tasks) have used so far."""
        total = 0.0
        for proc in self.procs:
            try:
                p = psutil.Process(proc.pid)
                for q in [p, *p.children(recursive=True)]:
                    t = q.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def settle(self) -> float:
        """Wait (up to SETTLE_MAX_S) until the fleet's start-up is over: its processes use less than
        SETTLED_CORES over a 2 s window. Returns the cores they used over the last window."""
        deadline = time.monotonic() + SETTLE_MAX_S
        while True:
            before = self.cpu_s()
            time.sleep(2.0)
            cores = (self.cpu_s() - before) / 2.0
            if cores < SETTLED_CORES or time.monotonic() > deadline:
                return cores

    def stop(self) -> None:
        self.bench.children.stop(self.procs, timeout=120.0)


def claim_sampler(bench: Bench):
    """One stamp task enqueued and waited for: (enqueue -> task process running, enqueue -> claimed
    and started), from the process's own stamp and the record's ``started`` (the worker's clock)."""
    conn = bench.conn

    def sample(i: int) -> tuple[float, float]:
        task = trainyard.Task.create(f"stamp-{i}", command=STAMP_CMD, connection=conn)
        t0 = time.time()
        task.enqueue(QUEUE)
        task.wait(timeout=WAIT_S)
        if task.status != trainyard.TaskStatus.COMPLETED:
            raise RuntimeError(f"task {task.id} ended {task.status.value}")
        record = TaskStore(conn).get(task.id)
        return read_stamp(conn, task.id) - t0, (record.started or math.nan) - t0

    return sample


def rq_claim_sampler(bench: Bench):
    inner = rq_sampler(bench)

    def sample(i: int) -> tuple[float, float]:
        return inner(i)[0], math.nan

    return sample


def task_costs(bench: Bench, sample, tasks: int, idle: dict) -> dict:
    """Commands, Redis CPU and latencies per task over ``tasks`` one-at-a-time tasks; ``net_*``:
    less what the idle fleet sends meanwhile."""
    conn = bench.conn
    sample(0)  # warm-up: the first task of a fresh worker pays its imports
    started, claimed = [], []
    before = Counters(conn)
    for i in range(tasks):
        time.sleep(GAP_S)
        s, c = sample(1 + i)
        started.append(s)
        claimed.append(c)
    calls, cpu_s, elapsed = Counters(conn).since(before)
    total = sum(calls.values())
    row = {
        "cmds_per_task": total / tasks,
        "net_cmds_per_task": (total - idle["idle_cmds_per_s"] * elapsed) / tasks,
        "cpu_ms_per_task": cpu_s * 1000 / tasks,
        "net_cpu_ms_per_task": (cpu_s * 1000 - idle["idle_cpu_ms_per_s"] * elapsed) / tasks,
        "process_started_ms_median": statistics.median(started) * 1000,
        "task_by_command": {n: c / tasks for n, c in sorted(calls.items(), key=lambda x: -x[1])},
    }
    if not any(math.isnan(c) for c in claimed):
        row["claimed_ms_median"] = statistics.median(claimed) * 1000
    return row


def lost_races(bench: Bench, sample, tasks: int) -> float:
    """Claim scripts sent per task beyond the one that won, counted with MONITOR (the claim is
    ``queue.lua``'s ``claim`` command: an EVALSHA with ``claim`` among its arguments)."""
    claims = 0
    stop = threading.Event()
    monitor_conn = bench.server.client()
    ready = threading.Event()

    def watch() -> None:
        nonlocal claims
        with monitor_conn.monitor() as m:
            ready.set()
            for entry in m.listen():
                command = entry.get("command", "")
                if command.startswith("EVALSHA") and " claim " in f" {command} ":
                    claims += 1
                if stop.is_set():
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(10)
    for i in range(tasks):
        time.sleep(GAP_S)
        sample(1000 + i)
    time.sleep(0.5)
    stop.set()
    bench.conn.ping()  # one more command: the monitor sees it and returns
    thread.join(5)
    monitor_conn.close()
    return max(0, claims - tasks) / tasks


def reaper_pass(conn, names: list[str], idle: dict) -> dict:
    """Redis's commands and CPU for one reaper pass (``reaper.reap``, less the idle fleet's traffic
    meanwhile), with no claims and with one fresh claim per live worker (a fleet that is all busy;
    the pass must reap nothing)."""
    out = {}
    fake = [f"reaper-bench-{i}" for i in range(len(names))]
    for label in ("no_claims", "claim_per_worker"):
        if label == "claim_per_worker":
            now = time.time()
            for task_id, name in zip(fake, names):
                claim = {"worker": name, "host": "bench", "queue": QUEUE, "ts": now, "pgid": None}
                fleet.put_claim(conn, task_id, json.dumps(claim), now)
        passes = 0
        before = Counters(conn)
        while passes < REAPER_PASSES:
            if reaper.reap(conn):
                raise RuntimeError("the reaper reaped a live worker's claim")
            passes += 1
        calls, cpu_s, elapsed = Counters(conn).since(before)
        total = sum(calls.values()) - idle["idle_cmds_per_s"] * elapsed
        out[f"reaper_cmds_{label}"] = total / passes
        out[f"reaper_cpu_ms_{label}"] = (cpu_s * 1000 - idle["idle_cpu_ms_per_s"] * elapsed) / passes
    for task_id in fake:
        records.release_claim(conn, task_id)
    return out


def measure(bench: Bench, kind: str, n: int, tasks: int, idle_s: float, run: int, spread_s: float) -> dict:
    bench.reset()
    base_clients = clients(bench.conn)
    fleet_ = Fleet(bench, kind, n, run, spread_s)
    try:
        row: dict = {"kind": kind, "workers": n, "register_s": fleet_.wait_registered()}
        time.sleep(SETTLE_S)
        row["fleet_cores_settled"] = fleet_.settle()
        uptime = int(bench.conn.info("server")["uptime_in_seconds"])
        if kind != "rq" and uptime < DEAD_AFTER_S + 1:  # the reapers pass only from then on
            time.sleep(DEAD_AFTER_S + 1 - uptime)
        row["connections_per_worker"] = (clients(bench.conn) - base_clients) / n
        row["load_idle"] = load()
        cpu0, busy0 = fleet_.cpu_s(), psutil.cpu_times()
        row.update(idle_costs(bench.conn, idle_s, n))
        row["fleet_idle_cores"] = (fleet_.cpu_s() - cpu0) / row.pop("idle_elapsed_s")
        row["machine_busy_pct_idle"] = busy_pct(busy0)
        sample = rq_claim_sampler(bench) if kind == "rq" else claim_sampler(bench)
        row["load_tasks"] = load()
        busy0 = psutil.cpu_times()
        row.update(task_costs(bench, sample, tasks, row))
        row["machine_busy_pct_tasks"] = busy_pct(busy0)
        if kind != "rq":
            row["lost_races_per_task"] = lost_races(bench, sample, max(10, tasks // 2))
            row.update(reaper_pass(bench.conn, fleet_.names, row))
        fleet_.check_alive()
        row["load_end"] = load()
        return row
    finally:
        fleet_.stop()


def sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def show_row(r: dict) -> list[str]:
    def opt(key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "-"

    return [
        f"{r['kind']} {r['workers']}",
        f"{r['machine_busy_pct_idle']:.0f}/{r['machine_busy_pct_tasks']:.0f}%",
        f"{r['idle_cmds_per_s']:.1f}",
        f"{r['idle_cmds_per_s_per_worker']:.2f}",
        f"{r['connections_per_worker']:.1f}",
        f"{r['net_cmds_per_task']:.0f}",
        opt("lost_races_per_task", ".2f"),
        f"{r['net_cpu_ms_per_task']:.2f}",
        opt("claimed_ms_median", ".1f"),
        f"{r['process_started_ms_median']:.1f}",
        f"{opt('reaper_cmds_no_claims', '.0f')}/{opt('reaper_cmds_claim_per_worker', '.0f')}",
        f"{opt('reaper_cpu_ms_no_claims', '.2f')}/{opt('reaper_cpu_ms_claim_per_worker', '.2f')}",
    ]


COLUMNS = [
    "fleet",
    "busy",
    "idle/s",
    "/worker",
    "conns",
    "cmds/task",
    "races",
    "CPU ms",
    "claim ms",
    "start ms",
    "reap cmds",
    "reap ms",
]
CAPTION = (
    "busy: the machine's CPU busy share (idle round/task round); idle/s: Redis commands per second, nothing queued, "
    "/worker: the same per worker; conns: Redis connections per worker; cmds/task and CPU ms: Redis commands and "
    "CPU per task, less the idle fleet's meanwhile; races: lost claim races per task; claim ms / start ms: median "
    "enqueue -> claimed and started / task process running; reap: one reaper pass, no claims / one per worker"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,10", help="fleet sizes of worker processes, comma-separated")
    parser.add_argument("--sim", default="1,10,100,1000", help="fleet sizes of simulated workers, comma-separated")
    parser.add_argument("--rq", default="1,10", help="fleet sizes of raw RQ worker processes, comma-separated")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per fleet (one at a time)")
    parser.add_argument("--idle-s", type=float, default=30.0, help="seconds of idle traffic measured")
    parser.add_argument("--spread-s", type=float, default=25.0, help="simulated workers start over this long")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 process, 10 simulated, 1 RQ, few tasks")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if args.quick:
        args.processes, args.sim, args.rq, args.tasks, args.idle_s, args.spread_s = "1", "10", "1", 5, 3.0, 1.0
    plan = [("process", n) for n in sizes(args.processes)] + [("sim", n) for n in sizes(args.sim)]
    plan += [("rq", n) for n in sizes(args.rq)]
    results: list[dict] = []
    with RedisServer() as server, ChildProcesses() as children:
        bench = Bench(server, children)
        for run, (kind, n) in enumerate(plan):
            console.print(f"[bold]{kind}: {n} worker(s)[/bold] (load {load():.1f})")
            results.append(measure(bench, kind, n, args.tasks, args.idle_s, run, args.spread_s))
            console.print(
                {k: v for k, v in results[-1].items() if not k.endswith("by_command_per_s") and k != "task_by_command"}
            )
        facts = machine_facts(bench.conn)
    print_table("Fleet: one queue, N workers, one Redis", COLUMNS, [show_row(r) for r in results], CAPTION)
    write_json(args.json_out, "fleet", {"rows": results}, facts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
