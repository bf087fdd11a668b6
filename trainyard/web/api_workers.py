"""``/api/workers``: the live fleet (host, GPUs with utilisation and memory, current tasks,
heartbeat), drain and stop."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from redis import Redis

from ..queues import workers
from . import views
from .deps import OFFSET, ApiError, admin, conn, limit_query

router = APIRouter(prefix="/api/workers", tags=["workers"])


@router.get("", summary="Live workers by name (paginated; only the page's entries are read)")
def list_workers(limit: int = limit_query(50), offset: int = OFFSET, redis: Redis = Depends(conn)) -> dict[str, Any]:
    found, total = workers.page(redis, offset, limit)  # expired entries are pruned, as the registry does
    now = time.time()
    items = [views.worker_view(info, now) for info in found]
    return {
        "items": items,
        "offset": offset,
        "limit": limit,
        "total": total,
        "next_offset": offset + limit if offset + limit < total else None,
    }


def _worker(redis: Redis, name: str) -> workers.WorkerInfo:
    info = workers.get(redis, name)
    if info is None:
        raise ApiError(404, "not_found", f"no live worker named {name!r}")
    return info


@router.get("/{name}", summary="One live worker with its latest machine and GPU stats")
def get_worker(name: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    return views.worker_view(_worker(redis, name), time.time())


@router.post("/{name}/drain", summary="Finish the current work, take no more, exit", dependencies=[Depends(admin)])
def drain_worker(name: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    _worker(redis, name)
    return views.worker_view(workers.send_command(redis, name, "drain"), time.time())


@router.post("/{name}/stop", summary="End the current task (it is re-queued) and exit", dependencies=[Depends(admin)])
def stop_worker(name: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    _worker(redis, name)
    return views.worker_view(workers.send_command(redis, name, "stop"), time.time())
