"""Hyper-parameter optimisation: Optuna ask-and-tell driven by the trials' metric and status streams.

Trials are real tasks run by real workers (an in-process one for ``start_locally(run_trials_locally=
True)``, worker processes otherwise) against the test's redis-server.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
import time

import optuna
import psutil
import pytest
from workerproc import WorkerProcess

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
from trainyard.controller.hpo.storage import JournalStorage, RedisJournal
from trainyard.queues import keys, logs, studies

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


# -- prune = abort at once; failures never stop the study; callbacks -------------------------------------
SLOW_TRIAL = textwrap.dedent(
    """
    import time
    from trainyard import current_task
    task = current_task()
    x = task.get_parameter("Args/x")
    for s in range(4):
        task.log_metric("loss", "val", x, step=s)
    if x > 5:
        print("bad trial waiting", flush=True)
        time.sleep(600)
    if x < 0:
        raise SystemExit("this trial fails")
    """
)

calls: list[tuple] = []
STEADY = {"TRAINYARD_HEARTBEAT_S": "1", "TRAINYARD_WORKER_TTL_S": "8", "TRAINYARD_DEAD_AFTER_S": "8"}


def record_call(job_id, objective_value, objective_iteration, job_parameters, top_performance_job_id):
    calls.append((job_id, objective_value, objective_iteration, job_parameters, top_performance_job_id))


def test_a_pruned_trial_is_aborted_at_once_and_failures_do_not_stop_the_study(conn):
    """Threshold pruner: a trial whose loss is above 5 is pruned at its first step and its task,
    which would otherwise sleep ten minutes, is aborted. A trial that fails is told FAIL; the study
    goes on. The callback runs once per completed trial, with the best task so far."""
    Queue.create("trials")
    base = Task.create("slow", "hpo", command=[sys.executable, "-c", SLOW_TRIAL], parameters={"Args/x": 1.0})
    calls.clear()
    opt = _optimizer(
        base.id,
        hyper_parameters=[DiscreteParameterRange("Args/x", [1.0, 9.0, -1.0, 2.0])],
        optimizer_class="GridSearch",
        optuna_pruner="ThresholdPruner",
        optuna_pruner_kwargs={"upper": 5.0},
        total_max_jobs=10,
        max_number_of_concurrent_tasks=2,
        save_top_k_tasks_only=1,
    )
    opt.start_locally(job_complete_callback=record_call, run_trials_locally=True)
    assert opt.wait()
    entries = sorted(_entries(conn, opt.id).values(), key=lambda e: e.params["Args/x"])
    assert [(e.params["Args/x"], e.state) for e in entries] == [
        (-1.0, "failed"),
        (1.0, "completed"),
        (2.0, "completed"),
        (9.0, "pruned"),
    ]  # the grid has 4 points: total_max_jobs is cut to 4
    pruned = Task.get(entries[3].task)
    assert pruned.status == TaskStatus.ABORTED and "pruned at step 0" in pruned.data.status_message
    # (it sleeps 600 s unless aborted: beyond the test's own time limit)
    assert "this trial fails" in (Task.get(entries[0].task).data.runtime.error or "") or entries[0].reason
    assert sorted((c[0], c[1], c[2]) for c in calls) == sorted((e.task, e.value, 3) for e in entries[1:3])
    assert calls[-1][4] == entries[1].task  # x=1.0 has the lowest loss
    assert [t.id for t in opt.get_top_experiments(2)] == [entries[1].task, entries[2].task]
    details = opt.get_top_experiments_details(1)
    assert details[0]["hyper_parameters"] == {"Args/x": 1.0} and details[0]["metrics"]["loss"]["val"]["last"] == 1.0
    assert opt.study.best["task"] == entries[1].task and opt.study.status == "completed"
    # save_top_k_tasks_only=1: completed trials outside the best one are tagged archived
    assert "archived" not in Task.get(entries[1].task).tags and "archived" in Task.get(entries[2].task).tags


NO_OBJECTIVE = 'from trainyard import current_task\ncurrent_task().log_metric("accuracy", "val", 0.5, step=0)'


def test_an_objective_no_trial_reports_fails_the_study_with_one_line(conn):
    Queue.create("trials")
    base = Task.create("wrong-metric", "hpo", command=[sys.executable, "-c", NO_OBJECTIVE], parameters={"Args/x": 1})
    opt = _optimizer(base.id, total_max_jobs=6, max_number_of_concurrent_tasks=1)
    opt.start_locally(run_trials_locally=True)
    assert opt.wait()
    doc = opt.study
    assert doc.status == "failed"
    assert doc.message.startswith("objective metric loss/val is unknown: trial 0 (task ")
    assert doc.message.endswith("completed without it and reported accuracy/val") and "\n" not in doc.message
    assert len(_entries(conn, opt.id)) == 1  # nothing more was enqueued
    assert len(Task.list(tag=f"opt:{opt.id}")) == 1


# -- durable: kill -9 the optimiser's worker mid-study -----------------------------------------------------
def test_killing_the_optimisers_worker_loses_and_duplicates_no_trial(conn, base):
    """The services worker hosting the controller is SIGKILLed after two trials completed; the
    controller task is re-queued (it has retries) and a new services worker resumes the study:
    it re-attaches the running trials and launches the rest. Checked against the records."""
    Queue.create("services")
    total = 8
    opt = _optimizer(
        base.id,
        total_max_jobs=total,
        max_number_of_concurrent_tasks=2,
        optuna_sampler="TPESampler",
        optuna_sampler_kwargs={"seed": 3, "n_startup_trials": 3},
        optuna_pruner="NopPruner",
    )
    Task.get(base.id).set_parameters({"Args/x": 0.5, "Args/steps": 6, "Args/pause": 0.3})
    with (
        WorkerProcess("-q", "trials", "--cpu-only", fast=False),
        WorkerProcess("-q", "trials", "--cpu-only", fast=False),
    ):
        victim = WorkerProcess("-q", "services", "--services-mode", "2", "--name", "hpo-services-1", env=STEADY)
        opt.start(queue="services")
        _wait_trials(conn, opt.id, lambda es: sum(e.state == "completed" for e in es) >= 2)
        controller = next(
            p for p in psutil.Process(victim.proc.pid).children(recursive=True) if "hpo.run" in " ".join(p.cmdline())
        )
        victim.signal(signal.SIGKILL)
        victim.wait()
        psutil.wait_procs([controller], timeout=30)
        with WorkerProcess("-q", "services", "--services-mode", "2", "--name", "hpo-services-2", env=STEADY):
            assert opt.wait(timeout=5)
    doc = opt.study
    controller_task = Task.get(opt.id).data
    log = "\n".join(line.text for line in logs.read(conn, opt.id))
    assert doc.status == "completed", (
        f"{doc.message}; {controller_task.status} {controller_task.runtime.attempts}\n{log}"
    )
    entries = _entries(conn, opt.id)
    assert sorted(entries) == list(range(total)) and all(e.state == "completed" for e in entries.values())
    tasks = Task.list(tag=f"opt:{opt.id}", limit=100)
    assert sorted(t.id for t in tasks) == sorted(e.task for e in entries.values())  # one task per trial
    assert all(t.status == TaskStatus.COMPLETED for t in tasks)  # none aborted by the controller's death
    trials = optuna.load_study(study_name=opt.id, storage=JournalStorage(RedisJournal(conn, opt.id))).get_trials()
    assert len(trials) == total and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    attempts = controller_task.runtime.attempts
    assert attempts[0].outcome == "lost" and attempts[-1].outcome == "completed"  # re-run after its worker died
    assert controller_task.status == TaskStatus.COMPLETED


def test_aborting_the_optimisers_task_stops_the_study_and_its_trials(conn, base):
    """An abort of the optimiser's task (not its worker leaving) stops the study: running trials
    are aborted, nothing new starts, the study ends stopped."""
    Queue.create("services")
    Task.get(base.id).set_parameters({"Args/x": 0.5, "Args/steps": 1000, "Args/pause": 0.2})
    opt = _optimizer(base.id, total_max_jobs=6, max_number_of_concurrent_tasks=2, optuna_pruner="NopPruner")
    with (
        WorkerProcess("-q", "trials", "--cpu-only", fast=False),
        WorkerProcess("-q", "services", "--services-mode", "2", fast=False),
    ):
        opt.start(queue="services")
        _wait_trials(conn, opt.id, lambda es: any(e.state == "running" for e in es))
        Task.get(opt.id).abort()
        assert opt.wait(timeout=2)
    doc = opt.study
    assert doc.status == "stopped" and doc.message == "the study was stopped"
    entries = _entries(conn, opt.id)
    assert len(entries) == 2  # nothing launched after the stop
    assert all(Task.get(e.task).status == TaskStatus.ABORTED for e in entries.values())
    assert Task.get(opt.id).status == TaskStatus.ABORTED


def test_stopping_the_optimisers_worker_leaves_the_trials_running_for_the_next_attempt(conn, base, run_cli):
    """`worker stop` on the services worker ends the controller (SIGTERM) and puts its task back at
    the front of the queue. That is not a stop of the study: no trial is aborted, and the next
    services worker resumes it."""
    Queue.create("services")
    Task.get(base.id).set_parameters({"Args/x": 0.5, "Args/steps": 8, "Args/pause": 0.3})
    opt = _optimizer(base.id, total_max_jobs=4, optuna_pruner="NopPruner", pool_period_min=0.02)
    with (
        WorkerProcess("-q", "trials", "--cpu-only", fast=False),
        WorkerProcess("-q", "trials", "--cpu-only", fast=False),
    ):
        first = WorkerProcess("-q", "services", "--services-mode", "2", "--name", "hpo-stop-1", fast=False)
        opt.start(queue="services")
        _wait_trials(conn, opt.id, lambda es: any(e.state == "running" for e in es))
        run_cli("worker", "stop", "hpo-stop-1", check=True)
        assert first.wait() == 0
        controller = Task.get(opt.id).data
        assert controller.status == TaskStatus.QUEUED and controller.runtime.attempts[-1].outcome == "requeued"
        with WorkerProcess("-q", "services", "--services-mode", "2", "--name", "hpo-stop-2", fast=False):
            assert opt.wait(timeout=5)
    assert opt.study.status == "completed"
    entries = _entries(conn, opt.id)
    assert len(entries) == 4 and all(e.state == "completed" for e in entries.values())
    assert all(Task.get(e.task).status == TaskStatus.COMPLETED for e in entries.values())  # none aborted
    log = "\n".join(line.text for line in logs.read(conn, opt.id))
    assert "its trials keep running" in log


def _wait_trials(conn, study_id: str, done, timeout: float = 120) -> None:
    """Block on the event stream until ``done(entries)`` holds."""
    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while time.monotonic() < deadline:
        if done(list(_entries(conn, study_id).values())):
            return
        reply = conn.xread({keys.EVENTS: cursor}, block=500, count=1000)
        for _, entries in reply or []:
            cursor = entries[-1][0]
    controller = Task.get(study_id)
    log = "\n".join(line.text for line in logs.read(conn, study_id))
    raise AssertionError(f"study {study_id}: trials did not get there in {timeout}s; {controller!r}:\n{log}")


# -- the CLI -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--base-task", "nope"], "error: base task 'nope' does not exist"),
        (["--param", "Args/x=uniform:1:0"], "error: parameter Args/x: the range is inverted (min 1 > max 0)"),
        (["--param", "Args/x=choice:"], "error: parameter Args/x: no values to choose from"),
        (["--param", "Args/x=normal:0:1"], "error: --param 'Args/x=normal:0:1': expected NAME=KIND:ARGS"),
        (["--sampler-arg", "bogus=1"], "error: sampler TPESampler: unknown argument(s) bogus (it takes: "),
        (["--sampler", "SimulatedAnnealing"], "error: unknown sampler 'SimulatedAnnealing' (known: "),
        (["--objective", "loss"], "error: --objective 'loss': expected TITLE/SERIES"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(conn, base, run_cli, args, message):
    defaults = {"--base-task": base.id, "--param": "Args/x=uniform:0:1", "--objective": "loss/val", "--queue": "trials"}
    given = dict(zip(args[::2], args[1::2]))
    argv = [item for key, value in {**defaults, **given}.items() for item in (key, value)]
    proc = run_cli("hpo", "start", *argv, "--controller-queue", "trials")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    _nothing_written(conn, base.id)


def test_cli_runs_a_study_here_then_lists_shows_and_stops_it(conn, base, run_cli, tmp_path):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(
        textwrap.dedent(
            """
            base_task: hpo/trial
            objective: {title: loss, series: val, sign: min}
            parameters:
              Args/x: uniform:0:1
              Args/steps: {type: DiscreteParameterRange, values: [3, 4]}
            optimizer: OptimizerOptuna
            sampler: {name: tpe, kwargs: {seed: 5, n_startup_trials: 2}}
            pruner: median
            queue: trials
            concurrency: 2
            total: 3
            """
        )
    )
    proc = run_cli("hpo", "start", str(study_file), "--total", "4", "--here", "--local-trials", timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    study_id = proc.stdout.split()[1].rstrip(":")
    shown = json.loads(run_cli("hpo", "show", study_id, "--json", check=True).stdout)
    assert shown["study"]["status"] == "completed" and len(shown["trials"]) == 4  # --total won over the file
    values = [t["value"] for t in shown["trials"] if t["state"] == "completed"]
    assert values == sorted(values) and values  # best first
    assert all(t["params"]["Args/steps"] in (3, 4) for t in shown["trials"])
    table_text = run_cli("hpo", "show", study_id, check=True).stdout
    assert f"study {study_id}" in table_text and "Args/x" in table_text and "completed" in table_text
    listed = json.loads(run_cli("hpo", "list", "--json", check=True).stdout)
    assert [d["id"] for d in listed] == [study_id]
    assert study_id in run_cli("hpo", "list", check=True).stdout
    assert run_cli("hpo", "stop", study_id, check=True).stdout.strip() == f"study {study_id}: stop requested"
    missing = run_cli("hpo", "show", "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no study 'nope'"


# -- GPU-aware packing ----------------------------------------------------------------------------------------
GPU_TRIAL = textwrap.dedent(
    """
    import time
    from trainyard import current_task
    task = current_task()
    time.sleep(1.0)
    task.log_metric("loss", "val", task.get_parameter("Args/x"), step=0)
    """
)


def test_mixed_size_trials_share_a_gpu_without_oversubscribing_it(conn, tmp_path):
    """Stand-in NVML (no GPU here): one 16 GB GPU, --gpu-share 3. Trials sized by the search space
    (Execution/gpu_memory_mb: 4 GB small, 12 GB large) run side by side while their declared memory
    fits, and never beyond it."""
    from trainyard.worker.standin_nvml import write_config

    gpus_file = tmp_path / "gpus.json"
    write_config(gpus_file, [{"name": "shared", "memory_total_mb": 16384}])
    env = {"TRAINYARD_NVML": "standin", "TRAINYARD_STANDIN_GPUS_FILE": str(gpus_file)}
    Queue.create("trials")
    base = Task.create("gpu-trial", "hpo", command=[sys.executable, "-c", GPU_TRIAL], gpus=1, parameters={"Args/x": 1})
    sizes = ParameterSet(
        [
            {"Args/size": "small", "Execution/gpu_memory_mb": 4000},
            {"Args/size": "large", "Execution/gpu_memory_mb": 12000},
        ]
    )
    opt = _optimizer(
        base.id,
        hyper_parameters=[sizes, UniformParameterRange("Args/x", 0.0, 1.0)],
        optimizer_class="RandomSearch",
        optuna_sampler_kwargs={"seed": 2},
        total_max_jobs=8,
        max_number_of_concurrent_tasks=4,
    )
    with WorkerProcess("--gpus", "0", "-q", "trials", "--gpu-share", "3", env=env, fast=False):
        opt.start_locally()
        assert opt.wait()
    entries = _entries(conn, opt.id)
    assert len(entries) == 8 and all(e.state == "completed" for e in entries.values())
    records = [Task.get(e.task).data for e in entries.values()]
    for record, entry in zip(records, entries.values()):
        size = entry.params["Args/size"]
        assert record.execution.gpus.min_memory_mb == {"small": 4000, "large": 12000}[size]
        assert record.parameters["Args/size"] == size and "Execution/gpu_memory_mb" not in record.parameters
        assert record.runtime.gpus == ["0"]
    overlapped = False
    for record in records:  # at each trial's start, what ran beside it fits in 16 GB
        beside = [r for r in records if r.started <= record.started < r.ended]
        assert sum(r.execution.gpus.min_memory_mb for r in beside) <= 16384, [r.name for r in beside]
        overlapped = overlapped or len(beside) > 1
    assert overlapped  # trials did share the GPU
    assert {e.params["Args/size"] for e in entries.values()} == {"small", "large"}


def test_an_unknown_execution_setting_in_the_space_is_refused(base):
    with pytest.raises(InvalidInput, match=r"unknown execution setting\(s\) Execution/memory in the search space"):
        _optimizer(base.id, hyper_parameters=[DiscreteParameterRange("Execution/memory", ["2g", "4g"])])


# -- limits, several objectives, the space ------------------------------------------------------------------
ENDLESS = textwrap.dedent(
    """
    import time
    from trainyard import current_task
    task = current_task()
    x = task.get_parameter("Args/x")
    if x > 0.5:
        time.sleep(600)  # never reports: only the time limit ends it
    for s in range(10_000):
        task.log_metric("loss", "val", x + 1.0 / (s + 1), step=s)
        time.sleep(0.02)
    """
)


def test_max_iteration_and_time_limit_per_job_stop_trials_and_keep_the_study_going(conn):
    Queue.create("trials")
    base = Task.create("endless", "hpo", command=[sys.executable, "-c", ENDLESS], parameters={"Args/x": 0.1})
    opt = _optimizer(
        base.id,
        hyper_parameters=[DiscreteParameterRange("Args/x", [0.1, 0.9, 0.2])],
        optimizer_class="GridSearch",
        max_iteration_per_job=5,
        time_limit_per_job=0.05,  # 3 s
        max_number_of_concurrent_tasks=3,
    )
    opt.start_locally(run_trials_locally=True)
    assert opt.wait()
    entries = {e.params["Args/x"]: e for e in _entries(conn, opt.id).values()}
    assert opt.study.status == "completed"
    for x in (0.1, 0.2):  # stopped at step 5, their value kept
        assert entries[x].state == "completed" and entries[x].reason == "reached max_iteration_per_job (5)"
        assert entries[x].iteration >= 5 and entries[x].value == pytest.approx(x + 1.0 / (entries[x].iteration + 1))
        assert Task.get(entries[x].task).status == TaskStatus.ABORTED
    slow = entries[0.9]  # it never reported: stopped by the time limit, told failed; the study went on
    assert slow.state == "failed" and slow.reason.startswith("it never reported the objective loss/val")
    assert "time_limit_per_job" in Task.get(slow.task).data.status_message


TWO_OBJECTIVES = textwrap.dedent(
    """
    from trainyard import current_task
    task = current_task()
    x = task.get_parameter("Args/x")
    task.log_metric("loss", "val", (x - 0.2) ** 2, step=0)
    task.log_metric("accuracy", "val", 1 - (x - 0.8) ** 2, step=0)
    """
)


def test_several_objectives_with_optuna(conn):
    Queue.create("trials")
    base = Task.create("pareto", "hpo", command=[sys.executable, "-c", TWO_OBJECTIVES], parameters={"Args/x": 0.5})
    opt = _optimizer(
        base.id,
        objective_metric_title=["loss", "accuracy"],
        objective_metric_series=["val", "val"],
        objective_metric_sign=["min", "max"],
        optuna_sampler="NSGAIISampler",
        optuna_sampler_kwargs={"seed": 1, "population_size": 4},
        total_max_jobs=5,
    )
    opt.start_locally(run_trials_locally=True)
    assert opt.wait()
    entries = list(_entries(conn, opt.id).values())
    assert len(entries) == 5 and all(e.state == "completed" for e in entries)
    for entry in entries:
        x = entry.params["Args/x"]
        assert entry.value == pytest.approx([(x - 0.2) ** 2, 1 - (x - 0.8) ** 2])
    study = optuna.load_study(study_name=opt.id, storage=JournalStorage(RedisJournal(conn, opt.id)))
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    assert study.best_trials  # the Pareto front
    with pytest.raises(InvalidInput, match="several objectives need optimizer_class=OptimizerOptuna"):
        _optimizer(base.id, objective_metric_title=["loss", "accuracy"], objective_metric_series=["val", "val"],
                   optimizer_class="RandomSearch")  # fmt: skip


def test_parameters_map_onto_optuna_and_round_trip_as_clearml_dicts():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from trainyard.controller.hpo.parameters import Parameter, grid_size, space_distributions

    space = [
        UniformParameterRange("Args/dropout", 0.0, 0.5, step_size=0.1),
        UniformIntegerParameterRange("Args/layers", 1, 8, step_size=2),
        LogUniformParameterRange("lr", -4, -1),
        DiscreteParameterRange("Args/opt", ["adam", "sgd", {"name": "lamb"}]),
        ParameterSet([{"Args/a": 1, "Args/b": UniformIntegerParameterRange("Args/b", 0, 2)}, {"Args/a": 2}]),
    ]
    dists = space_distributions(space)
    assert dists["Args/dropout"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert dists["Args/layers"] == IntDistribution(1, 7, step=2)
    assert dists["General/lr"] == FloatDistribution(1e-4, 1e-1, log=True)  # bare names go to General/
    assert isinstance(dists["Args/opt"], CategoricalDistribution)
    assert dists["ParameterSet/set"] == CategoricalDistribution([0, 1])
    assert grid_size(space) == 6 * 4 * 100 * 3 * 2 * 3
    assert space[3].decode({"Args/opt": '{"name": "lamb"}'}) == {"Args/opt": {"name": "lamb"}}
    assert space[4].decode({"ParameterSet/set": 0, "Args/b": 2}) == {"Args/a": 1, "Args/b": 2}
    again = [Parameter.from_dict(p.to_dict()) for p in space]
    assert [p.to_dict() for p in again] == [p.to_dict() for p in space]
    assert space[0].to_dict() == {
        "type": "UniformParameterRange",
        "name": "Args/dropout",
        "min_value": 0.0,
        "max_value": 0.5,
        "step_size": 0.1,
        "include_max_value": True,
    }


# -- the compute budget, a grid running out, resuming a local study, objects vs. a services worker -----------
SLEEPER = textwrap.dedent(
    """
    import time
    from trainyard import current_task
    task = current_task()
    task.log_metric("loss", "val", task.get_parameter("Args/x"), step=0)
    time.sleep(600)  # only an abort ends it
    """
)


def test_compute_time_limit_stops_the_study_and_aborts_its_trials(conn):
    """ClearML's compute_time_limit: the trials' run times summed. When they reach it no trial
    starts and the running ones are aborted (their value kept, as for any limit). The reconcile
    period is an hour: the controller wakes on the budget's own deadline, not on a poll."""
    Queue.create("trials")
    base = Task.create("sleeper", "hpo", command=[sys.executable, "-c", SLEEPER], parameters={"Args/x": 1.0})
    opt = _optimizer(
        base.id,
        hyper_parameters=[DiscreteParameterRange("Args/x", [1.0, 2.0, 3.0, 4.0, 5.0])],
        optimizer_class="GridSearch",
        compute_time_limit=0.2,  # 12 s of trial time in all
        max_number_of_concurrent_tasks=2,
        total_max_jobs=5,
        pool_period_min=60,
    )
    opt.start_locally(run_trials_locally=True)
    assert opt.wait()
    doc = opt.study
    assert doc.status == "completed" and doc.message == "compute_time_limit reached (0.2 min)"
    entries = _entries(conn, opt.id)
    assert len(entries) == 2  # nothing started after the budget was spent
    for entry in entries.values():
        task = Task.get(entry.task).data
        assert task.status == TaskStatus.ABORTED and "compute_time_limit reached" in task.status_message
        if entry.steps:  # stopped by a limit: its value is kept
            assert entry.state == "completed" and entry.value == entry.params["Args/x"]
        else:  # (a machine so loaded that it was aborted before its first point)
            assert entry.state == "failed" and entry.reason.startswith("it never reported the objective")
    used = sum(e.ended - e.started for e in entries.values() if e.started is not None)
    assert used >= 12.0  # the budget was spent, not cut short


