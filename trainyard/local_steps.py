"""How a pipeline run with ``run_steps_locally`` runs its steps: an in-process worker thread on a
private queue (the front door wires ``worker`` into ``controller`` here)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

from redis import Redis

from .connection import redis_url
from .settings import settings
from .worker.agent import Worker, WorkerConfig


def start_step_worker(conn: Redis, queue: str) -> tuple[Callable[[], None], threading.Thread]:
    current = settings()
    config = WorkerConfig(
        queues=[queue],
        slots=max(2, os.cpu_count() or 2),
        create_queues=True,
        gpus=_machine_gpus(),
        home=current.home,
        artifacts_url=current.artifacts_url,
        redis_url=redis_url(),
        name=f"{socket.gethostname()}-local-{os.getpid()}-{os.urandom(2).hex()}",
    )
    worker = Worker(conn, config)  # this machine's GPUs too, so steps asking for GPUs can run here
    thread = threading.Thread(target=worker.run, name="pipeline-steps", daemon=True)
    thread.start()
    return worker.drain, thread


def _machine_gpus() -> list[int]:
    from .worker.gpus import default_nvml

    try:
        return list(range(default_nvml.device_count())) if default_nvml.available() else []
    except Exception:  # noqa: BLE001 - a broken driver: run CPU steps only
        return []
