"""The Celery peer: the same job functions as ``rqjobs.py``, as Celery tasks on a Redis broker.

Celery workers load this module (``celery -A benchmarks.celeryjobs worker``); the broker and the
result backend are the benchmark's throwaway Redis (``TRAINYARD_REDIS_URL``, the variable every
worker of the run gets). JSON serializer, Celery's defaults otherwise. A worker that is ready to
take tasks sets ``bench:celery:ready:<node name>``, its registration as far as the benchmark is
concerned (Celery keeps no worker registry in Redis).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

READY_PREFIX = "bench:celery:ready:"

app = Celery("trainyard-bench")
app.conf.update(
    broker_url=os.environ.get("TRAINYARD_REDIS_URL", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("TRAINYARD_REDIS_URL", "redis://127.0.0.1:6379/0"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def configure(url: str) -> None:
    """Point the client side (the benchmark process) at ``url``."""
    app.conf.update(broker_url=url, result_backend=url)


@app.task(name="bench.run_stamp")
def run_stamp(argv: list[str]) -> float:
    from benchmarks import rqjobs  # workers import this module as benchmarks.celeryjobs

    return rqjobs.run_stamp(argv)


@app.task(name="bench.run_stamp_end")
def run_stamp_end(argv: list[str]) -> list[float]:
    from benchmarks import rqjobs

    return rqjobs.run_stamp_end(argv)


@app.task(name="bench.run_true")
def run_true() -> int:
    from benchmarks import rqjobs

    return rqjobs.run_true()


@app.task(name="bench.noop")
def noop(*args) -> None:
    return None


@worker_ready.connect
def _mark_ready(sender=None, **_kwargs) -> None:
    import redis

    hostname = getattr(sender, "hostname", None) or "?"
    redis.Redis.from_url(app.conf.broker_url).set(READY_PREFIX + hostname, "1")
