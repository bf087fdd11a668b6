"""ClearML's ``HyperParameterOptimizer`` and parameter ranges: trainyard's own optimiser
(``trainyard.controller.hpo``, ClearML's names already), with ClearML Tasks where it returns tasks."""

from __future__ import annotations

from typing import Any

from ...controller.hpo import (
    DiscreteParameterRange,
    GridSearch,
    LogUniformParameterRange,
    OptimizerOptuna,
    Parameter,
    ParameterSet,
    RandomSearch,
    UniformIntegerParameterRange,
    UniformParameterRange,
)
from ...controller.hpo import HyperParameterOptimizer as _NativeOptimizer
from ...queues.task import Task as NativeTask
from ..errors import refuse_unknown, unsupported
from ..task import Task, TaskTypes

__all__ = [
    "DiscreteParameterRange",
    "GridSearch",
    "HyperParameterOptimizer",
    "LogUniformParameterRange",
    "OptimizerOptuna",
    "Parameter",
    "ParameterSet",
    "RandomSearch",
    "UniformIntegerParameterRange",
    "UniformParameterRange",
]


class HyperParameterOptimizer(_NativeOptimizer):
    """trainyard's optimiser with ClearML's meaning of ``start``: the optimisation runs in this
    process (ClearML starts threads beside the script, which ``execute_remotely`` may have sent to
    the services queue), so a ``job_complete_callback`` defined in the script works.
    ``base_task_id`` may also be a ClearML Task.

    As in ClearML, the current task (``Task.init``'s, or the task a worker runs) is the optimiser's
    task: the study is kept on it and the trials are its children; no other task is made. Without
    one, ``always_create_task=True`` makes it with ``Task.init`` (``Optimizing: <base task>``, in the
    base task's project) as ClearML does; otherwise trainyard still makes an optimiser task to keep
    the study on (ClearML keeps its study in the process and makes none)."""

    def __init__(self, base_task_id, *args, auto_connect_task: Any = True, always_create_task: bool = False, **kwargs):
        base_id = getattr(base_task_id, "id", base_task_id)
        current = Task.current_task()
        if isinstance(auto_connect_task, Task) and auto_connect_task != current:
            raise unsupported("HyperParameterOptimizer(auto_connect_task=<a Task other than the current task>)")
        super().__init__(
            base_id,
            *args,
            auto_connect_task=bool(auto_connect_task),
            always_create_task=always_create_task,
            **kwargs,
        )
        if current is None and always_create_task:
            base = NativeTask.get(str(base_id), self.connection)
            current = Task.init(
                project_name=base.project, task_name=f"Optimizing: {base.name}", task_type=TaskTypes.optimizer
            )
        self._task = current
        if current is not None and self.auto_connect_task:  # ClearML's `opt` section on its task
            args = {key.removeprefix("opt/"): value for key, value in self._connected_args().items()}
            current.connect(args, name="opt", ignore_remote_overrides=True)

    def start(self, job_complete_callback=None) -> bool:  # type: ignore[override]
        """Run the study here (trials on ``execution_queue``); ``wait()`` joins it."""
        return super().start_locally(job_complete_callback, task_id=self._own_task_id())

    def start_locally(self, job_complete_callback=None) -> bool:  # type: ignore[override]
        """Run the study and its trials here (trials on an in-process worker)."""
        return super().start_locally(job_complete_callback, run_trials_locally=True, task_id=self._own_task_id())

    def _own_task_id(self) -> str | None:
        return self._task.id if self._task is not None else None

    def get_top_experiments(self, top_k: int) -> list[Task]:
        return [Task(native) for native in super().get_top_experiments(top_k)]

    def get_active_experiments(self) -> list[Task]:
        return [Task(native) for native in super().get_active_experiments()]

    def __getattr__(self, name: str):
        refuse_unknown("HyperParameterOptimizer", name)