def test_optimization_time_limit_ends_the_study_on_its_deadline(conn):
    """set_time_limit (optimization_time_limit): at the deadline no trial starts and the running
    ones are aborted; the controller wakes on the deadline (its reconcile period is an hour)."""
    Queue.create("trials")
    base = Task.create("sleeper", "hpo", command=[sys.executable, "-c", SLEEPER], parameters={"Args/x": 1.0})
    opt = _optimizer(
        base.id,
        hyper_parameters=[DiscreteParameterRange("Args/x", [1.0, 2.0, 3.0, 4.0])],
        optimizer_class="GridSearch",
        max_number_of_concurrent_tasks=2,
        pool_period_min=60,
    )
    opt.set_time_limit(in_minutes=0.1)
    opt.start_locally(run_trials_locally=True)
    assert opt.wait()
    doc = opt.study
    assert doc.status == "completed" and doc.message == "optimization_time_limit reached (0.1 min)"
    assert opt.reached_time_limit() and doc.ended - doc.started >= 6.0
    entries = _entries(conn, opt.id)
    assert len(entries) == 2
    assert all(Task.get(e.task).status == TaskStatus.ABORTED for e in entries.values())


@pytest.mark.parametrize(
    "how",
    [
        {"optimizer_class": "GridSearch"},
        {"optimizer_class": "OptimizerOptuna", "optuna_sampler": "GridSampler", "optuna_pruner": "NopPruner"},
        {"optimizer_class": "OptimizerOptuna", "optuna_sampler": "object", "optuna_pruner": "NopPruner"},
    ],
    ids=["GridSearch", "GridSampler-by-name", "GridSampler-object"],
)
def test_a_grid_that_runs_out_of_points_ends_the_study_with_exactly_its_trials(conn, base, how):
    """A 2 x 3 grid, total_max_jobs 20, 4 at a time: the study completes with the 6 points, each
    once (no point run twice while the last ones are still running), in the book, the tasks and
    Optuna's journal alike."""
    space = [DiscreteParameterRange("Args/x", [0.25, 0.75]), UniformIntegerParameterRange("Args/steps", 2, 4)]
    points = {(x, steps) for x in (0.25, 0.75) for steps in (2, 3, 4)}
    if how.get("optuna_sampler") == "object":
        how = {**how, "optuna_sampler": optuna.samplers.GridSampler({"Args/x": [0.25, 0.75], "Args/steps": [2, 3, 4]})}
    opt = _optimizer(base.id, hyper_parameters=space, total_max_jobs=20, max_number_of_concurrent_tasks=4, **how)
    opt.start_locally(run_trials_locally=True)
    assert opt.wait()
    assert opt.study.status == "completed"
    entries = _entries(conn, opt.id)
    assert sorted(entries) == list(range(6)) and all(e.state == "completed" for e in entries.values())
    assert sorted((e.params["Args/x"], e.params["Args/steps"]) for e in entries.values()) == sorted(points)
    tasks = Task.list(tag=f"opt:{opt.id}", limit=100)
    assert sorted(t.id for t in tasks) == sorted(e.task for e in entries.values())
    assert all(t.status == TaskStatus.COMPLETED for t in tasks)
    trials = optuna.load_study(study_name=opt.id, storage=JournalStorage(RedisJournal(conn, opt.id))).get_trials()
    assert len(trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {(t.params["Args/x"], t.params["Args/steps"]) for t in trials} == points


def test_a_local_study_stopped_then_resumed_continues_without_losing_or_repeating_a_trial(conn, base):
    """start_locally, stop it after two trials completed, resume it from Redis: the trials booked
    before stay as they were (same tasks, same outcomes), the rest are launched once each, and
    Optuna's journal carries on from where it was (the old entries are a prefix of the new)."""
    from trainyard.controller.hpo.optimizer import resume_study

    total = 6
    Task.get(base.id).set_parameters({"Args/x": 0.5, "Args/steps": 6, "Args/pause": 0.4})
    opt = _optimizer(
        base.id,
        total_max_jobs=total,
        max_number_of_concurrent_tasks=2,
        optuna_sampler="RandomSampler",
        optuna_sampler_kwargs={"seed": 11},
        optuna_pruner="NopPruner",
    )
    opt.start_locally(run_trials_locally=True)
    _wait_trials(conn, opt.id, lambda es: sum(e.state == "completed" for e in es) >= 2)
    opt.stop()
    assert opt.wait()
    assert opt.study.status == "stopped"
    before = _entries(conn, opt.id)
    assert 2 <= len(before) < total and not any(e.active for e in before.values())
    journal_before = conn.lrange(keys.study_journal(opt.id), 0, -1)

    result = resume_study(conn, opt.id)
    assert result.status == "completed" and opt.study.status == "completed"
    after = _entries(conn, opt.id)
    assert sorted(after) == list(range(total))
    for number, entry in before.items():  # untouched by the resume
        assert (after[number].task, after[number].state, after[number].value) == (entry.task, entry.state, entry.value)
    assert all(after[n].state == "completed" for n in range(len(before), total))
    tasks = Task.list(tag=f"opt:{opt.id}", limit=100)
    assert sorted(t.id for t in tasks) == sorted(e.task for e in after.values())  # one task per trial
    assert all(t.status in (TaskStatus.COMPLETED, TaskStatus.ABORTED) for t in tasks)
    journal_after = conn.lrange(keys.study_journal(opt.id), 0, -1)
    assert journal_after[: len(journal_before)] == journal_before and len(journal_after) > len(journal_before)
    trials = optuna.load_study(study_name=opt.id, storage=JournalStorage(RedisJournal(conn, opt.id))).get_trials()
    assert [t.number for t in trials] == list(range(total))
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    assert [t.params["Args/x"] for t in trials] == [after[n].params["Args/x"] for n in range(total)]
    assert len({t.params["Args/x"] for t in trials}) == total  # the seeded sampler did not start its draws over
    finished = {n: e.value for n, e in after.items() if e.state == "completed"}
    assert {t.number: t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE} == finished


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"optuna_sampler": optuna.samplers.TPESampler(seed=1)}, "optuna_sampler='TPESampler'"),
        ({"optuna_pruner": optuna.pruners.MedianPruner()}, "optuna_pruner='MedianPruner'"),
    ],
    ids=["sampler", "pruner"],
)
def test_sampler_or_pruner_objects_are_refused_by_start_with_one_line(conn, base, kwargs, name):
    """A sampler or pruner object cannot travel to a services worker: start() says so in one line,
    names what to pass instead, and writes nothing. start_locally() takes them (the grid test)."""
    Queue.create("services")
    with pytest.raises(InvalidInput) as err:
        _optimizer(base.id, **kwargs).start(queue="services")
    message = str(err.value)
    assert "\n" not in message and "cannot travel to a services worker" in message
    assert name in message and "_kwargs={...}" in message and "start_locally()" in message
    _nothing_written(conn, base.id)
    assert Queue("services").task_ids() == []


