"""Inside a task process: no Redis connection, reads of other tasks asked of the worker.

Workers keep Redis credentials out of ordinary tasks (controllers are handed the connection). A
task process is recognised by ``TRAINYARD_RUN_DIR`` without ``TRAINYARD_REDIS_URL``: there trainyard
never starts an embedded Redis (it would be a different, empty one); ``Task.get``, ``Task.get_task``,
``Task.list`` and ``refresh`` are answered by the worker through the run folder, and anything that
needs Redis (creating, enqueueing, changing, waiting) is refused in one line.
"""

from __future__ import annotations

from .queues.errors import InvalidInput, RedisUnavailable, TaskNotFound
from .queues.record import TaskRecord
from .queues.store import Query
from .runtime.task_api import QueryRefused, RunContext, current_task
from .settings import settings


def inside_task() -> bool:
    """A task process started by a worker that did not hand it Redis."""
    current = settings()
    return current.run_dir is not None and current.redis_url is None


def no_redis_here() -> RedisUnavailable:
    """The one-line refusal for anything that needs Redis inside a task."""
    return RedisUnavailable(
        "no Redis inside a task (its worker keeps the credentials): Task.get, Task.get_task and Task.list "
        "are answered by the worker; creating, enqueueing or changing tasks needs a controller task "
        "(--type controller on a services worker) or a process outside the task"
    )


class WorkerReader:
    """Task records read by the task's worker (see ``worker/queries.py``)."""

    def __init__(self, context: RunContext):
        self.context = context

    def _ask(self, op: str, args: dict):
        try:
            return self.context.ask(op, args)
        except QueryRefused as exc:
            error = {"not_found": TaskNotFound, "invalid": InvalidInput}.get(exc.reason, RedisUnavailable)
            raise error(str(exc)) from None

    def get(self, task_id: str) -> TaskRecord:
        return TaskRecord.model_validate(self._ask("get", {"task_id": task_id}))

    def find_by_name(self, project: str, name: str) -> TaskRecord:
        return TaskRecord.model_validate(self._ask("find", {"project": project, "name": name}))

    def query(self, query: Query, limit: int, offset: int) -> list[TaskRecord]:
        status = query.status if query.status is None or isinstance(query.status, str) else list(query.status)
        args = {
            "project": query.project,
            "status": status,
            "tag": query.tag,
            "queue": query.queue,
            "name": query.name,
            "parent": query.parent,
            "limit": limit,
            "offset": offset,
        }
        answer = self._ask("list", {k: v for k, v in args.items() if v is not None})
        return [TaskRecord.model_validate(item) for item in answer]


def reader() -> WorkerReader | None:
    """The worker's reader inside a task; None anywhere else (Redis is read directly)."""
    return WorkerReader(current_task()) if inside_task() else None
