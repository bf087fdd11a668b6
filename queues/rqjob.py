"""The RQ job that carries a task to a worker: JSON payload, the task id as job id and argument.

The job hash is written in RQ's own format (``rq.job.Job.fetch`` reads it, ``rq info`` counts
it) but without going through ``Queue.enqueue``: the backend writes it in the same Redis
transaction as the task's transition and queue push (``backend.records``), and RQ's pickle
serializer is never involved. This module is the format only.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from .record import TaskStatus

RUN_FUNCTION = "trainyard.worker.run_task"
FINISHED_JOB_TTL_S = 7 * 24 * 3600

RQ_STATUS = {  # a task status -> the job status RQ shows
    TaskStatus.QUEUED: "queued",
    TaskStatus.RUNNING: "started",
    TaskStatus.COMPLETED: "finished",
    TaskStatus.FAILED: "failed",
    TaskStatus.ABORTED: "stopped",
}


def utc(ts: float) -> str:
    """RQ's timestamp format."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload(task_id: str) -> bytes:
    """RQ's JSON-serialised ``(func_name, instance, args, kwargs)``.

    Stored uncompressed (RQ reads both forms): at under 64 bytes it keeps the job hash in
    Redis's compact encoding, which saves about 800 bytes per queued task.
    """
    return json.dumps([RUN_FUNCTION, None, [task_id], {}], separators=(",", ":")).encode()


def queued_fields(queue: str, now: float) -> dict[str, str | int]:
    """The job hash fields that every task queued on ``queue`` at ``now`` shares."""
    stamp = utc(now)
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
