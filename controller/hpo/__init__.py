"""Hyper-parameter optimisation: ClearML's ``HyperParameterOptimizer`` on Optuna, driven by events."""

from .engines import GridSearch, OptimizerOptuna, RandomSearch
from .optimizer import HyperParameterOptimizer, stop_study
from .parameters import (
    DiscreteParameterRange,
    LogUniformParameterRange,
    Parameter,
    ParameterSet,
    UniformIntegerParameterRange,
    UniformParameterRange,
)

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
    "stop_study",
]
