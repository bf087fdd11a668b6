"""JSON shapes the API answers with: short summaries for lists, full documents for one item."""

from __future__ import annotations

from typing import Any

from ..controller.dag import all_parents
from ..controller.model import DONE_OK, PipelineRun
from ..queues import lifecycle
from ..queues.record import TaskRecord
from ..queues.workers import WorkerInfo


def task_summary(record: TaskRecord) -> dict[str, Any]:
    """What a task list row shows (no parameters, script or results: lists stay small)."""
    return {
        "id": record.id,
        "name": record.name,
        "project": record.project,
        "type": record.type.value,
        "status": record.status.value,
        "status_message": record.status_message,
        "queue": record.execution.queue,
        "priority": record.execution.priority,
        "tags": list(record.tags),
        "user": record.user,
        "parent": record.parent,
        "created": record.created,
        "queued_at": record.queued_at,
        "started": record.started,
        "ended": record.ended,
        "worker": record.runtime.worker,
        "abort_requested": record.runtime.abort_requested,
        "actions": lifecycle.allowed_actions(record.status),  # what the buttons may offer (the state machine's)
    }


def task_detail(record: TaskRecord) -> dict[str, Any]:
    """The whole record, plus the summary fields at the top level."""
    data = record.model_dump(mode="json")
    data.update(task_summary(record))
    return data


def worker_view(info: WorkerInfo, now: float) -> dict[str, Any]:
    data = info.model_dump(mode="json")
    data["heartbeat_age_s"] = round(max(0.0, now - info.heartbeat), 1)
    return data


def edges(run: PipelineRun) -> list[dict[str, str]]:
    """Parent -> child pairs: explicit parents and those that ``${step...}`` references imply."""
    out = []
    for name, step in run.steps.items():
        for parent in sorted(all_parents(step)):
            if parent in run.steps:
                out.append({"source": parent, "target": name})
    return out


def run_summary(run: PipelineRun) -> dict[str, Any]:
    done = sum(s.status in DONE_OK for s in run.state.values())
    return {
        "id": run.id,
        "name": run.name,
        "project": run.project,
        "version": run.version,
        "status": run.status,
        "message": run.message,
        "steps_total": len(run.steps),
        "steps_done": done,
        "created": run.created,
        "started": run.started,
        "ended": run.ended,
        "controller_queue": run.controller_queue,
    }


TEST_COUNTS = ("tests", "passed", "failed", "errors", "skipped")


def test_reports(record: Any) -> list[dict[str, Any]]:
    """A job task's JUnit results, one per step that declared reports (from its ``tests-<n>`` artifacts)."""
    if record is None:
        return []
    found = []
    for artifact in record.artifacts.values():
        junit = artifact.metadata.get("junit")
        if isinstance(junit, dict):  # written by the task: only the expected shape is passed on
            found.append(_test_report(junit, artifact.name))
    return sorted(found, key=lambda r: r["index"])


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _test_report(junit: dict[str, Any], artifact: str) -> dict[str, Any]:
    failures = junit.get("failures") if isinstance(junit.get("failures"), list) else []
    problems = junit.get("problems") if isinstance(junit.get("problems"), list) else []
    return {
        **{k: _count(junit.get(k)) for k in TEST_COUNTS},
        "index": _count(junit.get("index")),
        "step": str(junit.get("step") or artifact),
        "artifact": artifact,
        "failures": [
            {k: str(f.get(k) or "") for k in ("name", "classname", "kind", "message")}
            for f in failures[:100]
            if isinstance(f, dict)
        ],
        "problems": [str(p) for p in problems[:20]],
    }


def test_totals(nodes: list[dict[str, Any]]) -> dict[str, int] | None:
    """The run's test counts over every step of every job (None when no step has reports)."""
    reports = [r for n in nodes for r in n.get("tests") or ()]
    if not reports:
        return None
    return {k: sum(int(r.get(k) or 0) for r in reports) for k in TEST_COUNTS}


def run_detail(run: PipelineRun) -> dict[str, Any]:
    """The run with its DAG as nodes (each step's state) and edges, ready to draw."""
    nodes = []
    for name, step in run.steps.items():
        state = run.state.get(name)
        nodes.append(
            {
                "id": name,
                "kind": "function" if step.function is not None else "task",
                "base_task": step.base_task,
                "queue": step.queue or run.default_queue,
                "status": state.status if state else "pending",
                "task_id": state.task_id if state else None,
                "attempt": state.attempt if state else 0,
                "started": state.started if state else None,
                "ended": state.ended if state else None,
                "error": state.error if state else None,
                "message": state.message if state else None,
            }
        )
    data = run_summary(run)
    data.update({"parameters": run.parameters, "nodes": nodes, "edges": edges(run)})
    return data
