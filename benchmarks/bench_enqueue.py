"""Enqueue throughput and Redis memory per queued task: trainyard against raw RQ.

Run from the repository root::

    python benchmarks/bench_enqueue.py [--tasks 10000] [--json-out benchmarks/results/enqueue.json]

Everything runs in one process against one throwaway redis-server (no persistence), emptied
with FLUSHALL before every measurement. Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from common import RedisServer, Timer, console, machine_facts, per_second, print_table, used_memory, write_json
from rq import Queue as RQQueue
from rq.serializers import JSONSerializer

import trainyard
from trainyard.queues import keys
from trainyard.queues.task import create_many

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import celeryjobs  # noqa: E402

QUEUE = "bench"
FUNC = "benchmarks.noop.noop"  # a dotted name: the producer never imports it
CELERY_QUEUE = "bench-celery"  # Celery's list on the same Redis
CELERY_TASK = "bench.noop"  # by name, like FUNC
RATE_TARGET = 0.7  # trainyard bulk enqueue >= 0.7x raw RQ enqueue_many
MEMORY_TARGET = 2048  # bytes of Redis memory per queued task (2 KB)
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "enqueue.json"


def reset(conn: redis.Redis) -> None:
    """An empty database holding only the benchmark queue."""
    conn.flushall()
    trainyard.Queue.create(QUEUE, connection=conn, exist_ok=True)


def queue_length(conn: redis.Redis, key: str) -> int:
    return int(conn.llen(CELERY_QUEUE if key.startswith("celery") else keys.rq_queue(QUEUE)))


def rq_queue(conn: redis.Redis) -> RQQueue:
    return RQQueue(QUEUE, connection=conn, serializer=JSONSerializer)


def template_task(conn: redis.Redis) -> trainyard.Task:
    return trainyard.Task.create(
        "tmpl", command=["python", "-c", "pass"], parameters={"General/lr": 0.1}, connection=conn
    )


# -- one measurement each: (prepare, timed action) --------------------------------------------
# ``prepare`` runs untimed after the FLUSHALL and returns the argument of ``action``.
def rq_enqueue_many(n: int) -> tuple[Callable, Callable]:
    def prepare(conn):
        return rq_queue(conn), [RQQueue.prepare_data(FUNC, args=(i,)) for i in range(n)]

    def action(state):
        queue, datas = state
        queue.enqueue_many(datas)

    return prepare, action


def rq_enqueue_single(n: int) -> tuple[Callable, Callable]:
    def action(queue):
        for i in range(n):
            queue.enqueue(FUNC, i)

    return rq_queue, action


def celery_send_many(n: int) -> tuple[Callable, Callable]:
    """Celery has no bulk enqueue: one publish per task, all on one producer (one connection).
    No result is asked for (no result subscription per task)."""

    def action(_):
        app = celeryjobs.app
        with app.producer_or_acquire() as producer:
            for i in range(n):
                app.send_task(CELERY_TASK, args=(i,), queue=CELERY_QUEUE, producer=producer, ignore_result=True)

    return lambda conn: None, action


def celery_send_single(n: int) -> tuple[Callable, Callable]:
    def action(_):
        for i in range(n):
            celeryjobs.app.send_task(CELERY_TASK, args=(i,), queue=CELERY_QUEUE, ignore_result=True)

    return lambda conn: None, action


def ty_clone_many(n: int) -> tuple[Callable, Callable]:
    def prepare(conn):
        return template_task(conn), [{"General/lr": i / n} for i in range(n)]

    def action(state):
        template, parameter_sets = state
        template.clone_many(parameter_sets, name="sweep-{i}", queue=QUEUE)

    return prepare, action


def ty_create_many(n: int) -> tuple[Callable, Callable]:
    def prepare(conn):
        return conn, [{"name": f"t{i}", "command": ["true"]} for i in range(n)]

    def action(state):
        conn, specs = state
        create_many(specs, queue=QUEUE, connection=conn)

    return prepare, action


def ty_create_enqueue_single(n: int) -> tuple[Callable, Callable]:
    def action(conn):
        for i in range(n):
            trainyard.Task.create(f"t{i}", command=["true"], connection=conn).enqueue(QUEUE)

    return lambda conn: conn, action


MEASUREMENTS: dict[str, tuple[str, Callable[[int], tuple[Callable, Callable]], bool]] = {
    # key: (label, factory, bulk?)
    "rq_enqueue_many": ("RQ enqueue_many", rq_enqueue_many, True),
    "rq_enqueue": ("RQ enqueue (one by one)", rq_enqueue_single, False),
    "celery_send_many": ("Celery send_task, one producer", celery_send_many, True),
    "celery_send": ("Celery send_task (one by one)", celery_send_single, False),
    "trainyard_clone_many": ("trainyard clone_many", ty_clone_many, True),
    "trainyard_create_many": ("trainyard create_many", ty_create_many, True),
    "trainyard_enqueue": ("trainyard create+enqueue (one by one)", ty_create_enqueue_single, False),
}
MEMORY_KEYS = ("rq_enqueue_many", "celery_send_many", "trainyard_clone_many", "trainyard_create_many")


def measure(conn: redis.Redis, key: str, n: int) -> dict[str, Any]:
    """One timed run on an emptied database, with the Redis memory it added."""
    _, factory, _ = MEASUREMENTS[key]
    prepare, action = factory(n)
    reset(conn)
    state = prepare(conn)
    before = used_memory(conn)
    conn.ping()  # reconnect outside the timed part
    with Timer() as timer:
        action(state)
    after = used_memory(conn)
    landed = queue_length(conn, key)
    if landed != n:
        raise RuntimeError(f"{key}: {landed} jobs in the queue, expected {n}")
    return {"count": n, "seconds": timer.elapsed, "memory_bytes": after - before}


def run_all(conn: redis.Redis, n: int, n_single: int, repeat: int) -> dict[str, dict[str, Any]]:
    # Warm-up: imports, pydantic and RQ code paths, Lua scripts, connection.
    for key in MEASUREMENTS:
        measure(conn, key, 50)
    results = {}
    for key, (label, _, bulk) in MEASUREMENTS.items():
        count = n if bulk else n_single
        runs = []
        for _ in range(repeat):
            runs.append(measure(conn, key, count))
            console.print(f"  {label}: {count} in {runs[-1]['seconds']:.3f}s", style="dim")
        seconds = statistics.median(r["seconds"] for r in runs)
        memory = statistics.median(r["memory_bytes"] for r in runs)
        results[key] = {
            "label": label,
            "count": count,
            "runs_seconds": [round(r["seconds"], 6) for r in runs],
            "seconds": round(seconds, 6),
            "per_second": round(per_second(count, seconds), 1),
            "memory_bytes": int(memory),
            "memory_bytes_per_task": round(memory / count, 1),
        }
    return results


def memory_sample(conn: redis.Redis, per_task: float, n: int = 100) -> dict[str, Any]:
    """Where a trainyard task's bytes sit: its record key and RQ job hash (MEMORY USAGE of one
    clone), and the rest of ``per_task`` (indexes, event stream entry, queue list entry)."""
    prepare, action = ty_clone_many(n)
    reset(conn)
    action(prepare(conn))
    task_id = conn.lindex(keys.rq_queue(QUEUE), n // 2).decode()
    record = int(conn.memory_usage(keys.task(task_id), samples=0) or 0)
    job = int(conn.memory_usage(keys.rq_job(task_id), samples=0) or 0)
    return {
        "bytes_per_task": per_task,
        "task_record_key": record,
        "task_record_json_bytes": len(conn.get(keys.task(task_id))),
        "rq_job_hash_key": job,
        "indexes_events_queue_and_other": round(per_task - record - job, 1),
    }


def profile_clone_many(conn: redis.Redis, n: int, out: Path, top: int = 25) -> str:
    """cProfile one clone_many of ``n``; saves the stats to ``out`` and returns the top functions."""
    prepare, action = ty_clone_many(n)
    reset(conn)
    state = prepare(conn)
    profiler = cProfile.Profile()
    profiler.enable()
    action(state)
    profiler.disable()
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


# -- report -----------------------------------------------------------------------------------
def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(results: dict[str, dict[str, Any]], sample: dict[str, Any]) -> dict[str, Any]:
    bulk_ref = results["rq_enqueue_many"]["per_second"]
    single_ref = results["rq_enqueue"]["per_second"]
    mem_ref = results["rq_enqueue_many"]["memory_bytes_per_task"]
    rows = []
    for key, (label, _, bulk) in MEASUREMENTS.items():
        r = results[key]
        r["vs_rq_enqueue_many"] = round(ratio(r["per_second"], bulk_ref), 3)
        if not bulk:
            r["vs_rq_enqueue"] = round(ratio(r["per_second"], single_ref), 3)
        rows.append(
            [
                label,
                f"{r['count']:,}",
                f"{r['seconds']:.3f}",
                f"{r['per_second']:,.0f}",
                f"{r['vs_rq_enqueue_many']:.2f}x",
                "-" if bulk else f"{r['vs_rq_enqueue']:.2f}x",
            ]
        )
    print_table(
        "Enqueue rate (tasks/s)",
        ["measurement", "tasks", "seconds", "tasks/s", "vs RQ enqueue_many", "vs RQ enqueue (1 by 1)"],
        rows,
    )

    memory = {}
    rows = []
    for key in MEMORY_KEYS:
        r = results[key]
        memory[key] = {
            "tasks": r["count"],
            "bytes": r["memory_bytes"],
            "bytes_per_task": r["memory_bytes_per_task"],
            "vs_rq_enqueue_many": round(ratio(r["memory_bytes_per_task"], mem_ref), 2),
        }
        rows.append(
            [
                r["label"],
                f"{r['count']:,}",
                f"{r['memory_bytes_per_task']:,.0f}",
                f"{memory[key]['vs_rq_enqueue_many']:.2f}x",
            ]
        )
    print_table(
        "Redis memory per queued task (INFO used_memory delta)",
        ["measurement", "tasks", "bytes/task", "vs RQ enqueue_many"],
        rows,
        caption=(
            f"one trainyard task: record key {sample['task_record_key']} B, RQ job hash {sample['rq_job_hash_key']} B, "
            f"indexes/events/queue {sample['indexes_events_queue_and_other']:.0f} B (MEMORY USAGE)"
        ),
    )

    targets = []
    for key in ("trainyard_clone_many", "trainyard_create_many"):
        value = results[key]["vs_rq_enqueue_many"]
        targets.append(
            {
                "target": f"{results[key]['label']} >= {RATE_TARGET}x RQ enqueue_many",
                "value": value,
                "threshold": RATE_TARGET,
                "unit": "x",
                "met": value >= RATE_TARGET,
            }
        )
    for key in ("trainyard_clone_many", "trainyard_create_many"):
        value = results[key]["memory_bytes_per_task"]
        targets.append(
            {
                "target": f"{results[key]['label']} < 2 KB Redis memory per queued task",
                "value": value,
                "threshold": MEMORY_TARGET,
                "unit": "B",
                "met": value < MEMORY_TARGET,
            }
        )
    print_table(
        "Targets",
        ["target", "value", "threshold", "status"],
        [
            [
                t["target"],
                f"{t['value']:.2f}x" if t["threshold"] == RATE_TARGET else f"{t['value']:,.0f} B",
                f"{t['threshold']}x" if t["threshold"] == RATE_TARGET else f"{t['threshold']:,} B",
                "[green]met[/]" if t["met"] else "[red]missed[/]",
            ]
            for t in targets
        ],
    )
    return {"memory": memory, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per bulk measurement (default 10000)")
    parser.add_argument(
        "--single-tasks", type=int, default=None, help="tasks for the one-by-one measurements (default tasks/10)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, median reported (default 3)")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON, help="result file (default: %(default)s)")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile one clone_many of --tasks (stats saved beside the JSON)"
    )
    args = parser.parse_args(argv)
    n = args.tasks
    n_single = args.single_tasks or max(1, n // 10)
    if n < 1 or args.repeat < 1:
        parser.error("--tasks and --repeat must be at least 1")

    with RedisServer() as server:
        conn = server.client()
        celeryjobs.configure(server.url)
        facts = machine_facts(conn)
        console.print(
            f"redis {facts['redis_version']} at {server.url}, python {facts['python']}, "
            f"{facts['cpu_count']} CPUs, {n:,} tasks (one by one: {n_single:,})"
        )
        with Timer() as total:
            results = run_all(conn, n, n_single, args.repeat)
            sample = memory_sample(conn, results["trainyard_clone_many"]["memory_bytes_per_task"])
        summary = report(results, sample)
        profile_text = None
        if args.profile:
            pstats_path = args.json_out.with_suffix(".clone_many.pstats")
            profile_text = profile_clone_many(conn, n, pstats_path)
            console.print(profile_text, markup=False, highlight=False)
            console.print(f"profile saved to {pstats_path}")
        conn.close()

    payload = {
        "tasks": n,
        "single_tasks": n_single,
        "repeat": args.repeat,
        "queue": QUEUE,
        "rq_function": FUNC,
        "rq_serializer": "rq.serializers.JSONSerializer",
        "measurements": results,
        "memory": summary["memory"],
        "memory_breakdown_one_task": sample,
        "targets": summary["targets"],
        "wall_seconds": round(total.elapsed, 3),
    }
    path = write_json(args.json_out, "enqueue", payload, facts)
    console.print(f"results written to {path} (measured in {total.elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