def test_cli_stops_and_resumes_a_study_that_runs_here(conn, base, run_cli):
    """`hpo resume` refuses a study whose controller is running (one line); after `hpo stop` it
    runs the controller again in the terminal, with its trials on an in-process worker as before."""
    Task.get(base.id).set_parameters({"Args/x": 0.5, "Args/steps": 6, "Args/pause": 0.4})
    opt = _optimizer(base.id, total_max_jobs=4, optuna_pruner="NopPruner")
    opt.start_locally(run_trials_locally=True)
    _wait_trials(conn, opt.id, lambda es: any(e.state == "running" for e in es))
    busy = run_cli("hpo", "resume", opt.id)
    assert busy.returncode == 1 and busy.stderr == f"error: study {opt.id}'s controller is running already\n"
    assert run_cli("hpo", "stop", opt.id, check=True).stdout.strip() == f"study {opt.id}: stop requested"
    assert opt.wait() and opt.study.status == "stopped"
    before = _entries(conn, opt.id)
    proc = run_cli("hpo", "resume", opt.id, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"study {opt.id} ") and ": completed;" in proc.stdout.splitlines()[0]
    after = _entries(conn, opt.id)
    assert sorted(after) == [0, 1, 2, 3] and all(after[n].task == e.task for n, e in before.items())
    assert sorted(t.id for t in Task.list(tag=f"opt:{opt.id}", limit=100)) == sorted(e.task for e in after.values())
    assert not [q for q in Queue.list() if q.name.startswith("local-trials-")]  # its in-process queue is gone
