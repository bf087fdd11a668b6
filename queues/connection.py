"""The default Redis connection, provided by the front door (``trainyard.connection``).

``queues`` never imports the front door; the front door registers a factory here instead, so
``Task.get(...)`` works without passing a connection while the import direction stays one-way.
Inside a task process there is no Redis: the front door registers a reader factory too, whose
reader asks the task's worker for other tasks' records (``Task.get``, ``get_task``, ``list``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from redis import Redis

if TYPE_CHECKING:
    from .record import TaskRecord
    from .store import Query


class TaskReader(Protocol):
    """Read-only access to task records without a Redis connection (inside a task: its worker)."""

    def get(self, task_id: str) -> TaskRecord: ...

    def find_by_name(self, project: str, name: str) -> TaskRecord: ...

    def query(self, query: Query, limit: int, offset: int) -> list[TaskRecord]: ...


_factory: Callable[[], Redis] | None = None
_reader_factory: Callable[[], TaskReader | None] | None = None


def use_reader_factory(factory: Callable[[], TaskReader | None]) -> None:
    """Register the callable that returns a reader when this process has no Redis (else None)."""
    global _reader_factory
    _reader_factory = factory


def reader_without_redis(connection: Redis | None) -> TaskReader | None:
    """The reader to use instead of Redis: only when no connection is given and the process has none."""
    if connection is not None or _reader_factory is None:
        return None
    return _reader_factory()


def use_connection_factory(factory: Callable[[], Redis]) -> None:
    """Register the callable that returns the process's default Redis connection."""
    global _factory
    _factory = factory


def default_connection() -> Redis:
    """The default connection (the configured Redis, or the embedded one)."""
    if _factory is None:
        raise RuntimeError("no Redis connection factory registered: import trainyard first")
    return _factory()


def resolve(connection: Redis | None) -> Redis:
    """Return ``connection`` or, when None, the default connection."""
    return connection if connection is not None else default_connection()
