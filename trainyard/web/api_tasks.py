"""``/api/tasks``: list, show, create, clone, edit, enqueue, dequeue, abort, reset, delete, logs,
metrics and artifact downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..queues import logs
from ..queues.backend import streams
from ..queues.errors import InvalidInput
from ..queues.options import ExecutionOptions
from ..queues.record import COMMENT_MAX, NAME_MAX, TAGS_MAX, Label
from ..queues.store import Query as TaskQuery
from ..queues.store import TaskStore
from ..queues.task import Task
from ..settings import settings
from . import views
from .auth import Principal
from .deps import OFFSET, ApiError, admin, conn, limit_query

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateTask(ExecutionOptions):
    """A command task; its execution options are ``ExecutionOptions``' (queues/options.py)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    project: str = Field("default", min_length=1, max_length=NAME_MAX)
    command: list[str] = Field(min_length=1, description="argv, never run through a shell")
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[Label] = Field(default_factory=list, max_length=TAGS_MAX)
    comment: str | None = Field(None, max_length=COMMENT_MAX)


class CloneTask(_Body):
    name: str | None = Field(None, min_length=1, max_length=NAME_MAX)
    project: str | None = Field(None, min_length=1, max_length=NAME_MAX)
    parameters: dict[str, Any] = Field(default_factory=dict, description="overrides merged into the copy")
    tags: list[Label] | None = Field(None, max_length=TAGS_MAX)
    comment: str | None = Field(None, max_length=COMMENT_MAX)


class EditTask(_Body):
    parameters: dict[str, Any] | None = Field(None, description="replaces all parameters (drafts only)")
    name: str | None = Field(None, min_length=1, max_length=NAME_MAX)
    comment: str | None = Field(None, max_length=COMMENT_MAX)
    tags: list[Label] | None = Field(None, max_length=TAGS_MAX)


class Enqueue(_Body):
    queue: str = Field(min_length=1)
    priority: int = 0
    front: bool = False


class Abort(_Body):
    message: str = "aborted from the web app"


def _task(redis: Redis, task_id: str) -> Task:
    return Task.get(task_id, redis)


def _owned(redis: Redis, task: Task, who: Principal) -> dict[str, Any]:
    """A task made from the web app belongs to the web user, not to the server's login."""

    def mark(record) -> None:
        record.user = who.user

    return views.task_detail(TaskStore(redis).update(task.id, mark))


@router.get("", summary="Tasks matching the filters, newest first (paginated)")
def list_tasks(
    project: str | None = None,
    status: str | None = Query(None, description="one status, or several separated by commas"),
    tag: str | None = None,
    queue: str | None = None,
    name: str | None = Query(None, description="glob (sweep-*) or substring"),
    parent: str | None = None,
    limit: int = limit_query(),
    offset: int = OFFSET,
    redis: Redis = Depends(conn),
) -> dict[str, Any]:
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
    query = TaskQuery(
        project=project or None,
        status=statuses,
        tag=tag or None,
        queue=queue or None,
        name=name or None,
        parent=parent or None,
    )
    store = TaskStore(redis)
    records = store.query(query, limit=limit, offset=offset)
    total = store.count(query)
    more = len(records) == limit and (total is None or offset + limit < total)
    return {
        "items": [views.task_summary(r) for r in records],
        "offset": offset,
        "limit": limit,
        "total": total,
        "next_offset": offset + limit if more else None,
    }


@router.post("", status_code=201, summary="Create a draft task that runs a command")
def create_task(body: CreateTask, redis: Redis = Depends(conn), who: Principal = Depends(admin)) -> dict[str, Any]:
    task = Task.create(
        body.name,
        body.project,
        command=body.command,
        parameters=body.parameters,
        tags=body.tags,
        comment=body.comment,
        connection=redis,
        **ExecutionOptions.model_validate(body.model_dump(include=set(ExecutionOptions.model_fields))).given(),
    )
    return _owned(redis, task, who)


