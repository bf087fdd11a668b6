"""trainyard: a ClearML-style distributed task queue for ML teams that needs nothing but Redis."""

from .connection import connect, redact_url
from .queues.connection import use_connection_factory
from .queues.errors import (
    IllegalTransition,
    InvalidInput,
    QueueNotEmpty,
    QueueNotFound,
    RedisUnavailable,
    TaskNotFound,
    TrainyardError,
    WaitTimeout,
)
from .queues.queue import Queue
from .queues.record import ExecutionMode, TaskStatus, TaskType
from .queues.task import Task
from .worker.task_api import current_task

use_connection_factory(connect)

__version__ = "0.1.0"

__all__ = [
    "ExecutionMode",
    "IllegalTransition",
    "InvalidInput",
    "Queue",
    "QueueNotEmpty",
    "QueueNotFound",
    "RedisUnavailable",
    "Task",
    "TaskNotFound",
    "TaskStatus",
    "TaskType",
    "TrainyardError",
    "WaitTimeout",
    "connect",
    "current_task",
    "redact_url",
]
