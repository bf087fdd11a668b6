"""The broker: task records, named priority queues on RQ, events."""

from .errors import (
    IllegalTransition,
    InvalidInput,
    QueueNotEmpty,
    QueueNotFound,
    RedisUnavailable,
    TaskNotFound,
    TrainyardError,
    WaitTimeout,
)
from .queue import Queue
from .queue_registry import QueuedEntry, QueueInfo, QueueRegistry
from .record import ExecutionMode, TaskRecord, TaskStatus, TaskType
from .store import Query, TaskStore
from .task import Task

__all__ = [
    "QueueRegistry",
    "ExecutionMode",
    "Queue",
    "IllegalTransition",
    "InvalidInput",
    "Query",
    "QueueInfo",
    "QueueNotEmpty",
    "QueueNotFound",
    "QueuedEntry",
    "RedisUnavailable",
    "Task",
    "TaskNotFound",
    "TaskRecord",
    "TaskStatus",
    "TaskStore",
    "TaskType",
    "TrainyardError",
    "WaitTimeout",
]
