"""``/api/runs`` (pipeline runs: list, the DAG with each step's state, abort, retry) and
``/api/pipelines`` (pipeline files: validate as you type, create and run, trigger by name)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..controller import run_store
from ..controller.pipeline import resume, retry_run, stop_run
from ..queues.errors import InvalidInput
from ..queues.store import TaskStore
from . import views
from .deps import OFFSET, ApiError, admin, conn, limit_query

runs_router = APIRouter(prefix="/api/runs", tags=["pipeline runs"])
files_router = APIRouter(prefix="/api/pipelines", tags=["pipeline files"])
trigger_router = APIRouter(prefix="/api/pipelines", tags=["pipeline files"])  # admin or trigger tokens


@runs_router.get("", summary="Pipeline runs, newest first (paginated)")
def list_runs(limit: int = limit_query(50), offset: int = OFFSET, redis: Redis = Depends(conn)) -> dict[str, Any]:
    items = run_store.list_runs(redis, limit, offset)
    total = run_store.count(redis)
    return {
        "items": [views.run_summary(r) for r in items],
        "offset": offset,
        "limit": limit,
        "total": total,
        "next_offset": offset + limit if offset + limit < total else None,
    }


@runs_router.get("/{run_id}", summary="One run: its DAG (nodes with each step's state, edges)")
def get_run(run_id: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    run = run_store.load(redis, run_id)
    data = views.run_detail(run)
    task_ids = [n["task_id"] for n in data["nodes"] if n["task_id"]]
    records = TaskStore(redis).get_many([run.id, *task_ids])
    controller, by_id = records[0], {r.id: r for r in records[1:] if r is not None}
    data["controller_status"] = controller.status.value if controller else None
    for node in data["nodes"]:
        node["tests"] = views.test_reports(by_id.get(node["task_id"]))
    data["tests"] = views.test_totals(data["nodes"])
    return data


@runs_router.post("/{run_id}/abort", summary="Stop a run: running steps aborted, pending skipped")
def abort_run(run_id: str, redis: Redis = Depends(conn), _admin=Depends(admin)) -> dict[str, Any]:
    stop_run(redis, run_id)
    return views.run_summary(run_store.load(redis, run_id))


@runs_router.post("/{run_id}/retry", summary="Re-run failed steps and their descendants (services runs)")
def retry(run_id: str, redis: Redis = Depends(conn), _admin=Depends(admin)) -> dict[str, Any]:
    run = run_store.load(redis, run_id)
    if not run.controller_queue:
        raise InvalidInput(
            f"run {run_id} ran its controller in a user's process: retry it there (trainyard pipeline retry {run_id})"
        )
    controller = TaskStore(redis).get(run_id)
    if controller.status.value in ("queued", "running"):  # refused before anything is changed
        raise InvalidInput(f"pipeline run {run_id}'s controller is {controller.status.value} already")
    retry_run(redis, run_id)
    resume(redis, run_id)
    return views.run_summary(run_store.load(redis, run_id))


# -- pipeline files (YAML) ---------------------------------------------------------------------
class PipelineText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=1_000_000, description="a pipeline file (YAML)")
    filename: str = Field("<editor>", max_length=200)


class SubmitPipeline(PipelineText):
    parameters: dict[str, Any] = Field(default_factory=dict, description="values for the file's parameters")
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="this run's values for the file's variables"
    )


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="this run's values for the file's variables"
    )


def _files():
    """The pipeline-file module, or a clear 501 when this build has none."""
    try:
        from ..controller import files
    except ImportError:
        raise ApiError(
            501,
            "not_implemented",
            "pipeline files are not available in this trainyard build (trainyard.controller.files is missing)",
        ) from None
    return files


def _error_view(err: Any) -> dict[str, Any]:
    return {
        "file": getattr(err, "file", None),
        "line": getattr(err, "line", None),
        "field": getattr(err, "field", None),
        "message": getattr(err, "message", str(err)),
    }


@files_router.get("", summary="Registered pipeline files by project and name (paginated)")
def list_files(limit: int = limit_query(100), offset: int = OFFSET, redis: Redis = Depends(conn)) -> dict[str, Any]:
    registry = _files_registry()
    found = registry.entries(redis)
    page = found[offset : offset + limit]
    return {
        "items": [_file_summary(e) for e in page],
        "offset": offset,
        "limit": limit,
        "total": len(found),
        "next_offset": offset + limit if offset + limit < len(found) else None,
    }


@files_router.get("/{name}", summary="One registered pipeline file, with its text")
def get_file(
    name: str,
    project: str | None = Query(None, description="needed when the name is registered in several projects"),
    redis: Redis = Depends(conn),
) -> dict[str, Any]:
    entry = _files_registry().find(name, project, redis)
    return {**_file_summary(entry), "text": entry["text"]}


@files_router.post("/validate", summary="Check a pipeline file; errors carry their line numbers (admin)")
def validate(body: PipelineText, _admin=Depends(admin)) -> dict[str, Any]:
    """Needs the token that may create pipelines: checking costs work, and the editor is for writing."""
    errors = _files().validate_text(body.text, filename=body.filename)  # what `pipeline validate` checks
    return {"ok": not errors, "errors": [_error_view(e) for e in errors]}


@files_router.post("", status_code=201, summary="Register a pipeline file (or update it) and run it on the workers")
def submit(body: SubmitPipeline, redis: Redis = Depends(conn), _admin=Depends(admin)) -> dict[str, Any]:
    files = _files()
    try:
        pipeline_file = files.load_text(body.text, body.filename)
    except files.PipelineFileError as exc:
        details = [_error_view(e) for e in exc.errors]
        first = details[0] if details else {"line": None, "message": str(exc)}
        where = f"line {first['line']}: " if first["line"] else ""
        raise ApiError(422, "invalid", f"{where}{first['message']}", details) from None
    run_id = files.submit(pipeline_file, body.parameters, conn=redis, variables=body.variables)
    return {"run_id": run_id, "name": pipeline_file.name, "project": pipeline_file.project}


@trigger_router.post(
    "/{name}/trigger", summary="Fire a registered pipeline's manual trigger (scripts, external events)"
)
def trigger(
    name: str,
    body: Trigger,
    project: str | None = Query(None, description="needed when the name is registered in several projects"),
    redis: Redis = Depends(conn),
) -> dict[str, Any]:
    run_id = _files().trigger(name, body.inputs, conn=redis, project=project, variables=body.variables)
    return {"run_id": run_id}


def _files_registry():
    _files()
    from ..controller.files import registry

    return registry


def _file_summary(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": entry["name"],
        "project": entry["project"],
        "filename": entry.get("filename"),
        "updated": entry.get("updated"),
    }
