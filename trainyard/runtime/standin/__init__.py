"""Stand-in ``trainyard`` package for task environments without trainyard installed.

The worker puts this folder on such a task's path under the name ``trainyard`` (worker/tasklib.py),
beside the runtime itself as ``trainyard_runtime``; only the in-task API exists here, and a read-only
``Task`` (records of other tasks, answered by the worker). It is never imported as
``trainyard.runtime.standin``.
"""

from trainyard_runtime.task_api import QueryRefused, RunContext, current_task
from trainyard_runtime.tasks import TaskView as Task

__all__ = ["QueryRefused", "RunContext", "Task", "current_task"]
