"""``HyperParameterOptimizer``: ClearML's optimiser API over trainyard's event-driven study controller.

    opt = HyperParameterOptimizer(
        base_task_id=template.id,
        hyper_parameters=[LogUniformParameterRange("Args/lr", -4, -1), DiscreteParameterRange("Args/batch", [16, 32])],
        objective_metric_title="loss", objective_metric_series="val", objective_metric_sign="min",
        optimizer_class=OptimizerOptuna, execution_queue="gpu", max_number_of_concurrent_tasks=4,
        total_max_jobs=30, optuna_pruner="MedianPruner", optuna_pruner_kwargs={"n_startup_trials": 5},
    )
    opt.start(queue="services")   # or opt.start_locally()
    opt.wait()
    top = opt.get_top_experiments(3)

Times are in minutes, as in ClearML. Everything is checked before anything is written: a range that
is empty or inverted, a base task that does not exist, an objective the base task never reported
(when it has run), an unknown sampler or pruner or one of their arguments, an unknown queue.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from redis import Redis

from ...queues import studies
from ...queues.connection import resolve
from ...queues.errors import InvalidInput, TaskNotFound, TrainyardError
from ...queues.queue_registry import QueueRegistry
from ...queues.record import TaskStatus, TaskType
from ...queues.store import TaskStore
from ...queues.task import Task
from .engine import JobCallback, StudyController
from .engines import build_pruner, build_sampler, spec, strategy_name
from .model import ACTIVE, Objective, StudyDoc, TrialEntry
from .parameters import Parameter, parameter_names, space_distributions
from .trials import check_execution_names, check_objectives

CONTROLLER_COMMAND = ["python", "-m", "trainyard.controller.hpo.run"]
OPTIMIZER_KWARGS = {
    "total_max_jobs",
    "time_limit_per_job",
    "min_iteration_per_job",
    "max_iteration_per_job",
    "pool_period_min",
    "optuna_sampler",
    "optuna_pruner",
    "optuna_sampler_kwargs",
    "optuna_pruner_kwargs",
    "continue_previous_study",
}


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _callback_path(fn: Callable | str | None) -> str | None:
    if fn is None or isinstance(fn, str):
        return fn
    return f"{fn.__module__}:{fn.__qualname__}"


class HyperParameterOptimizer:
    """Searches ``hyper_parameters`` of ``base_task_id`` for the best objective, trial by trial."""

    def __init__(
        self,
        base_task_id: str,
        hyper_parameters: Sequence[Parameter],
        objective_metric_title: str | Sequence[str],
        objective_metric_series: str | Sequence[str],
        objective_metric_sign: str | Sequence[str] = "min",
        optimizer_class: Any = "RandomSearch",
        max_number_of_concurrent_tasks: int = 10,
        execution_queue: str = "default",
        optimization_time_limit: float | None = None,
        compute_time_limit: float | None = None,
        auto_connect_task: bool = True,
        always_create_task: bool = False,
        spawn_project: str | None = None,
        save_top_k_tasks_only: int | None = None,
        name: str | None = None,
        project: str | None = None,
        connection: Redis | None = None,
        **optimizer_kwargs: Any,
    ):
        unknown = sorted(set(optimizer_kwargs) - OPTIMIZER_KWARGS)
        if unknown:
            raise InvalidInput(
                f"unknown optimizer argument(s): {', '.join(unknown)} (known: {', '.join(sorted(OPTIMIZER_KWARGS))})"
            )
        self._conn = connection
        self.base_task_id = base_task_id
        self.hyper_parameters = list(hyper_parameters)
        for parameter in self.hyper_parameters:
            if not isinstance(parameter, Parameter):
                raise InvalidInput(f"hyper_parameters must be Parameter objects, got {parameter!r}")
        titles, series = _as_list(objective_metric_title), _as_list(objective_metric_series)
        signs = _as_list(objective_metric_sign)
        if len(signs) == 1 and len(titles) > 1:
            signs = signs * len(titles)
        if not (len(titles) == len(series) == len(signs)) or not titles:
            raise InvalidInput("objective_metric_title, _series and _sign must be lists of the same length")
        for sign in signs:
            if sign not in ("min", "max", "min_global", "max_global"):
                raise InvalidInput(f"objective_metric_sign must be min, max, min_global or max_global, got {sign!r}")
        self.objectives = [Objective(title=t, series=s, sign=g) for t, s, g in zip(titles, series, signs)]
        self.strategy = strategy_name(optimizer_class)
        if len(self.objectives) > 1 and self.strategy != "OptimizerOptuna":
            raise InvalidInput("several objectives need optimizer_class=OptimizerOptuna")
        self._sampler_obj = optimizer_kwargs.get("optuna_sampler")
        self._pruner_obj = optimizer_kwargs.get("optuna_pruner")
        local_sampler = isinstance(self._sampler_obj, optuna.samplers.BaseSampler)
        local_pruner = isinstance(self._pruner_obj, optuna.pruners.BasePruner)
        self.sampler = (
            None if local_sampler else spec(self._sampler_obj, optimizer_kwargs.get("optuna_sampler_kwargs"), "sampler")
        )
        self.pruner = (
            None if local_pruner else spec(self._pruner_obj, optimizer_kwargs.get("optuna_pruner_kwargs"), "pruner")
        )
        if not local_sampler:
            self._sampler_obj = None
        if not local_pruner:
            self._pruner_obj = None
        self.max_concurrent = _positive("max_number_of_concurrent_tasks", max_number_of_concurrent_tasks)
        self.total_max_jobs = _positive("total_max_jobs", optimizer_kwargs.get("total_max_jobs", 10))
        self.execution_queue = execution_queue
        self.limits = {
            "time_limit_per_job": optimizer_kwargs.get("time_limit_per_job"),
            "min_iteration_per_job": optimizer_kwargs.get("min_iteration_per_job"),
            "max_iteration_per_job": optimizer_kwargs.get("max_iteration_per_job"),
            "optimization_time_limit": optimization_time_limit,
            "compute_time_limit": compute_time_limit,
        }
        self.reconcile_s = float(optimizer_kwargs.get("pool_period_min", 0.5)) * 60
        self.spawn_project = spawn_project
        self.save_top_k_tasks_only = save_top_k_tasks_only
        self.name = name
        self.project = project
        self.auto_connect_task = auto_connect_task
        self.always_create_task = always_create_task
        self.id: str | None = None
        self._thread: threading.Thread | None = None
        self._controller: StudyController | None = None
        self._error: BaseException | None = None
        self._time_limit: float | None = None
        space_distributions(self.hyper_parameters)  # two dimensions with one name, an empty space
        check_execution_names(parameter_names(self.hyper_parameters))

    # -- plumbing ----------------------------------------------------------------------------------
    @property
    def connection(self) -> Redis:
        if self._conn is None:
            self._conn = resolve(None)
        return self._conn

    def _new_study(
        self,
        callback: JobCallback | str | None,
        controller_queue: str | None,
        local_queue: str | None,
        task_id: str | None = None,
    ):
        """Check everything, then write the optimiser task (or use ``task_id``, the running task
        of this process) and the study (nothing is enqueued)."""
        conn = self.connection
        try:
            base = TaskStore(conn).get(self.base_task_id)
        except TaskNotFound:
            raise InvalidInput(f"base task {self.base_task_id!r} does not exist") from None
        check_objectives(base, self.objectives)
        build_sampler(self.sampler, self.strategy, self.hyper_parameters)  # unknown names and arguments: refused now
        build_pruner(self.pruner, self.strategy)
        broker = QueueRegistry(conn)
        if local_queue is None:
            broker.require(self.execution_queue)
        if controller_queue:
            broker.require(controller_queue)
            if callable(callback) and callback.__module__ == "__main__":
                raise InvalidInput(
                    "job_complete_callback is defined in the main script: a controller on a services worker "
                    "cannot import it (move it to a module, or use start_locally())"
                )
        space = [p.to_dict() for p in self.hyper_parameters]
        name = self.name or f"Optimizing: {base.name}"
        if task_id is not None:
            task = self._own_task(task_id)
        else:
            task = Task.create(
                name,
                self.project or base.project,
                command=CONTROLLER_COMMAND,
                task_type=TaskType.OPTIMIZER,
                tags=["optimizer"],
                # a queued controller whose worker dies is re-queued and resumes the study; one run here
                # has no queue to go back to (a retry would leave it queued for ever): `hpo resume` restarts it
                retries=3 if controller_queue else 0,
                connection=conn,
                configuration={"parameter_optimization_space": space},
                parameters=self._connected_args(),
            )
        doc = StudyDoc(
            id=task.id,
            name=name,
            project=task.project,
            base_task=base.id,
            space=space,
            objectives=self.objectives,
            strategy=self.strategy,
            sampler=self.sampler,
            pruner=self.pruner,
            queue=self.execution_queue,
            max_concurrent=self.max_concurrent,
            total_max_jobs=self.total_max_jobs,
            spawn_project=self.spawn_project,
            save_top_k_tasks_only=self.save_top_k_tasks_only,
            reconcile_s=self.reconcile_s,
            callback=_callback_path(callback) if controller_queue else None,
            controller_queue=controller_queue,
            local_queue=local_queue,
            **self.limits,
        )
        if self._time_limit is not None:
            doc.optimization_time_limit = self._time_limit
        studies.save(conn, doc.id, doc.model_dump(), doc.created)
        self.id = doc.id
        return doc

    def _own_task(self, task_id: str) -> Task:
        """The running task of this process, holding the study (one study per task)."""
        task = Task.get(task_id, self.connection)
        if task.status != TaskStatus.RUNNING:
            raise InvalidInput(f"task {task_id} is {task.status.value}: a study is kept on a running task only")
        try:
            studies.load(self.connection, task_id)
        except studies.StudyNotFound:
            return task.add_tags("optimizer")
        raise InvalidInput(f"task {task_id} holds a study already: one optimiser per task")

    def _connected_args(self) -> dict[str, Any]:
        """The optimiser's settings as the controller task's ``opt/`` parameters (as ClearML's)."""
        if not self.auto_connect_task:
            return {}
        args = {
            "base_task_id": self.base_task_id,
            "objective_metric_title": [o.title for o in self.objectives],
            "objective_metric_series": [o.series for o in self.objectives],
            "objective_metric_sign": [o.sign for o in self.objectives],
            "optimizer_class": self.strategy,
            "max_number_of_concurrent_tasks": self.max_concurrent,
            "execution_queue": self.execution_queue,
            "total_max_jobs": self.total_max_jobs,
            **{k: v for k, v in self.limits.items() if v is not None},
        }
        return {f"opt/{k}": v for k, v in args.items()}

    # -- running -----------------------------------------------------------------------------------
    def start(self, job_complete_callback: JobCallback | str | None = None, queue: str = "services") -> bool:
        """Run the controller as a task on ``queue`` (a services worker). The callback must be
        importable there (a function of a module, or ``"module:function"``)."""
        for what, obj in (("sampler", self._sampler_obj), ("pruner", self._pruner_obj)):
            if obj is not None:
                kind = type(obj).__name__
                raise InvalidInput(
                    f"optuna_{what} is a {kind} object, which cannot travel to a services worker: give it by name "
                    f"(optuna_{what}='{kind}', optuna_{what}_kwargs={{...}}), or use start_locally()"
                )
        doc = self._new_study(job_complete_callback, queue, None)
        Task.get(doc.id, self.connection).enqueue(queue)
        return True

    def start_locally(
        self,
        job_complete_callback: JobCallback | None = None,
        run_trials_locally: bool = False,
        task_id: str | None = None,
    ) -> bool:
        """Run the controller in this process, in a background thread (``wait()`` joins it). With
        ``run_trials_locally`` the trials run on an in-process worker instead of ``execution_queue``.
        ``task_id``: the running task of this process holds the study (no optimiser task is made;
        the task ends with its process, not with the study)."""
        local_queue = f"local-trials-{os.urandom(4).hex()}" if run_trials_locally else None
        doc = self._new_study(job_complete_callback, None, local_queue, task_id)
        ready = threading.Event()

        def run() -> None:
            try:
                run_here(
                    self.connection,
                    doc.id,
                    job_complete_callback,
                    self._sampler_obj,
                    self._pruner_obj,
                    on_controller=lambda c: (setattr(self, "_controller", c), ready.set()),
                    hold=task_id is None,
                )
            except BaseException as exc:  # noqa: BLE001 - kept for wait() to raise
                self._error = exc
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name=f"hpo-{doc.id}", daemon=True)
        self._thread.start()
        ready.wait()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the study ends (``timeout`` in minutes); True when it has ended."""
        study_id = self._require()
        seconds = None if timeout is None else timeout * 60
        if self._thread is not None:
            self._thread.join(seconds)
            if self._error is not None:
                raise self._error
            return not self._thread.is_alive()
        try:
            Task.get(study_id, self.connection).wait(timeout=seconds)
        except TrainyardError:
            return False
        return True

    def stop(self, timeout: float | None = None, wait_for_reporter: bool | None = True) -> None:
        """Stop: no new trial starts, running trials are aborted; waits up to ``timeout`` minutes."""
        study_id = self._require()
        stop_study(self.connection, study_id)
        if self._controller is not None:
            self._controller.stop_event.set()
        if timeout is not None:
            self.wait(timeout)

    def set_time_limit(self, in_minutes: float | None = None, specific_time: Any = None) -> None:
        """Limit the whole study (before start): minutes from now, or until a datetime."""
        if specific_time is not None:
            in_minutes = (specific_time.timestamp() - time.time()) / 60
        self._time_limit = in_minutes

    # -- results -----------------------------------------------------------------------------------
    def _require(self) -> str:
        if self.id is None:
            raise InvalidInput("the optimiser has not been started")
        return self.id

    def _entries(self) -> list[TrialEntry]:
        return [TrialEntry.model_validate(e) for e in studies.trials(self.connection, self._require()).values()]

    def get_top_experiments(self, top_k: int) -> list[Task]:
        """The ``top_k`` completed trials' tasks, best objective first."""
        return top_tasks(self.connection, self._require(), top_k)

    def get_top_experiments_details(
        self,
        top_k: int,
        all_metrics: bool = False,
        all_hyper_parameters: bool = False,
        only_completed: bool = False,
    ) -> list[dict[str, Any]]:
        """``[{task_id, hyper_parameters, metrics}]`` of the best trials (ClearML's shape)."""
        out = []
        for task in self.get_top_experiments(top_k):
            if only_completed and task.status != TaskStatus.COMPLETED:
                continue
            params = (
                task.get_parameters()
                if all_hyper_parameters
                else {k: v for k, v in task.get_parameters().items() if k in self._space_names()}
            )
            metrics = {
                t: {s: m.model_dump() for s, m in series.items()}
                for t, series in task.metrics.items()
                if all_metrics or any(o.title == t for o in self.objectives)
            }
            out.append({"task_id": task.id, "hyper_parameters": params, "metrics": metrics})
        return out

    @classmethod
    def get_optimizer_top_experiments(
        cls,
        objective_metric_title: Any = None,
        objective_metric_series: Any = None,
        objective_metric_sign: Any = None,
        optimizer_task_id: str | None = None,
        top_k: int = 10,
        connection: Redis | None = None,
    ) -> list[Task]:
        """The best trials of an optimiser task given by id (the study's objective is used)."""
        if optimizer_task_id is None:
            raise InvalidInput("optimizer_task_id is required")
        return top_tasks(resolve(connection), optimizer_task_id, top_k)

    def _space_names(self) -> set[str]:
        return parameter_names(self.hyper_parameters)

    def get_active_experiments(self) -> list[Task]:
        return [Task.get(e.task, self.connection) for e in self._entries() if e.state in ACTIVE]

    def get_num_active_experiments(self) -> int:
        return sum(1 for e in self._entries() if e.state in ACTIVE)

    def is_active(self) -> bool:
        return self.id is not None and studies.load(self.connection, self.id).get("status") in ("pending", "running")

    is_running = is_active

    def elapsed(self) -> float:
        """Minutes since the study started (-1 before)."""
        if self.id is None:
            return -1.0
        doc = studies.load(self.connection, self.id)
        if not doc.get("started"):
            return -1.0
        return ((doc.get("ended") or time.time()) - doc["started"]) / 60

    def reached_time_limit(self) -> bool:
        doc = studies.load(self.connection, self._require())
        return bool(doc.get("message") and "optimization_time_limit" in doc["message"])

    def set_report_period(self, report_period_minutes: float) -> None:
        """Kept for ClearML scripts: trainyard reports each trial as it ends, there is no period."""

    @property
    def study(self) -> StudyDoc:
        return StudyDoc.model_validate(studies.load(self.connection, self._require()))


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    return value


