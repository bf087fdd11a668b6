"""Hyper-parameter optimisation: Optuna ask-and-tell driven by the trials' metric and status streams.

Trials are real tasks run by real workers (an in-process one for ``start_locally(run_trials_locally=
True)``, worker processes otherwise) against the test's redis-server.
"""

from __future__ import annotations

import sys
import textwrap

import optuna
import pytest

from trainyard import InvalidInput, Queue, Task, TaskStatus, TrainyardError
from trainyard.controller.hpo import (
    DiscreteParameterRange,
    HyperParameterOptimizer,
    LogUniformParameterRange,
    ParameterSet,
    UniformIntegerParameterRange,
    UniformParameterRange,
)
from trainyard.controller.hpo.model import TrialEntry
from trainyard.queues import keys, studies

# A trial: loss/val at step s is (x - 0.3)^2 + 1/(s+1), or a function of x and a noise-free bump
# that some trials take late, so a median pruner has something to prune.
TRIAL = textwrap.dedent(
    """
    import sys, time
    from trainyard import current_task
    task = current_task()
    x = task.get_parameter("Args/x")
    steps = task.get_parameter("Args/steps", 8)
    pause = task.get_parameter("Args/pause", 0.0)
    for s in range(steps):
        task.log_metric("loss", "val", (x - 0.3) ** 2 * 10 + 1.0 / (s + 1), step=s)
        time.sleep(pause)
    print("trial done", flush=True)
    """
)


def loss_curve(x: float, steps: int = 8) -> list[float]:
    return [(x - 0.3) ** 2 * 10 + 1.0 / (s + 1) for s in range(steps)]


@pytest.fixture
def base(conn):
    Queue.create("trials")
    return Task.create(
        "trial",
        "hpo",
        command=[sys.executable, "-c", TRIAL],
        parameters={"Args/x": 0.5, "Args/steps": 8, "Args/pause": 0.0},
    )


def _entries(conn, study_id: str) -> dict[int, TrialEntry]:
    return {n: TrialEntry.model_validate(e) for n, e in studies.trials(conn, study_id).items()}


# -- bad input: one clear line each, nothing written or enqueued ---------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: UniformParameterRange("Args/x", 1.0, 0.0),
            "parameter Args/x: the range is inverted (min 1.0 > max 0.0)",
        ),
        (
            lambda: UniformIntegerParameterRange("Args/n", 5, 1),
            "parameter Args/n: the range is inverted (min 5 > max 1)",
        ),
        (
            lambda: UniformIntegerParameterRange("Args/n", 3, 3, include_max_value=False),
            "parameter Args/n: the range is empty",
        ),
        (lambda: DiscreteParameterRange("Args/b", []), "parameter Args/b: no values to choose from"),
        (lambda: LogUniformParameterRange("Args/lr", -1, -4), "parameter Args/lr: the range is inverted"),
        (lambda: ParameterSet([]), "ParameterSet: no parameter combinations"),
    ],
)
def test_empty_or_inverted_ranges_are_refused(make, message):
    with pytest.raises(InvalidInput) as err:
        make()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def _optimizer(base_id: str, **kwargs) -> HyperParameterOptimizer:
    args = {
        "hyper_parameters": [UniformParameterRange("Args/x", 0.0, 1.0)],
        "objective_metric_title": "loss",
        "objective_metric_series": "val",
        "objective_metric_sign": "min",
        "optimizer_class": "OptimizerOptuna",
        "execution_queue": "trials",
        "total_max_jobs": 4,
        "max_number_of_concurrent_tasks": 2,
    }
    return HyperParameterOptimizer(base_id, **{**args, **kwargs})


