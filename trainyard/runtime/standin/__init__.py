"""Stand-in ``trainyard`` package for task environments without trainyard installed.

The worker puts this folder on such a task's path under the name ``trainyard`` (worker/tasklib.py),
beside the runtime itself as ``trainyard_runtime``; only the in-task API exists here. It is never
imported as ``trainyard.runtime.standin``.
"""

from trainyard_runtime.task_api import RunContext, current_task

__all__ = ["RunContext", "current_task"]
