"""Running a controller in the caller's process: it heartbeats like a worker, so that if the
process dies its controller task is reaped like any other (never left "running")."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable

from redis import Redis

from ..queues import workers
from ..queues.backend import fleet
from ..queues.dispatch import Dispatcher
from ..queues.record import TaskRecord
from ..queues.store import TaskStore


class LocalController:
    """Context manager: registers a pseudo-worker holding ``task_id`` and keeps it alive."""

    def __init__(self, conn: Redis, task_id: str):
        self.conn = conn
        self.task_id = task_id
        self.host = socket.gethostname()
        self.name = f"{self.host}-pipeline-{os.getpid()}-{os.urandom(2).hex()}"
        self.info = workers.WorkerInfo(
            name=self.name,
            host=self.host,
            pid=os.getpid(),
            queues=[],
            state="busy",
            current=[task_id],
            mode="controller",
        )
        self.dispatcher = Dispatcher(conn, self.name, self.host)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="pipeline-heartbeat", daemon=True)

    def __enter__(self) -> LocalController:
        workers.register(self.conn, self.info, lambda pid: False)
        now = time.time()
        claim = {"worker": self.name, "host": self.host, "ts": now, "queue": ""}
        fleet.put_claim(self.conn, self.task_id, json.dumps(claim), now)

        def apply(record: TaskRecord) -> None:
            record.started = time.time()
            record.runtime.worker, record.runtime.host = self.name, self.host
            record.runtime.attempt += 1

        TaskStore(self.conn).update(self.task_id, apply, action="start_local")
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(workers.heartbeat_s()):
            try:
                workers.heartbeat(self.conn, self.info, {self.task_id: None})
            except Exception:  # noqa: BLE001 - Redis away: try again next beat
                continue

    def finish(self, outcome: str, error: str | None = None) -> None:
        self.dispatcher.finish(self.task_id, outcome, exit_code=0 if outcome == "completed" else 1, error=error)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.dispatcher.release(self.task_id)
        workers.unregister(self.conn, self.name)


StepWorkerFactory = Callable[[Redis, str], tuple[Callable[[], None], threading.Thread]]
_step_worker_factory: StepWorkerFactory | None = None


def use_step_worker_factory(factory: StepWorkerFactory) -> None:
    """Registered by the front door: how to start an in-process worker for a local run's steps
    (``controller`` does not import ``worker``). The factory returns (drain, thread)."""
    global _step_worker_factory
    _step_worker_factory = factory


def step_worker(conn: Redis, queue: str) -> tuple[Callable[[], None], threading.Thread]:
    if _step_worker_factory is None:
        raise RuntimeError("no step worker factory registered: import trainyard first")
    return _step_worker_factory(conn, queue)