def _nothing_written(conn, base_id: str) -> None:
    assert [t.id for t in Task.list(limit=100)] == ([base_id] if base_id != "nope" else [])
    assert conn.zcard(keys.STUDIES) == 0
    assert Queue("trials").task_ids() == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"optuna_sampler": "TPESampler", "optuna_sampler_kwargs": {"n_startup": 3}},
            "sampler TPESampler: unknown argument(s) n_startup",
        ),
        ({"optuna_sampler": "NoSuchSampler"}, "unknown sampler 'NoSuchSampler' (known: "),
        (
            {"optuna_pruner": "median", "optuna_pruner_kwargs": {"warmup": 1}},
            "pruner MedianPruner: unknown argument(s) warmup",
        ),
        ({"objective_metric_title": "accuracy"}, "objective metric 'accuracy/val' was never reported by base task"),
        ({"execution_queue": "nowhere"}, "no queue named 'nowhere'"),
    ],
)
def test_bad_optimizer_input_is_refused_before_anything_is_written(conn, base, kwargs, message):
    base_id = base.id
    if "objective_metric_title" in kwargs:  # the base task has run and reported loss/val only
        from trainyard.queues.record import MetricSummary
        from trainyard.queues.store import TaskStore

        def ran(record):
            record.metrics = {"loss": {"val": MetricSummary(last=1.0, min=1.0, max=1.0, step=3, count=4)}}

        TaskStore(conn).update(base_id, ran)
    with pytest.raises(TrainyardError) as err:
        _optimizer(base_id, **kwargs).start(queue="trials")
    assert message in str(err.value) and "\n" not in str(err.value)
    _nothing_written(conn, base_id)


def test_a_base_task_that_does_not_exist_is_refused(conn, base):
    with pytest.raises(InvalidInput, match="base task 'nope' does not exist"):
        _optimizer("nope").start_locally()
    _nothing_written(conn, base.id)


def test_unknown_optimizer_arguments_are_refused_not_dropped(base):
    with pytest.raises(InvalidInput, match="unknown optimizer argument"):
        _optimizer(base.id, optuna_kwargs={"x": 1})


# -- every step reaches the pruner ----------------------------------------------------------------------
def test_median_pruner_prunes_exactly_what_an_in_process_optuna_study_prunes(conn, base):
    """Same sampler seed, same pruner, same metric sequences: trainyard's controller, fed by the
    trials' metric streams, prunes the same trials at the same steps as Optuna run in-process."""
    n_trials = 10
    sampler = {"optuna_sampler": "RandomSampler", "optuna_sampler_kwargs": {"seed": 7}}
    pruner = {"optuna_pruner": "MedianPruner", "optuna_pruner_kwargs": {"n_startup_trials": 2, "n_warmup_steps": 1}}
    opt = _optimizer(base.id, total_max_jobs=n_trials, max_number_of_concurrent_tasks=1, **sampler, **pruner)
    opt.start_locally(run_trials_locally=True)
    assert opt.wait()
    entries = _entries(conn, opt.id)
    assert len(entries) == n_trials and opt.study.status == "completed"

    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=7),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    expected = {}
    for _ in range(n_trials):
        trial = study.ask({"Args/x": optuna.distributions.FloatDistribution(0.0, 1.0)})
        curve = loss_curve(trial.params["Args/x"])
        for step, value in enumerate(curve):
            trial.report(value, step)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                expected[trial.number] = ("pruned", step, trial.params["Args/x"])
                break
        else:
            study.tell(trial, curve[-1])
            expected[trial.number] = ("completed", None, trial.params["Args/x"])
    got = {n: (e.state, e.iteration if e.state == "pruned" else None, e.params["Args/x"]) for n, e in entries.items()}
    assert got == expected
    assert any(state == "pruned" for state, _, _ in expected.values())  # the test means something
    for entry in entries.values():  # every reported step reached Optuna (pruned: up to the prune)
        assert entry.steps == (entry.iteration + 1 if entry.state == "pruned" else 8)
        task = Task.get(entry.task)
        assert task.status in (
            (TaskStatus.ABORTED, TaskStatus.COMPLETED) if entry.state == "pruned" else (TaskStatus.COMPLETED,)
        )
        assert task.parent == opt.id and f"opt:{opt.id}" in task.tags and "optimization" in task.tags
        assert isinstance(task.get_parameter("Args/x"), float)
