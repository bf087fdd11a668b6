"""trainyard: a ClearML-style distributed task queue for ML teams that needs nothing but Redis."""

from .connection import connect, redact_url
from .controller.decorators import component, pipeline
from .controller.in_process import use_step_worker_factory
from .controller.pipeline import Pipeline
from .controller.schedules import TaskScheduler
from .in_task import reader as _in_task_reader
from .queues.config import use_settings
from .queues.connection import use_connection_factory, use_reader_factory
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
from .queues.params import secret_ref
from .queues.queue import Queue
from .queues.record import ExecutionMode, TaskStatus, TaskType
from .queues.task import Task
from .runtime.task_api import current_task
from .settings import settings

use_connection_factory(connect)
use_settings(settings)
use_reader_factory(_in_task_reader)


def _step_worker(conn, queue):
    from .local_steps import start_step_worker

    return start_step_worker(conn, queue)


use_step_worker_factory(_step_worker)

__version__ = "0.1.0"

__all__ = [
    "ExecutionMode",
    "IllegalTransition",
    "InvalidInput",
    "Pipeline",
    "Queue",
    "QueueNotEmpty",
    "QueueNotFound",
    "RedisUnavailable",
    "Task",
    "TaskNotFound",
    "TaskScheduler",
    "TaskStatus",
    "TaskType",
    "TrainyardError",
    "WaitTimeout",
    "component",
    "pipeline",
    "connect",
    "current_task",
    "redact_url",
    "secret_ref",
]
