"""HPO reaction times: objective logged -> prune decision -> trial aborted, and trial end -> next trial.

Run from the repository root::

    python benchmarks/bench_hpo.py [--trials 40] [--concurrency 4] [--steps 20] [--json-out benchmarks/results/hpo.json]

One throwaway redis-server and a temp ``TRAINYARD_HOME``. The optimiser's controller runs as a task on
a services worker; the trials run on a second worker process with ``--concurrency`` slots. Each trial
logs ``loss/val`` every 50 ms for ``--steps`` steps (the worse its ``x``, the higher), and prints the
time it receives SIGTERM. Optuna's TPE with a median pruner decides. Measured, from the records:

- **logged**: the trial's ``log_metric`` call (the point's ``ts``, the trial's clock) -> the
  controller's prune decision (``TrialEntry.decided``): the whole path, through the run folder's
  events file and the worker that forwards it;
- **decision**: the objective point's XADD to its trial's metric stream (the stream entry id is the
  Redis server's clock) -> the prune decision: the controller's own share;
- **abort**: the decision -> SIGTERM arriving in the trial's process (its own stamp);
- **refill**: a slot freed (a trial's final status, or a prune decision) -> the next trial queued.

Side by side with ClearML's documented intervals: its optimiser reads every trial's scalars once per
``pool_period_min`` (default 2 min), so a point waits up to 120 s for the pruner (60 s on average)
and a free slot up to 120 s for the next trial; ``job_complete_callback`` runs from a reporter every
5 min. All processes share the machine's cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from common import REPO, ChildProcesses, RedisServer, console, machine_facts, print_table, summarize, write_json

import trainyard
from trainyard.connection import reset_connections
from trainyard.controller.hpo import HyperParameterOptimizer, UniformParameterRange
from trainyard.controller.hpo.model import TrialEntry
from trainyard.queues import keys, logs, studies
from trainyard.queues.store import TaskStore

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "hpo.json"
DECISION_TARGET_MS = 50.0  # p99, XADD -> prune decision
ABORT_TARGET_MS = 1000.0  # p99, decision -> SIGTERM in the trial
REFILL_TARGET_MS = 100.0  # p99, slot freed -> next trial queued
CLEARML_POOL_S = 120.0  # pool_period_min=2.0 (optimization.py SearchStrategy default)
CLEARML_REPORT_S = 300.0  # _report_period_min = 5.0 (job_complete_callback)
WAIT_S = 600.0

TRIAL = textwrap.dedent(
    """
    import signal, sys, time
    from trainyard import current_task

    def stamp(signum, frame):
        print(f"SIGTERM {time.time()!r}", flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, stamp)
    task = current_task()
    x = task.get_parameter("Args/x")
    steps = task.get_parameter("Args/steps")
    for s in range(steps):
        task.log_metric("loss", "val", x * x + 1.0 / (s + 1), step=s)
        time.sleep(0.05)
    time.sleep(0.5)  # "saving the model": a prune at the last step still finds the process
    """
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with RedisServer() as server, ChildProcesses() as children:
        conn = server.client()
        home = children.directory / "home"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
            "TRAINYARD_REDIS_URL": server.url,
            "TRAINYARD_HOME": str(home),
        }
        os.environ.update({"TRAINYARD_REDIS_URL": server.url, "TRAINYARD_HOME": str(home)})
        reset_connections()
        for queue in ("services", "trials"):
            trainyard.Queue.create(queue, connection=conn, exist_ok=True)
        workers = [
            children.start(
                [sys.executable, "-m", "trainyard", "worker", "-q", "services", "--services-mode", "1"],
                "services",
                env=env,
            ),
            children.start(
                [sys.executable, "-m", "trainyard", "worker", "-q", "trials", "--services-mode", str(args.concurrency)],
                "trials",
                env=env,
            ),
        ]
        base = trainyard.Task.create(
            "bench-trial",
            "bench",
            command=[sys.executable, "-c", TRIAL],
            parameters={"Args/x": 1.0, "Args/steps": args.steps},
            connection=conn,
        )
        opt = HyperParameterOptimizer(
            base.id,
            [UniformParameterRange("Args/x", 0.0, 2.0)],
            "loss",
            "val",
            "min",
            optimizer_class="OptimizerOptuna",
            execution_queue="trials",
            max_number_of_concurrent_tasks=args.concurrency,
            total_max_jobs=args.trials,
            optuna_sampler=args.sampler,
            optuna_sampler_kwargs={"seed": 1, **({"n_startup_trials": 4} if args.sampler == "TPESampler" else {})},
            optuna_pruner="MedianPruner",
            optuna_pruner_kwargs={"n_startup_trials": 3, "n_warmup_steps": 2},
            connection=conn,
        )
        started = time.time()
        opt.start(queue="services")
        if not opt.wait(timeout=WAIT_S / 60):
            raise RuntimeError(f"study {opt.id} did not end within {WAIT_S:g}s")
        wall = time.time() - started
        doc = opt.study
        if doc.status != "completed":
            raise RuntimeError(f"study {opt.id} ended {doc.status}: {doc.message}")
        children.stop(workers)
        return measure(conn, opt.id, wall)


def measure(conn, study_id: str, wall: float) -> dict[str, Any]:
    entries = [TrialEntry.model_validate(e) for e in studies.trials(conn, study_id).values()]
    store = TaskStore(conn)
    records = {e.number: store.get(e.task) for e in entries}
    logged, decision, abort, refill = [], [], [], []
    frees = []
    for entry in entries:
        record = records[entry.number]
        if entry.state == "pruned" and entry.decided and entry.decided_after:
            xadd = int(entry.decided_after.split("-")[0]) / 1000
            decision.append((entry.decided - xadd) * 1000)
            point = conn.xrange(keys.metrics(entry.task), min=entry.decided_after, max=entry.decided_after)
            if point and float(point[0][1].get(b"ts", 0)) > 0:
                logged.append((entry.decided - float(point[0][1][b"ts"])) * 1000)
            term = next((line.text for line in logs.read(conn, entry.task) if line.text.startswith("SIGTERM ")), None)
            if term is not None:
                abort.append((float(term.split()[1]) - entry.decided) * 1000)
            frees.append(entry.decided)
        elif record.ended is not None:
            frees.append(record.ended)
    queued = sorted(r.queued_at for r in records.values() if r.queued_at is not None)
    frees.sort()
    concurrency = studies.load(conn, study_id)["max_concurrent"]
    for free, launched in zip(frees, queued[concurrency:]):
        refill.append(max(0.0, (launched - free) * 1000))
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.state] = counts.get(entry.state, 0) + 1
    steps_reported = sum(e.steps for e in entries)
    points = sum(
        1
        for e in entries
        for _, f in conn.xrange(keys.metrics(e.task))
        if f.get(b"t") == b"loss" and (e.state != "pruned" or int(f.get(b"i", b"0")) <= (e.iteration or 0))
    )
    return {
        "study": study_id,
        "wall_s": round(wall, 2),
        "trials": counts,
        "objective_points_reported": steps_reported,
        "objective_points_logged_up_to_the_decision": points,
        "logged_ms": _round(summarize(logged)) if logged else None,
        "decision_ms": _round(summarize(decision)) if decision else None,
        "abort_ms": _round(summarize(abort)) if abort else None,
        "refill_ms": _round(summarize(refill)) if refill else None,
    }


def _round(stats: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in stats.items()}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, label, threshold in (
        ("decision_ms", "objective XADD -> prune decision, p99", DECISION_TARGET_MS),
        ("abort_ms", "prune decision -> SIGTERM in the trial, p99", ABORT_TARGET_MS),
        ("refill_ms", "trial ended or pruned -> next trial queued, p99", REFILL_TARGET_MS),
    ):
        value = (result.get(key) or {}).get("p99")
        out.append(
            {
                "target": label,
                "value": value,
                "threshold": threshold,
                "unit": "ms",
                "met": value is not None and value < threshold,
            }
        )
    reported, logged = result["objective_points_reported"], result["objective_points_logged_up_to_the_decision"]
    out.append(
        {
            "target": "objective steps that reached Optuna (every logged step)",
            "value": round(100.0 * reported / logged, 2) if logged else None,
            "threshold": 100.0,
            "unit": "%",
            "met": logged > 0 and reported >= logged,
        }
    )
    return out


def show(result: dict[str, Any]) -> None:
    rows = []
    clearml = {
        "logged_ms": f"up to {CLEARML_POOL_S:.0f} s (mean {CLEARML_POOL_S / 2:.0f} s) plus the upload of the scalar",
        "decision_ms": f"up to {CLEARML_POOL_S:.0f} s (mean {CLEARML_POOL_S / 2:.0f} s): one read per pool_period_min",
        "abort_ms": "after the decision, at the agent's next poll",
        "refill_ms": f"up to {CLEARML_POOL_S:.0f} s: refilled at the next poll",
    }
    for key, label in (
        ("logged_ms", "log_metric call -> prune decision"),
        ("decision_ms", "objective XADD -> prune decision"),
        ("abort_ms", "prune decision -> SIGTERM in the trial"),
        ("refill_ms", "trial ended or pruned -> next trial queued"),
    ):
        stats = result.get(key)
        ours = "-" if not stats else f"{stats['median']:.1f} / {stats['p99']:.1f} ms (n={stats['count']})"
        rows.append([label, ours, clearml[key]])
    rows.append(
        ["job_complete_callback after a trial ends", "in the same pass as the tell", f"up to {CLEARML_REPORT_S:.0f} s"]
    )
    print_table(
        f"HPO reaction times (study {result['study']}: {result['trials']}, {result['wall_s']} s)",
        ["what", "trainyard median / p99", "ClearML HyperParameterOptimizer (documented defaults)"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sampler", default="TPESampler", help="an Optuna sampler (seed 1)")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    result = run(args)
    result["targets"] = targets(result)
    result["clearml"] = {"pool_period_s": CLEARML_POOL_S, "report_period_s": CLEARML_REPORT_S}
    show(result)
    path = write_json(args.json_out, "hpo", result, machine_facts())
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
