"""``/api/queues``: queues with their lengths, the waiting tasks in order, create, limit, move,
delete."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..queues.queue import Queue
from ..queues.queue_registry import QueueRegistry
from ..queues.store import TaskStore
from . import views
from .deps import OFFSET, admin, conn, limit_query

router = APIRouter(prefix="/api/queues", tags=["queues"])


class CreateQueue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    max_running: int = Field(0, ge=0, description="at most this many of its tasks run at once (0: no limit)")


class EditQueue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_running: int = Field(ge=0)


class Move(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_id: str = Field(min_length=1)
    to: Literal["top", "bottom"] | int = Field(description="'top', 'bottom' or a 0-based position")


@router.get("", summary="Queues by name, with length, running count, limit and the head's wait")
def list_queues(limit: int = limit_query(100), offset: int = OFFSET, redis: Redis = Depends(conn)) -> dict[str, Any]:
    infos = QueueRegistry(redis).list()
    page = infos[offset : offset + limit]
    return {
        "items": [asdict(i) for i in page],
        "offset": offset,
        "limit": limit,
        "total": len(infos),
        "next_offset": offset + limit if offset + limit < len(infos) else None,
    }


@router.post("", status_code=201, summary="Create a queue", dependencies=[Depends(admin)])
def create_queue(body: CreateQueue, redis: Redis = Depends(conn)) -> dict[str, Any]:
    info = QueueRegistry(redis).create(body.name, body.description, max_running=body.max_running)
    return asdict(info)


@router.get("/{name}", summary="A queue and one page of its waiting tasks, in the order they will run")
def get_queue(
    name: str, limit: int = limit_query(50), offset: int = OFFSET, redis: Redis = Depends(conn)
) -> dict[str, Any]:
    broker = QueueRegistry(redis)
    info = broker.info(name)
    entries = broker.entries(name, offset, limit)
    records = TaskStore(redis).get_many([e.task_id for e in entries])
    items = [
        {
            "position": e.position,
            "priority": e.priority,
            "task_id": e.task_id,
            "task": views.task_summary(r) if r is not None else None,
        }
        for e, r in zip(entries, records)
    ]
    return {
        "queue": asdict(info),
        "items": items,
        "offset": offset,
        "limit": limit,
        "total": info.length,
        "next_offset": offset + limit if offset + limit < info.length else None,
    }


@router.patch("/{name}", summary="Change a queue's concurrency limit", dependencies=[Depends(admin)])
def edit_queue(name: str, body: EditQueue, redis: Redis = Depends(conn)) -> dict[str, Any]:
    return asdict(QueueRegistry(redis).set_limit(name, body.max_running))


@router.delete("/{name}", summary="Delete a queue (force: its waiting tasks go back to draft)")
def delete_queue(
    name: str,
    force: bool = Query(False),
    redis: Redis = Depends(conn),
    _admin=Depends(admin),
) -> dict[str, Any]:
    returned = Queue(name, redis).delete(force=force)
    return {"deleted": name, "returned_to_draft": returned}


@router.post("/{name}/move", summary="Move a waiting task to the top, the bottom or a position")
def move_task(name: str, body: Move, redis: Redis = Depends(conn), _admin=Depends(admin)) -> dict[str, Any]:
    position = Queue(name, redis).move(body.task_id, body.to)
    return {"queue": name, "task_id": body.task_id, "position": position}
