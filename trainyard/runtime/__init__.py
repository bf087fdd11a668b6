"""The in-task runtime: everything that runs inside a task process (standard library only).

* ``task_api`` — the in-task API (``current_task``) and the run-folder protocol's constants
* ``jobrun`` / ``expr`` — the pipeline-file job runner and its ``${{ }}`` expression evaluator
* ``funcstep`` — what a function step's script calls to run its function
* ``tasks`` — other tasks, read-only, where trainyard is not installed (the stand-in ``Task``)

This package imports nothing of trainyard and nothing outside the standard library, runs on
Python 3.8+, and is put on every task's path the same way in every mode (worker/tasklib.py), so
task environments without trainyard installed (venvs, conda, containers) run it too. The worker
and controller import its constants from here.
"""

from __future__ import annotations

from .task_api import RunContext, current_task

__all__ = ["RunContext", "current_task"]