@router.get("/{task_id}", summary="One task: definition, parameters, results, runtime")
def get_task(task_id: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    return views.task_detail(TaskStore(redis).get(task_id))


@router.patch("/{task_id}", summary="Edit a draft: parameters, name, comment, tags", dependencies=[Depends(admin)])
def edit_task(task_id: str, body: EditTask, redis: Redis = Depends(conn)) -> dict[str, Any]:
    task = _task(redis, task_id)
    changes = {k: v for k, v in {"name": body.name, "comment": body.comment}.items() if v is not None}
    if body.parameters is not None:
        task.set_parameters(body.parameters)
    if changes:
        task.edit(**changes)
    if body.tags is not None:
        task.edit(tags=body.tags)
    return views.task_detail(task.refresh().data)


@router.delete("/{task_id}", summary="Delete a task that is not queued or running", dependencies=[Depends(admin)])
def delete_task(task_id: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    _task(redis, task_id).delete()
    return {"deleted": task_id}


@router.post("/{task_id}/clone", status_code=201, summary="Copy a task as a new draft")
def clone_task(
    task_id: str, body: CloneTask, redis: Redis = Depends(conn), who: Principal = Depends(admin)
) -> dict[str, Any]:
    clone = _task(redis, task_id).clone(
        name=body.name, project=body.project, parameters=body.parameters, comment=body.comment, tags=body.tags
    )
    return _owned(redis, clone, who)


@router.post("/{task_id}/enqueue", summary="Put a draft on a queue", dependencies=[Depends(admin)])
def enqueue_task(task_id: str, body: Enqueue, redis: Redis = Depends(conn)) -> dict[str, Any]:
    task = _task(redis, task_id).enqueue(body.queue, priority=body.priority, front=body.front)
    return views.task_detail(task.data)


@router.post("/{task_id}/dequeue", summary="Take a queued task off its queue", dependencies=[Depends(admin)])
def dequeue_task(task_id: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    return views.task_detail(_task(redis, task_id).dequeue().data)


@router.post("/{task_id}/abort", summary="Abort a queued or running task", dependencies=[Depends(admin)])
def abort_task(task_id: str, body: Abort | None = None, redis: Redis = Depends(conn)) -> dict[str, Any]:
    message = body.message if body is not None else Abort().message
    return views.task_detail(_task(redis, task_id).abort(message).data)


@router.post("/{task_id}/reset", summary="A finished task back to draft", dependencies=[Depends(admin)])
def reset_task(task_id: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    return views.task_detail(_task(redis, task_id).reset().data)


@router.get("/{task_id}/log", summary="Log lines after a cursor, oldest first (or the last `tail` lines)")
def get_log(
    task_id: str,
    after: str = Query("-", description="a line id from a previous answer; '-' for the start"),
    tail: int | None = Query(None, ge=1, le=10_000),
    limit: int = limit_query(1000, 10_000),
    redis: Redis = Depends(conn),
) -> dict[str, Any]:
    TaskStore(redis).get(task_id)  # 404 for an unknown task
    if after != "-" and not _stream_id(after):
        raise InvalidInput(f"bad log cursor {after!r}: use '-' or a line id like 1700000000000-0")
    lines = logs.tail(redis, task_id, tail) if tail else logs.read(redis, task_id, after, count=limit)
    return {
        "lines": [{"id": ln.id, "stream": ln.stream, "text": ln.text} for ln in lines],
        "next": lines[-1].id if lines else (None if after == "-" else after),
    }


def _stream_id(text: str) -> bool:
    head, _, tail = text.partition("-")
    return head.isdigit() and (tail == "" or tail.isdigit())


@router.get("/{task_id}/metrics", summary="Metric history by title and series (downsampled to max_points each)")
def get_metrics(
    task_id: str,
    max_points: int = Query(2000, ge=10, le=20_000),
    redis: Redis = Depends(conn),
) -> dict[str, Any]:
    TaskStore(redis).get(task_id)
    newest = streams.newest_metric_id(redis, task_id)
    charts: dict[str, dict[str, dict[str, list]]] = {}
    for point in logs.metric_points(redis, task_id):
        series = charts.setdefault(point["title"], {}).setdefault(point["series"], {"steps": [], "values": []})
        series["steps"].append(point["step"] if point["step"] is not None else len(series["steps"]))
        series["values"].append(point["value"])
    for title in charts.values():
        for name, series in title.items():
            title[name] = _thin(series, max_points)
    return {"charts": charts, "last_id": newest}


def _thin(series: dict[str, list], most: int) -> dict[str, list]:
    """Every k-th point (the last one always kept) so a chart never gets more than ``most``."""
    n = len(series["steps"])
    if n <= most:
        return series
    stride = -(-n // most)
    picks = list(range(0, n, stride))
    if picks[-1] != n - 1:
        picks.append(n - 1)
    return {"steps": [series["steps"][i] for i in picks], "values": [series["values"][i] for i in picks]}


@router.get("/{task_id}/artifacts/{name}", summary="Download an artifact's file")
def download_artifact(task_id: str, name: str, redis: Redis = Depends(conn)):
    record = TaskStore(redis).get(task_id)
    artifact = record.artifacts.get(name)
    if artifact is None:
        raise ApiError(404, "not_found", f"task {task_id} has no artifact {name!r}")
    return _stored_file(artifact.uri, f"artifact {name!r}", artifact.content_type)


@router.get("/{task_id}/log/file", summary="Download the whole log of the last attempt (Redis keeps the last lines)")
def download_log(task_id: str, redis: Redis = Depends(conn)):
    record = TaskStore(redis).get(task_id)
    if not record.runtime.log_uri:
        raise ApiError(404, "not_found", f"task {task_id} has no stored log file (it has not finished a run)")
    return _stored_file(record.runtime.log_uri, "the log file", "text/plain")


def _stored_file(uri: str, what: str, content_type: str | None):
    """A file from this server's artifact store (a folder or an fsspec URL), nowhere else."""
    root = settings().artifacts_url.rstrip("/")
    filename = Path(uri.rsplit("/", 1)[-1]).name or "download"
    media_type = content_type or "application/octet-stream"
    if "://" not in root or root.startswith("file://"):
        path = Path(uri.removeprefix("file://")).resolve()
        base = Path(root.removeprefix("file://")).resolve()
        if base not in path.parents or not path.is_file():
            raise ApiError(404, "not_found", f"{what} is not readable from this web server (at {uri})")
        return FileResponse(path, filename=filename, media_type=media_type)
    if not uri.startswith(root + "/"):
        raise ApiError(404, "not_found", f"{what} is outside this server's artifact store (at {uri})")
    import fsspec  # optional dependency: remote artifact stores only

    def chunks():
        with fsspec.open(uri, "rb") as handle:
            yield from iter(lambda: handle.read(1 << 20), b"")

    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)
