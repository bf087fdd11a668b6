"""The RQ job that carries a task to a worker: JSON payload, the task id as job id and argument.

The job hash is written in RQ's own format (``rq.job.Job.fetch`` reads it, ``rq info`` counts
it) but without going through ``Queue.enqueue``: the task transition, the job and the queue
push happen in one Redis transaction, and RQ's pickle serializer is never involved.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from redis.client import Pipeline

from . import keys
from .record import TaskStatus

RUN_FUNCTION = "trainyard.worker.run_task"
FINISHED_JOB_TTL_S = 7 * 24 * 3600

_RQ_STATUS = {
    TaskStatus.QUEUED: "queued",
    TaskStatus.RUNNING: "started",
    TaskStatus.COMPLETED: "finished",
    TaskStatus.FAILED: "failed",
    TaskStatus.ABORTED: "stopped",
}


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload(task_id: str) -> bytes:
    """RQ's JSON-serialised ``(func_name, instance, args, kwargs)``.

    Stored uncompressed (RQ reads both forms): at under 64 bytes it keeps the job hash in
    Redis's compact encoding, which saves about 800 bytes per queued task.
    """
    return json.dumps([RUN_FUNCTION, None, [task_id], {}], separators=(",", ":")).encode()


def queued_fields(queue: str, now: float) -> dict[str, str | int]:
    """The job hash fields that every task queued on ``queue`` at ``now`` shares."""
    stamp = _utc(now)
    return {
        "created_at": stamp,
        "enqueued_at": stamp,
        "origin": queue,
        "status": "queued",
        "timeout": -1,
        "result_ttl": FINISHED_JOB_TTL_S,
        "failure_ttl": FINISHED_JOB_TTL_S,
    }


def own_fields(task_id: str, name: str) -> dict[str, str | bytes]:
    """The job hash fields of one task: its payload, and its name (short values keep the hash compact)."""
    return {"data": payload(task_id), "description": name[:60]}


def write_queued(pipe: Pipeline, task_id: str, queue: str, name: str, now: float) -> None:
    """(Re)create the job hash for a freshly queued task."""
    key = keys.rq_job(task_id)
    pipe.delete(key)
    pipe.hset(key, mapping={**own_fields(task_id, name), **queued_fields(queue, now)})


def write_status(pipe: Pipeline, task_id: str, status: TaskStatus, now: float, worker: str | None) -> None:
    """Mirror a task status change onto its job; a job back in draft no longer exists."""
    key = keys.rq_job(task_id)
    if status == TaskStatus.DRAFT:
        pipe.delete(key)
        return
    fields: dict[str, str] = {"status": _RQ_STATUS[status]}
    if status == TaskStatus.RUNNING:
        fields.update(started_at=_utc(now), worker_name=worker or "", last_heartbeat=_utc(now))
    elif status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.ABORTED):
        fields["ended_at"] = _utc(now)
    pipe.hset(key, mapping=fields)
    if status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.ABORTED):
        pipe.expire(key, FINISHED_JOB_TTL_S)
    else:
        pipe.persist(key)
