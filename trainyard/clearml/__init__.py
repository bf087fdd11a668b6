"""ClearML's API on trainyard: change ``from clearml import ...`` to ``from trainyard.clearml import ...``.

Every name maps onto trainyard's own API (README: *Coming from ClearML* has the table). A ClearML
name or call that is not carried raises :class:`UnsupportedCall`, one line naming it.
"""

from __future__ import annotations

from .errors import UnsupportedCall, install_hook, refuse_unknown
from .logger import Logger
from .storage import StorageManager
from .task import Task, TaskTypes

install_hook()  # an uncaught UnsupportedCall prints one line, not a traceback

__all__ = ["Logger", "StorageManager", "Task", "TaskTypes", "UnsupportedCall"]


_AUTOMATION = (
    "PipelineController",
    "PipelineDecorator",
    "TaskScheduler",
    "TriggerScheduler",
    "HyperParameterOptimizer",
    "UniformParameterRange",
    "UniformIntegerParameterRange",
    "LogUniformParameterRange",
    "DiscreteParameterRange",
    "ParameterSet",
    "GridSearch",
    "RandomSearch",
)


def __getattr__(name: str):
    if name in _AUTOMATION:  # clearml exports these at its top level too
        import importlib

        return getattr(importlib.import_module(".automation", __name__), name)
    refuse_unknown("", name)
