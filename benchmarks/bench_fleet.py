"""The Redis side of a fleet (issue 17): what N idle and working workers cost one Redis.

Run from the repository root::

    python benchmarks/bench_fleet.py [--workers 1,10,40,100] [--tasks 100] [--idle-s 10]
                                     [--json-out benchmarks/results/fleet.json]

For each N, N real worker processes serve one queue on one throwaway redis-server, then:

- **idle commands/s**: Redis's ``total_commands_processed`` over ``--idle-s`` seconds with
  nothing queued (heartbeats, reaper turns, a blocked worker's backstop);
- **commands and Redis CPU per task**: ``--tasks`` tasks enqueued one at a time (each waited
  for, so the fleet is idle at every enqueue: the worst case for a broadcast), Redis's
  command count and ``used_cpu_user + used_cpu_sys`` over them, divided by the tasks;
- **enqueue -> process started**: median of the task process's own time stamp minus the
  enqueue call's start;
- **lost claim races per task**: a second, shorter round under ``MONITOR`` counts the claim
  scripts the workers send; every claim beyond one per task lost a race.

The same N raw RQ workers (``rq worker``, JSON serializer, the same stamp job) give the peer's
idle commands/s, commands and CPU per task and latency, on the same Redis, in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

from bench_dispatch import Bench, rq_sampler, trainyard_sampler
from common import ChildProcesses, RedisServer, console, machine_facts, print_table, write_json

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "fleet.json"
GAP_S = 0.05  # between one task's end and the next enqueue: the worker is idle again


def redis_counters(conn) -> tuple[int, float]:
    """Commands processed so far and Redis CPU seconds (user + sys) so far."""
    stats, cpu = conn.info("stats"), conn.info("cpu")
    return int(stats["total_commands_processed"]), float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def idle_rate(conn, seconds: float) -> float:
    before, _ = redis_counters(conn)
    time.sleep(seconds)
    after, _ = redis_counters(conn)
    return (after - before - 1) / seconds  # less our own INFO


def task_costs(conn, sample, tasks: int, offset: int) -> dict:
    """Commands, Redis CPU and latency per task over ``tasks`` one-at-a-time tasks."""
    sample(offset)  # warm-up: the first task of a fresh worker pays its imports
    cmds0, cpu0 = redis_counters(conn)
    latencies = []
    for i in range(tasks):
        time.sleep(GAP_S)
        latencies.append(sample(offset + 1 + i)[0])
    cmds1, cpu1 = redis_counters(conn)
    return {
        "cmds_per_task": (cmds1 - cmds0) / tasks,
        "cpu_ms_per_task": (cpu1 - cpu0) * 1000 / tasks,
        "latency_ms_median": statistics.median(latencies) * 1000,
    }


def lost_races(bench: Bench, sample, tasks: int, offset: int) -> float:
    """Claim scripts sent per task beyond the one that won, counted with MONITOR."""
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
        sample(offset + i)
    time.sleep(0.5)
    stop.set()
    bench.conn.ping()  # one more command: the monitor sees it and returns
    thread.join(5)
    return max(0, claims - tasks) / tasks


def measure(bench: Bench, kind: str, n: int, tasks: int, idle_s: float) -> dict:
    bench.reset()
    workers = bench.start_workers(kind if kind != "trainyard" else "trainyard", n)
    try:
        time.sleep(1.0)  # start-up traffic (registration, first heartbeats, leftover sweeps) settles
        row = {"workers": n, "idle_cmds_per_s": idle_rate(bench.conn, idle_s)}
        sample = trainyard_sampler(bench) if kind == "trainyard" else rq_sampler(bench)
        row.update(task_costs(bench.conn, sample, tasks, 0))
        if kind == "trainyard":
            row["lost_races_per_task"] = lost_races(bench, sample, max(10, tasks // 3), tasks + 1)
        bench.check_alive(workers)
        return row
    finally:
        bench.stop(workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,10,40,100", help="fleet sizes, comma-separated")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per fleet size (one at a time)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds of idle traffic measured")
    parser.add_argument("--no-rq", action="store_true", help="leave out the raw RQ rows")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.workers.split(",") if x.strip()]
    results: dict = {"trainyard": [], "rq": []}
    with RedisServer() as server, ChildProcesses() as children:
        bench = Bench(server, children)
        for n in sizes:
            console.print(f"[bold]{n} worker(s)[/bold]")
            results["trainyard"].append(measure(bench, "trainyard", n, args.tasks, args.idle_s))
            if not args.no_rq:
                results["rq"].append(measure(bench, "rq_worker", n, args.tasks, args.idle_s))
        facts = machine_facts(bench.conn)
    rq_by_n = {r["workers"]: r for r in results["rq"]}
    rows = []
    for r in results["trainyard"]:
        peer = rq_by_n.get(r["workers"], {})
        rows.append(
            [
                r["workers"],
                f"{r['idle_cmds_per_s']:.2f} ({r['idle_cmds_per_s'] / r['workers']:.2f}/worker)",
                f"{peer['idle_cmds_per_s']:.2f}" if peer else "-",
                f"{r['cmds_per_task']:.1f}",
                f"{peer['cmds_per_task']:.1f}" if peer else "-",
                f"{r['lost_races_per_task']:.2f}",
                f"{r['cpu_ms_per_task']:.2f} ms",
                f"{peer['cpu_ms_per_task']:.2f} ms" if peer else "-",
                f"{r['latency_ms_median']:.1f} ms",
                f"{peer['latency_ms_median']:.1f} ms" if peer else "-",
            ]
        )
    print_table(
        "Fleet: one queue, N workers, one Redis",
        [
            "workers",
            "idle cmds/s",
            "RQ idle cmds/s",
            "cmds/task",
            "RQ cmds/task",
            "lost races/task",
            "Redis CPU/task",
            "RQ CPU/task",
            "enqueue->start",
            "RQ enqueue->start",
        ],
        rows,
    )
    write_json(args.json_out, "fleet", results, facts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
