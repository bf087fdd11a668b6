"""Storing pipeline runs in Redis (one JSON document per run, plus an index)."""

from __future__ import annotations

from redis import Redis

from ..queues import events, keys
from ..queues.errors import TaskNotFound
from .model import PipelineRun


def save(conn: Redis, run: PipelineRun) -> None:
    run.rev += 1
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(keys.pipeline(run.id), run.model_dump_json())
        pipe.zadd(keys.PIPELINES, {run.id: run.created})
        events.publish(pipe, "pipeline", run.id, run.status, "", run.project, "")
        pipe.execute()


def load(conn: Redis, run_id: str) -> PipelineRun:
    raw = conn.get(keys.pipeline(run_id))
    if raw is None:
        raise TaskNotFound(f"no pipeline run {run_id!r}")
    return PipelineRun.model_validate_json(raw)


def list_runs(conn: Redis, limit: int = 50, offset: int = 0) -> list[PipelineRun]:
    ids = [i.decode() for i in conn.zrevrange(keys.PIPELINES, offset, offset + limit - 1)]
    raws = conn.mget([keys.pipeline(i) for i in ids]) if ids else []
    return [PipelineRun.model_validate_json(r) for r in raws if r is not None]
