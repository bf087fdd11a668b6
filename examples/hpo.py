"""Hyper-parameter optimisation with Optuna's TPE and a median pruner: 30 trials, 4 at a time.

    python examples/hpo.py [--trials 30] [--concurrency 4]

This one file is both sides. Run by hand, it creates the base task (this script, with ``Args/lr``,
``Args/batch-size`` and ``Args/epochs``) and optimises it: each trial is a clone with the sampled
values, run here on an in-process worker (``start_locally(run_trials_locally=True)``; drop that to
send trials to ``--queue`` workers). Run as a trial (a worker passes the ``Args/`` parameters as
flags), it "trains": its validation loss falls over the epochs towards a floor set by lr and batch
size, and each epoch's value reaches the pruner the moment it is logged, so bad trials stop early.
"""

import argparse
import math
import os
import time
from pathlib import Path

from trainyard import Queue, Task, current_task
from trainyard.controller.hpo import (
    DiscreteParameterRange,
    HyperParameterOptimizer,
    LogUniformParameterRange,
    OptimizerOptuna,
)


def train(lr: float, batch_size: int, epochs: int) -> None:
    """The trial: the floor is lowest near lr=3e-3 and batch size 64."""
    task = current_task()
    floor = 0.3 * (math.log10(lr) + 2.5) ** 2 + abs(math.log2(batch_size / 64)) * 0.2
    for epoch in range(epochs):
        loss = floor + 2.0 / (epoch + 1)
        task.log_metric("loss", "val", loss, step=epoch)
        time.sleep(0.05)  # an epoch of "work"
    task.set_output("final_loss", round(loss, 4))


def report(job_id, objective_value, objective_iteration, job_parameters, top_performance_job_id) -> None:
    """ClearML's job_complete_callback: called once per completed trial, as it ends."""
    best = " (best so far)" if job_id == top_performance_job_id else ""
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in job_parameters.items())
    print(f"trial {job_id}: loss {objective_value:.4f} at epoch {objective_iteration} with {params}{best}", flush=True)


def optimise(trials: int, concurrency: int, project: str) -> None:
    Queue.create("hpo-trials", exist_ok=True)
    base = Task.create(
        "hpo-base",
        project,
        script=Path(__file__),
        parameters={"Args/lr": 0.01, "Args/batch-size": 32, "Args/epochs": 10},
    )
    optimizer = HyperParameterOptimizer(
        base_task_id=base.id,
        hyper_parameters=[
            LogUniformParameterRange("Args/lr", min_value=-5, max_value=-1),  # 1e-5 .. 1e-1 (exponents, as ClearML)
            DiscreteParameterRange("Args/batch-size", values=[16, 32, 64, 128, 256]),
        ],
        objective_metric_title="loss",
        objective_metric_series="val",
        objective_metric_sign="min",
        optimizer_class=OptimizerOptuna,
        execution_queue="hpo-trials",
        max_number_of_concurrent_tasks=concurrency,
        total_max_jobs=trials,
        min_iteration_per_job=2,  # no pruning before the third epoch
        optuna_sampler="TPESampler",
        optuna_sampler_kwargs={"seed": 42, "n_startup_trials": 8},
        optuna_pruner="MedianPruner",
        optuna_pruner_kwargs={"n_startup_trials": 5, "n_warmup_steps": 2},
    )
    optimizer.start_locally(job_complete_callback=report, run_trials_locally=True)
    print(f"study {optimizer.id}: {trials} trials, {concurrency} at a time", flush=True)
    optimizer.wait()
    study = optimizer.study
    print(f"study {study.status}: {study.counts.get('completed', 0)} completed, {study.counts.get('pruned', 0)} pruned")
    for rank, task in enumerate(optimizer.get_top_experiments(3), 1):
        loss = task.metrics["loss"]["val"].last
        print(f"#{rank} {task.name}: loss {loss:.4f}")
    print(f"details: trainyard hpo show {optimizer.id}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--project", default="examples")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    if os.environ.get("TRAINYARD_TASK_ID"):  # run by a worker: this is a trial
        train(args.lr, args.batch_size, args.epochs)
    else:
        optimise(args.trials, args.concurrency, args.project)


if __name__ == "__main__":
    main()
