"""Other tasks, read from inside a task where trainyard itself is not installed (a venv or container
without it): the stand-in ``trainyard`` package exports :class:`TaskView` as ``Task``.

The same questions as trainyard's ``Task.get`` / ``get_task`` / ``list``, answered by the worker
through the run folder (:meth:`~trainyard_runtime.task_api.RunContext.ask`); the answers are the
records as JSON objects, read-only. Standard library only.
"""

from __future__ import annotations

import copy
from typing import Any

from .task_api import DEFAULT_SECTION, current_task


class TaskView:
    """A read-only task record (``data``: the record as a JSON object)."""

    def __init__(self, data: dict) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name!r} {self.status}>"

    id = property(lambda self: self.data["id"])
    name = property(lambda self: self.data.get("name", ""))
    project = property(lambda self: self.data.get("project", ""))
    status = property(lambda self: self.data.get("status", ""))
    tags = property(lambda self: list(self.data.get("tags") or []))
    outputs = property(lambda self: copy.deepcopy(self.data.get("outputs") or {}))
    artifacts = property(lambda self: copy.deepcopy(self.data.get("artifacts") or {}))
    metrics = property(lambda self: copy.deepcopy(self.data.get("metrics") or {}))

    def get_parameters(self) -> dict[str, Any]:
        return copy.deepcopy(self.data.get("parameters") or {})

    def get_parameter(self, key: str, default: Any = None) -> Any:
        full = key if "/" in key else f"{DEFAULT_SECTION}/{key}"
        return copy.deepcopy((self.data.get("parameters") or {}).get(full, default))

    def refresh(self) -> TaskView:
        self.data = current_task().ask("get", {"task_id": self.id})
        return self

    @classmethod
    def get(cls, task_id: str) -> TaskView:
        return cls(current_task().ask("get", {"task_id": task_id}))

    @classmethod
    def get_task(cls, task_id: str | None = None, project: str | None = None, name: str | None = None) -> TaskView:
        if task_id:
            return cls.get(task_id)
        if not name:
            raise ValueError("get_task needs task_id, or name (and project)")
        return cls(current_task().ask("find", {"project": project or "default", "name": name}))

    @classmethod
    def list(cls, limit: int = 50, offset: int = 0, **filters: Any) -> list[TaskView]:
        """Filters: project, status, tag, queue, name, parent (as in trainyard's ``Task.list``)."""
        args = {key: value for key, value in filters.items() if value is not None}
        return [cls(item) for item in current_task().ask("list", {**args, "limit": limit, "offset": offset})]
