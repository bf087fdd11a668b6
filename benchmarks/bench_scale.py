"""First-page latency of task and queue listings with many queued tasks, and Redis memory per task.

Run from the repository root::

    python benchmarks/bench_scale.py [--tasks 100000] [--json-out benchmarks/results/scale.json]

One throwaway redis-server (no persistence). ``--tasks`` tasks are created with ``clone_many`` in
batches of ``--batch``: most queued on one queue, some in a second project, some tagged, some
drafts. Then each listing's first page is timed (median after a warm-up), through the Python API
and through the real CLI in a subprocess (database 0 full, database 1 empty as the baseline).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from common import RedisServer, Timer, console, machine_facts, print_table, used_memory, write_json

import trainyard

QUEUE = "bench"
OTHER_PROJECT = "other"
TAG = "hpo"
PAGE = 50
LATENCY_TARGET_MS = 100.0  # first page of task list / queue show
MEMORY_TARGET = 2048  # bytes of Redis memory per queued task (2 KB)
SLOW_SECONDS = 1.0  # a call slower than this (warm-up) is timed fewer times
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "scale.json"


# -- the data set -----------------------------------------------------------------------------
def batch_kind(b: int, batches: int) -> str:
    """Batch 0: drafts; the next 10%: second project; the next 20%: tagged; the rest: plain."""
    other = max(1, batches // 10)
    tagged = max(1, batches // 5)
    if b == 0:
        return "draft"
    if b <= other:
        return "other_project"
    if b <= other + tagged:
        return "tagged"
    return "plain"


def populate(conn: redis.Redis, n: int, batch: int) -> dict[str, Any]:
    """Create ``n`` tasks (batch 0 drafts, the rest queued) and measure what they cost in Redis."""
    trainyard.Queue.create(QUEUE, connection=conn, exist_ok=True)
    template = trainyard.Task.create(
        "tmpl", command=["python", "train.py"], parameters={"General/lr": 0.1, "General/epochs": 10}, connection=conn
    )
    sizes = [min(batch, n - start) for start in range(0, n, batch)]
    counts: dict[str, int] = {}
    queued_bytes = draft_bytes = 0
    with Timer() as timer:
        for b, size in enumerate(sizes):
            kind = batch_kind(b, len(sizes))
            params = [{"General/lr": (b * batch + i) / n} for i in range(size)]
            before = used_memory(conn)
            template.clone_many(
                params,
                name=f"b{b}-sweep-{{i}}",
                project=OTHER_PROJECT if kind == "other_project" else None,
                queue=None if kind == "draft" else QUEUE,
                tags=[TAG] if kind == "tagged" else None,
            )
            delta = used_memory(conn) - before
            if kind == "draft":
                draft_bytes += delta
            else:
                queued_bytes += delta
            counts[kind] = counts.get(kind, 0) + size
            console.print(f"  batch {b + 1}/{len(sizes)} ({kind}): {size} tasks", style="dim")
    queued = n - counts.get("draft", 0)
    length = len(trainyard.Queue(QUEUE, connection=conn))
    if length != queued:
        raise RuntimeError(f"{length} tasks in queue {QUEUE!r}, expected {queued}")
    return {
        "tasks": n,
        "batch": batch,
        "counts": counts,
        "queued": queued,
        "create_seconds": round(timer.elapsed, 3),
        "create_per_second": round(n / timer.elapsed, 1),
        "queued_memory_bytes": queued_bytes,
        "bytes_per_queued_task": round(queued_bytes / queued, 1) if queued else None,
        "bytes_per_draft_task": round(draft_bytes / counts["draft"], 1) if counts.get("draft") else None,
    }


# -- timing -----------------------------------------------------------------------------------
def time_call(fn: Callable[[], int], repeat: int, slow_repeat: int) -> dict[str, Any]:
    """Median ms of ``fn`` after one warm-up; ``fn`` returns how many rows it got."""
    with Timer() as warm:
        rows = fn()
    reps = slow_repeat if warm.elapsed > SLOW_SECONDS else repeat
    runs = []
    for _ in range(reps):
        with Timer() as t:
            rows = fn()
        runs.append(t.elapsed * 1000)
    return {
        "median_ms": round(statistics.median(runs), 3),
        "min_ms": round(min(runs), 3),
        "max_ms": round(max(runs), 3),
        "repeat": reps,
        "rows": rows,
    }


def time_pair(a: Callable[[], int], b: Callable[[], int], repeat: int) -> tuple[dict, dict]:
    """Like ``time_call`` for two calls, run alternately so that machine noise hits both alike."""
    rows = {"a": a(), "b": b()}  # warm-up
    runs: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(repeat):
        for key, fn in (("a", a), ("b", b)):
            with Timer() as t:
                rows[key] = fn()
            runs[key].append(t.elapsed * 1000)
    return tuple(
        {
            "median_ms": round(statistics.median(runs[k]), 3),
            "min_ms": round(min(runs[k]), 3),
            "max_ms": round(max(runs[k]), 3),
            "repeat": repeat,
            "rows": rows[k],
        }
        for k in ("a", "b")
    )


def api_calls(conn: redis.Redis, batches: int) -> dict[str, tuple[str, Callable[[], int]]]:
    task_list = trainyard.Task.list
    last = batches - 1
    rare = f"*-sweep-{PAGE * 3 + 7}"  # one task per batch: every record is read to find them

    def listing(**filters: Any) -> Callable[[], int]:
        return lambda: len(task_list(limit=PAGE, connection=conn, **filters))

    return {
        "list_all": ("Task.list()", listing()),
        "list_project": (f"Task.list(project={OTHER_PROJECT!r})", listing(project=OTHER_PROJECT)),
        "list_status": ("Task.list(status='queued')", listing(status="queued")),
        "list_tag": (f"Task.list(tag={TAG!r})", listing(tag=TAG)),
        "list_project_status": (
            f"Task.list(project={OTHER_PROJECT!r}, status='queued')",
            listing(project=OTHER_PROJECT, status="queued"),
        ),
        "list_project_status_empty": (
            f"Task.list(project={OTHER_PROJECT!r}, status='draft') (no match)",
            listing(project=OTHER_PROJECT, status="draft"),
        ),
        "list_name_newest": (f"Task.list(name='b{last}-*') (newest batch)", listing(name=f"b{last}-*")),
        "list_name_rare": (f"Task.list(name={rare!r}) (rare match)", listing(name=rare)),
        "list_name_oldest": ("Task.list(name='b0-*') (oldest batch)", listing(name="b0-*")),
        "list_name_substring": (
            f"Task.list(name='weep-{PAGE * 3 + 7}') (substring: no literal prefix or suffix)",
            listing(name=f"weep-{PAGE * 3 + 7}"),
        ),
        "queue_tasks": (f"Queue({QUEUE!r}).tasks(0, {PAGE})", lambda: len(trainyard.Queue(QUEUE, conn).tasks(0, PAGE))),
        "queue_list": ("Queue.list()", lambda: len(trainyard.Queue.list(connection=conn))),
    }


def cli_call(url: str, home: str, args: list[str]) -> Callable[[], int]:
    env = {**os.environ, "TRAINYARD_REDIS_URL": url, "TRAINYARD_HOME": home}
    command = [sys.executable, "-m", "trainyard", *args]

    def run() -> int:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return len(proc.stdout)

    return run


CLI_CALLS: dict[str, tuple[str, list[str]]] = {
    "cli_task_list": ("trainyard task list --json", ["task", "list", "--json"]),
    "cli_queue_show": (f"trainyard queue show {QUEUE} --json", ["queue", "show", QUEUE, "--json"]),
}


# -- report -----------------------------------------------------------------------------------
def status_cell(met: bool | None) -> str:
    if met is None:
        return "-"
    return "[green]met[/]" if met else "[red]missed[/]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks to create (default 100000)")
    parser.add_argument("--batch", type=int, default=5_000, help="tasks per clone_many (default 5000)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per API call (default 20)")
    parser.add_argument("--cli-repeat", type=int, default=10, help="timed runs per CLI command (default 10)")
    parser.add_argument(
        "--slow-repeat", type=int, default=3, help=f"timed runs of a call whose warm-up took > {SLOW_SECONDS:g}s"
    )
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON, help="result file (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.tasks < 2 or args.batch < 1 or min(args.repeat, args.cli_repeat, args.slow_repeat) < 1:
        parser.error("--tasks must be at least 2, --batch and the repeats at least 1")

    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="trainyard-bench-home-") as home:
        conn = server.client()
        full_url, empty_url = server.url, server.url.rsplit("/", 1)[0] + "/1"  # database 1: the baseline
        empty = redis.Redis.from_url(empty_url)
        facts = machine_facts(conn)
        console.print(
            f"redis {facts['redis_version']} at {server.url}, python {facts['python']}, "
            f"{facts['cpu_count']} CPUs, {args.tasks:,} tasks in batches of {args.batch:,}"
        )
        with Timer() as total:
            data = populate(conn, args.tasks, args.batch)
            console.print(
                f"created {args.tasks:,} tasks in {data['create_seconds']:.1f}s "
                f"({data['create_per_second']:,.0f}/s): {data['counts']}"
            )
            batches = -(-args.tasks // args.batch)
            api = {}
            for key, (label, fn) in api_calls(conn, batches).items():
                api[key] = {"label": label, **time_call(fn, args.repeat, args.slow_repeat)}
                console.print(f"  {label}: {api[key]['median_ms']:.1f} ms", style="dim")

            trainyard.Queue.create(QUEUE, connection=empty, exist_ok=True)  # same command, empty data
            cli = {}
            for key, (label, cmd) in CLI_CALLS.items():
                full, base = time_pair(cli_call(full_url, home, cmd), cli_call(empty_url, home, cmd), args.cli_repeat)
                cli[key] = {
                    "label": label,
                    "full": full,
                    "empty_redis": base,
                    "trainyard_ms": round(full["median_ms"] - base["median_ms"], 3),
                }
                console.print(
                    f"  {label}: {full['median_ms']:.0f} ms (empty Redis {base['median_ms']:.0f} ms)", style="dim"
                )
        empty.close()
        conn.close()

    rows, targets = [], []
    latency_keys = {"list_all", "list_project", "list_status", "list_tag", "list_project_status", "queue_tasks"}
    for key, r in api.items():
        met = r["median_ms"] < LATENCY_TARGET_MS if key.startswith(("list", "queue_tasks")) else None
        if met is not None:
            targets.append(
                {
                    "target": f"{r['label']} first page < {LATENCY_TARGET_MS:g} ms",
                    "value": r["median_ms"],
                    "threshold": LATENCY_TARGET_MS,
                    "unit": "ms",
                    "met": met,
                    "headline": key in latency_keys,
                }
            )
        rows.append(
            [
                r["label"],
                str(r["rows"]),
                f"{r['median_ms']:.1f} ms",
                f"{r['min_ms']:.1f}-{r['max_ms']:.1f}",
                str(r["repeat"]),
                status_cell(met),
            ]
        )
    for r in cli.values():
        rows.append(
            [
                f"CLI {r['label']} (subprocess)",
                f"{r['full']['rows']:,} B",
                f"{r['full']['median_ms']:.0f} ms",
                f"{r['full']['min_ms']:.0f}-{r['full']['max_ms']:.0f}",
                str(r["full"]["repeat"]),
                "-",
            ]
        )
        rows.append(
            [
                "  same, empty Redis (Python + CLI start-up)",
                f"{r['empty_redis']['rows']:,} B",
                f"{r['empty_redis']['median_ms']:.0f} ms",
                f"{r['empty_redis']['min_ms']:.0f}-{r['empty_redis']['max_ms']:.0f}",
                str(r["empty_redis"]["repeat"]),
                "-",
            ]
        )
        rows.append(["  difference (trainyard's own cost)", "", f"{r['trainyard_ms']:.0f} ms", "", "", "-"])
    per_task = data["bytes_per_queued_task"]
    memory_met = per_task is not None and per_task < MEMORY_TARGET
    targets.append(
        {
            "target": "Redis memory per queued task < 2 KB",
            "value": per_task,
            "threshold": MEMORY_TARGET,
            "unit": "B",
            "met": memory_met,
            "headline": True,
        }
    )
    rows.append(
        [
            "Redis memory per queued task (used_memory delta)",
            f"{data['queued']:,}",
            f"{per_task:,.0f} B",
            f"draft: {data['bytes_per_draft_task']:,.0f} B" if data["bytes_per_draft_task"] else "",
            "",
            status_cell(memory_met),
        ]
    )
    print_table(
        f"First page ({PAGE}) with {args.tasks:,} tasks ({data['queued']:,} queued on {QUEUE!r})",
        ["measurement", "rows", "median", "min-max", "runs", f"< {LATENCY_TARGET_MS:g} ms / < 2 KB"],
        rows,
        caption=(
            "Targets are judged on the Python API calls. CLI figures are wall time of a fresh "
            "`python -m trainyard` process and include Python and CLI start-up; the empty-Redis run "
            "(database 1, same queue name, no tasks) is subtracted to show trainyard's own cost."
        ),
    )
    slow = [t for t in targets if not t["met"]]
    if slow:
        console.print("[red]missed:[/] " + "; ".join(t["target"] for t in slow))

    payload = {
        "tasks": args.tasks,
        "page": PAGE,
        "queue": QUEUE,
        "repeat": args.repeat,
        "cli_repeat": args.cli_repeat,
        "slow_repeat": args.slow_repeat,
        "data_set": data,
        "api": api,
        "cli": cli,
        "targets": targets,
        "wall_seconds": round(total.elapsed, 3),
    }
    path = write_json(args.json_out, "scale", payload, facts)
    console.print(f"results written to {path} (measured in {total.elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
