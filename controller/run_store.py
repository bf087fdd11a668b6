"""Storing pipeline runs in Redis (one JSON document per run, plus an index)."""

from __future__ import annotations

from redis import Redis

from ..queues.backend import documents
from ..queues.errors import PipelineNotFound
from .model import PipelineRun


def save(conn: Redis, run: PipelineRun) -> None:
    run.rev += 1
    documents.save_run(conn, run.id, run.model_dump_json(), run.created, run.status, run.project)


def load(conn: Redis, run_id: str) -> PipelineRun:
    raw = documents.run_json(conn, run_id)
    if raw is None:
        raise PipelineNotFound(f"no pipeline run {run_id!r}")
    return PipelineRun.model_validate_json(raw)


def list_runs(conn: Redis, limit: int = 50, offset: int = 0) -> list[PipelineRun]:
    return [PipelineRun.model_validate_json(r) for r in documents.runs_page(conn, offset, limit)]


def count(conn: Redis) -> int:
    """How many runs are stored."""
    return documents.run_count(conn)
