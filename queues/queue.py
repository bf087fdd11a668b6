"""``Queue``: the Python API for named queues."""

from __future__ import annotations

from redis import Redis

from .connection import resolve
from .errors import IllegalTransition, InvalidInput, TaskNotFound
from .queue_registry import QueuedEntry, QueueInfo, QueueRegistry
from .record import TaskRecord, TaskStatus
from .store import TaskStore
from .task import Task


class Queue:
    """A named queue. Tasks wait in priority order; workers take from the front."""

    def __init__(self, name: str, connection: Redis | None = None):
        self.name = name
        self._conn = connection

    @property
    def connection(self) -> Redis:
        if self._conn is None:
            self._conn = resolve(None)
        return self._conn

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"

    @classmethod
    def create(
        cls,
        name: str,
        description: str = "",
        exist_ok: bool = False,
        max_running: int = 0,
        connection: Redis | None = None,
    ) -> Queue:
        conn = resolve(connection)
        QueueRegistry(conn).create(name, description, exist_ok=exist_ok, max_running=max_running)
        return cls(name, conn)

    def set_limit(self, max_running: int) -> QueueInfo:
        """At most ``max_running`` of this queue's tasks run at once, over all workers (0: none)."""
        return QueueRegistry(self.connection).set_limit(self.name, max_running)

    @classmethod
    def get(cls, name: str, connection: Redis | None = None) -> Queue:
        conn = resolve(connection)
        QueueRegistry(conn).require(name)
        return cls(name, conn)

    @classmethod
    def list(cls, connection: Redis | None = None) -> list[QueueInfo]:
        return QueueRegistry(resolve(connection)).list()

    def info(self) -> QueueInfo:
        return QueueRegistry(self.connection).info(self.name)

    def __len__(self) -> int:
        return self.info().length

    def entries(self, offset: int = 0, limit: int = 50) -> list[QueuedEntry]:
        return QueueRegistry(self.connection).entries(self.name, offset, limit)

    def tasks(self, offset: int = 0, limit: int = 50) -> list[tuple[QueuedEntry, TaskRecord | None]]:
        """Waiting tasks in the order they will run, with their records."""
        entries = self.entries(offset, limit)
        records = TaskStore(self.connection).get_many([e.task_id for e in entries])
        return list(zip(entries, records))

    def task_ids(self) -> list[str]:
        return [e.task_id for e in self.entries(0, 1_000_000)]

    def move(self, task_id: str, to: str | int) -> int:
        """Move a waiting task to ``"top"``, ``"bottom"`` or a 0-based position; returns it."""
        record = self._queued_record(task_id)
        registry = QueueRegistry(self.connection)
        if isinstance(to, bool):
            raise InvalidInput(f"bad move target {to!r}")
        if isinstance(to, int):
            return registry.move(self.name, record.id, "index", to)
        if to in ("top", "bottom"):
            return registry.move(self.name, record.id, to)
        raise InvalidInput(f"bad move target {to!r}: use top, bottom or a position")

    def delete(self, force: bool = False) -> list[str]:
        """Delete the queue. Refused while tasks wait, unless ``force``: they go back to draft."""
        registry = QueueRegistry(self.connection)
        waiting = registry.check_deletable(self.name, force)
        returned = []
        for task_id in waiting:
            try:
                Task.get(task_id, self.connection).dequeue()
                returned.append(task_id)
            except (TaskNotFound, IllegalTransition):
                continue  # deleted or started meanwhile: it no longer waits here
        registry.drop_registration(self.name)
        return returned

    def _queued_record(self, task_id: str) -> TaskRecord:
        record = TaskStore(self.connection).get(task_id)
        if record.status != TaskStatus.QUEUED or record.execution.queue != self.name:
            where = (
                f"in queue {record.execution.queue!r}" if record.status == TaskStatus.QUEUED else record.status.value
            )
            raise InvalidInput(f"task {task_id} is not waiting in queue {self.name!r} (it is {where})")
        return record
