"""ClearML's ``HyperParameterOptimizer`` and parameter ranges: trainyard's own optimiser
(``trainyard.controller.hpo``, ClearML's names already), with ClearML Tasks where it returns tasks."""

from __future__ import annotations

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
from ..errors import refuse_unknown
from ..task import Task

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
    ``base_task_id`` may also be a ClearML Task."""

    def __init__(self, base_task_id, *args, **kwargs):
        super().__init__(getattr(base_task_id, "id", base_task_id), *args, **kwargs)

    def start(self, job_complete_callback=None) -> bool:  # type: ignore[override]
        """Run the study here (trials on ``execution_queue``); ``wait()`` joins it."""
        return super().start_locally(job_complete_callback)

    def start_locally(self, job_complete_callback=None) -> bool:  # type: ignore[override]
        """Run the study and its trials here (trials on an in-process worker)."""
        return super().start_locally(job_complete_callback, run_trials_locally=True)

    def get_top_experiments(self, top_k: int) -> list[Task]:
        return [Task(native) for native in super().get_top_experiments(top_k)]

    def get_active_experiments(self) -> list[Task]:
        return [Task(native) for native in super().get_active_experiments()]

    def __getattr__(self, name: str):
        refuse_unknown("HyperParameterOptimizer", name)
