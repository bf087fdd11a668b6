"""``clearml.automation``: pipelines, schedulers and the optimiser."""

from __future__ import annotations

from ..errors import refuse_unknown
from .controller import PipelineController, PipelineDecorator
from .optimization import (
    DiscreteParameterRange,
    GridSearch,
    HyperParameterOptimizer,
    LogUniformParameterRange,
    ParameterSet,
    RandomSearch,
    UniformIntegerParameterRange,
    UniformParameterRange,
)
from .scheduler import TaskScheduler, TriggerScheduler

__all__ = [
    "DiscreteParameterRange",
    "GridSearch",
    "HyperParameterOptimizer",
    "LogUniformParameterRange",
    "ParameterSet",
    "PipelineController",
    "PipelineDecorator",
    "RandomSearch",
    "TaskScheduler",
    "TriggerScheduler",
    "UniformIntegerParameterRange",
    "UniformParameterRange",
]


def __getattr__(name: str):
    refuse_unknown("automation", name)