def top_tasks(conn: Redis, study_id: str, top_k: int) -> list[Task]:
    doc = StudyDoc.model_validate(studies.load(conn, study_id))
    done = [
        TrialEntry.model_validate(e)
        for e in studies.trials(conn, study_id).values()
        if e.get("state") == "completed" and e.get("value") is not None
    ]
    minimize = doc.objectives[0].direction == "minimize"

    def key(entry: TrialEntry) -> float:
        first = entry.value[0] if isinstance(entry.value, list) else entry.value
        return first if minimize else -first

    return [Task.get(e.task, conn) for e in sorted(done, key=key)[:top_k]]


def stop_study(conn: Redis, study_id: str) -> None:
    """Ask a study's controller to stop (a flag and an event it wakes on)."""
    studies.load(conn, study_id)  # StudyNotFound when there is none
    studies.request_stop(conn, study_id)


def run_here(
    conn: Redis,
    study_id: str,
    callback: JobCallback | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    on_controller: Callable[[StudyController], Any] | None = None,
    hold: bool = True,
) -> StudyDoc:
    """Run (or resume) a study's controller in this process; trials run on an in-process worker
    when the study was started with ``run_trials_locally``. ``hold``: this process runs the
    study's task here and ends it with the study; False when the task is the process's own (a
    worker's or an attached run's), which ends it."""
    from ...queues.queue import Queue
    from ..in_process import LocalController, step_worker

    doc = StudyDoc.model_validate(studies.load(conn, study_id))
    drain = thread = None
    try:
        if doc.local_queue:
            QueueRegistry(conn).create(doc.local_queue, description="trials of a local study", exist_ok=True)
            drain, thread = step_worker(conn, doc.local_queue)
        if not hold:
            controller = StudyController(conn, study_id, callback, sampler, pruner)
            if on_controller is not None:
                on_controller(controller)
            return controller.execute()
        with LocalController(conn, study_id) as holder:
            try:
                controller = StudyController(conn, study_id, callback, sampler, pruner)
                if on_controller is not None:
                    on_controller(controller)
                result = controller.execute()
            except BaseException as exc:
                holder.finish("failed", f"controller error: {exc}")
                raise
            holder.finish("completed" if result.status == "completed" else "failed", result.message)
        return result
    finally:
        if drain is not None:
            drain()
            thread.join(timeout=60)
        if doc.local_queue:
            with contextlib.suppress(TrainyardError):
                Queue(doc.local_queue, conn).delete(force=True)


def resume_study(conn: Redis, study_id: str) -> StudyDoc | None:
    """Start a study's controller again the way it ran: on its services queue (returns None), or
    here (returns the finished study). Finished trials stay; running ones are re-attached."""
    doc = StudyDoc.model_validate(studies.load(conn, study_id))
    task = Task.get(study_id, conn)
    if task.status.value in ("queued", "running"):
        raise InvalidInput(f"study {study_id}'s controller is {task.status.value} already")
    if task.status.value != "draft":
        task.reset()
    studies.clear_stop(conn, study_id)
    if doc.controller_queue:
        task.enqueue(doc.controller_queue)
        return None
    return run_here(conn, study_id)
