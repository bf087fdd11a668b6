"""``/api/studies`` (hyper-parameter studies: list, one study with its trials and their objective
curves, stop) and ``/api/compare`` (any set of tasks side by side: parameters, scalars, outputs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from redis import Redis

from ..controller.hpo import stop_study
from ..controller.hpo.model import StudyDoc, TrialEntry
from ..queues import logs, studies
from ..queues.errors import InvalidInput
from ..queues.store import TaskStore
from .deps import OFFSET, admin, conn, limit_query

router = APIRouter(prefix="/api/studies", tags=["hyper-parameter studies"])
compare_router = APIRouter(prefix="/api/compare", tags=["compare"])
COMPARE_MAX = 20  # tasks in one comparison


def _summary(doc: StudyDoc) -> dict[str, Any]:
    return {
        "id": doc.id,
        "name": doc.name,
        "project": doc.project,
        "status": doc.status,
        "message": doc.message,
        "strategy": doc.strategy,
        "objectives": [o.model_dump() for o in doc.objectives],
        "trials": sum(doc.counts.values()),
        "total_max_jobs": doc.total_max_jobs,
        "counts": doc.counts,
        "best": doc.best,
        "created": doc.created,
        "started": doc.started,
        "ended": doc.ended,
    }


@router.get("", summary="Studies, newest first (paginated)")
def list_studies(limit: int = limit_query(50), offset: int = OFFSET, redis: Redis = Depends(conn)) -> dict[str, Any]:
    docs = [StudyDoc.model_validate(d) for d in studies.load_many(redis, studies.list_ids(redis, limit, offset))]
    total = studies.count(redis)
    return {
        "items": [_summary(d) for d in docs],
        "offset": offset,
        "limit": limit,
        "total": total,
        "next_offset": offset + limit if offset + limit < total else None,
    }


def _sort_key(doc: StudyDoc):
    minimize = doc.objectives[0].direction == "minimize"

    def key(entry: TrialEntry) -> tuple:
        first = entry.value[0] if isinstance(entry.value, list) else entry.value
        return (first is None, 0 if first is None else (first if minimize else -first), entry.number)

    return key


@router.get("/{study_id}", summary="One study: its definition and its trials, best objective first")
def get_study(study_id: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    doc = StudyDoc.model_validate(studies.load(redis, study_id))
    entries = sorted(
        (TrialEntry.model_validate(e) for e in studies.trials(redis, study_id).values()), key=_sort_key(doc)
    )
    records = TaskStore(redis).get_many([e.task for e in entries])
    trials = []
    for entry, record in zip(entries, records):
        item = entry.model_dump(mode="json")
        item["task_name"] = record.name if record else None
        item["task_status"] = record.status.value if record else None
        trials.append(item)
    controller = TaskStore(redis).get_many([study_id])[0]
    return {
        **_summary(doc),
        "base_task": doc.base_task,
        "space": doc.space,
        "sampler": doc.sampler,
        "pruner": doc.pruner,
        "queue": doc.queue,
        "max_concurrent": doc.max_concurrent,
        "controller_status": controller.status.value if controller else None,
        "trials": trials,
    }


@router.get("/{study_id}/curves", summary="Each trial's objective series over its steps (downsampled)")
def get_curves(
    study_id: str,
    max_points: int = Query(500, ge=10, le=5000),
    trials: int = Query(60, ge=1, le=200, description="the best trials first (then the running ones)"),
    redis: Redis = Depends(conn),
) -> dict[str, Any]:
    doc = StudyDoc.model_validate(studies.load(redis, study_id))
    objective = doc.objectives[0]
    entries = sorted(
        (TrialEntry.model_validate(e) for e in studies.trials(redis, study_id).values()), key=_sort_key(doc)
    )
    curves = {}
    for entry in (e.model_dump() for e in entries[:trials]):
        number = entry["number"]
        points = [
            p for p in logs.metric_points(redis, entry["task"], objective.title) if p["series"] == objective.series
        ]
        steps = [p["step"] if p["step"] is not None else i for i, p in enumerate(points)]
        every = max(1, -(-len(points) // max_points))
        curves[str(number)] = {
            "task": entry["task"],
            "state": entry["state"],
            "steps": steps[::every],
            "values": [p["value"] for p in points][::every],
        }
    return {"objective": objective.model_dump(), "curves": curves}


@router.post("/{study_id}/stop", summary="Stop a study: no new trial, running trials aborted")
def stop(study_id: str, redis: Redis = Depends(conn), _admin=Depends(admin)) -> dict[str, Any]:
    stop_study(redis, study_id)
    return {"id": study_id, "stop_requested": True}


@compare_router.get("", summary="Tasks side by side: parameters (with differences), scalars per title, outputs")
def compare(
    ids: str = Query(..., description="comma-separated task ids"),
    max_points: int = Query(500, ge=10, le=5000),
    redis: Redis = Depends(conn),
) -> dict[str, Any]:
    wanted = list(dict.fromkeys(i.strip() for i in ids.split(",") if i.strip()))
    if not wanted:
        raise InvalidInput("ids: give at least one task id")
    if len(wanted) > COMPARE_MAX:
        raise InvalidInput(f"ids: at most {COMPARE_MAX} tasks can be compared at once, got {len(wanted)}")
    store = TaskStore(redis)
    records = [store.get(task_id) for task_id in wanted]  # TaskNotFound names a missing one
    keys_all = sorted({k for r in records for k in r.parameters})
    parameters = []
    for key in keys_all:
        values = [r.parameters.get(key) for r in records]
        present = [key in r.parameters for r in records]
        differs = len({repr(v) for v in values}) > 1 or not all(present)
        parameters.append({"key": key, "values": values, "present": present, "differs": differs})
    output_keys = sorted({k for r in records for k in r.outputs})
    outputs = []
    for key in output_keys:
        values = [r.outputs.get(key) for r in records]
        outputs.append({"key": key, "values": values, "differs": len({repr(v) for v in values}) > 1})
    charts: dict[str, dict[str, dict[str, dict[str, list]]]] = {}
    for record in records:
        for point in logs.metric_points(redis, record.id):
            series = (
                charts.setdefault(point["title"], {})
                .setdefault(record.id, {})
                .setdefault(point["series"], {"steps": [], "values": []})
            )
            series["steps"].append(point["step"] if point["step"] is not None else len(series["steps"]))
            series["values"].append(point["value"])
    for per_task in charts.values():
        for per_series in per_task.values():
            for name, series in per_series.items():
                every = max(1, -(-len(series["steps"]) // max_points))
                per_series[name] = {"steps": series["steps"][::every], "values": series["values"][::every]}
    return {
        "tasks": [
            {"id": r.id, "name": r.name, "project": r.project, "status": r.status.value, "ended": r.ended}
            for r in records
        ],
        "parameters": parameters,
        "outputs": outputs,
        "charts": charts,
    }
