"""ClearML's ``Task.init(reuse_last_task_id=True)``: a script run again on this machine reuses the
task its last run created (same project, name and type, within ClearML's default window of 24
hours) when that task kept nothing worth keeping — no artifacts (trainyard's models are artifacts)
and not queued or running. The task is reset (its log, metrics and outputs cleared), its script
captured again and its parameters and configuration emptied, as ClearML resets and clears it.
``reuse_last_task_id="<id>"`` names the task to reuse (checked the same way).

The last task per (project, name, type) is remembered in ``$TRAINYARD_HOME/clearml-last-tasks.json``
(this machine's, as ClearML's cache is)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from ..queues.errors import TaskNotFound, TrainyardError
from ..queues.record import TaskStatus
from ..queues.task import Task as NativeTask
from ..settings import settings

REUSE_WINDOW_S = 24 * 3600.0  # ClearML's sdk.development.task_reuse_time_window_in_hours
MAX_REMEMBERED = 1000
REUSABLE_STATUSES = (TaskStatus.DRAFT, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.ABORTED)


def _cache() -> Path:
    return settings().home / "clearml-last-tasks.json"


def _key(project: str, name: str, task_type: str) -> str:
    return json.dumps([project, name, task_type])


def _read() -> dict[str, dict]:
    try:
        data = json.loads(_cache().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(project: str, name: str, task_type: str, task_id: str) -> None:
    """Note ``task_id`` as the last task of (project, name, type) on this machine."""
    data = _read()
    data[_key(project, name, task_type)] = {"id": task_id, "at": time.time()}
    if len(data) > MAX_REMEMBERED:  # the oldest go first
        data = dict(sorted(data.items(), key=lambda kv: kv[1].get("at", 0))[-MAX_REMEMBERED:])
    path = _cache()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data))
    partial.replace(path)  # never half written


def reusable(project: str, name: str, task_type: str, reuse: bool | str) -> NativeTask | None:
    """The task this run may reuse, or None (then a new one is created)."""
    if not reuse:
        return None
    if isinstance(reuse, str):
        task_id = reuse
    else:
        last = _read().get(_key(project, name, task_type)) or {}
        if not isinstance(last.get("id"), str) or time.time() - float(last.get("at", 0)) > REUSE_WINDOW_S:
            return None
        task_id = last["id"]
    try:
        task = NativeTask.get(task_id)
    except (TaskNotFound, TrainyardError):
        return None
    record = task.data
    if (record.project, record.name, record.type.value) != (project, name, task_type):
        return None
    if record.status not in REUSABLE_STATUSES or record.artifacts:
        return None  # running elsewhere, or it kept results
    return task


def reuse(task: NativeTask, script: Path, tags: list[str]) -> NativeTask | None:
    """Reset ``task`` for a new run of ``script``; None when it changed meanwhile (create a new one)."""
    with contextlib.suppress(TrainyardError):
        if task.data.status != TaskStatus.DRAFT:
            task.reset()
        task.recapture(script)
        task.edit(tags=tags, comment=None)
        return task.refresh()
    return None
