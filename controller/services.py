"""What every long-running service (triggers, alerts, autoscaler) shares: being queued as a
controller task on a services queue, and running until SIGTERM or SIGINT asks it to stop."""

from __future__ import annotations

import signal
import threading
from typing import Protocol

from redis import Redis

from ..queues.queue_registry import QueueRegistry
from ..queues.record import TaskType
from ..queues.task import Task


class Service(Protocol):
    """A service loop: ``run`` returns once ``stop_event`` is set."""

    stop_event: threading.Event

    def run(self) -> None: ...


def enqueue_service(conn: Redis, name: str, module: str, tag: str, queue: str = "services") -> str:
    """Queue ``python -m <module>`` as a controller task named ``name`` on ``queue``; its task id."""
    QueueRegistry(conn).require(queue)
    task = Task.create(
        name,
        "services",
        command=["python", "-m", module],
        task_type=TaskType.CONTROLLER,
        tags=[tag],
        connection=conn,
    )
    task.enqueue(queue)
    return task.id


def run_until_signalled(service: Service, name: str) -> int:
    """Run ``service`` until SIGTERM or SIGINT sets its stop event; the process's exit status."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop_event.set())
    service.run()
    print(f"{name} stopped", flush=True)
    return 0
