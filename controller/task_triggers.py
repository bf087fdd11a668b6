"""Task triggers added by hand: when a task matching a trigger changes status, a template task is
cloned and enqueued (ClearML's ``TriggerScheduler.add_task_trigger``). Kept in Redis; the trigger
service (``controller/triggers.py``) fires them on the status event, once per (trigger, task).

A metric condition holds once the metric's running max has reached the threshold (``sign max``:
``max >= threshold``) or its running min has (``min``: ``min <= threshold``); a threshold of 0 is a
threshold like any other. It is checked against the task's metric summary when its status changes
and, for a trigger that accepts a running task (no status, or ``running`` among them), against each
metric point of a running task as it is reported: the trigger fires on the point that crosses.

A function trigger (ClearML's ``schedule_function``) cannot be stored: it lives in the process that
added it (:class:`FunctionTrigger`, :meth:`trainyard.controller.schedules.TaskScheduler.add_function_trigger`),
whose own trigger service calls ``function(task_id)`` in a thread when it fires.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..queues.backend import documents
from ..queues.connection import resolve
from ..queues.errors import InvalidInput, TaskNotFound
from ..queues.record import TaskRecord, TaskType
from ..queues.store import TaskStore

STATUSES = ("queued", "running", "completed", "failed", "aborted")


class TaskTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: os.urandom(6).hex())
    name: str | None = None
    task_id: str | None = None  # the template, cloned and enqueued when the trigger fires
    queue: str | None = None
    function: str | None = None  # a function trigger's "module:name" (never stored in Redis)
    project: str | None = None  # of the watched tasks
    task_name: str | None = None  # exact name of the watched tasks
    name_contains: str | None = None  # or a part of their name
    exclude_dev: bool = False  # only tasks a worker took from a queue (not runs outside a worker)
    add_tag: str | None = None  # a tag put on each clone the trigger starts (beside ``trigger:<id>``)
    statuses: list[str] = Field(default_factory=list)  # empty: any status change
    any_tags: list[str] = Field(default_factory=list)  # at least one of these
    all_tags: list[str] = Field(default_factory=list)  # every one of these
    metric: str | None = None
    variant: str | None = None
    threshold: float | None = None
    sign: Literal["max", "min"] = "max"
    created: float = Field(default_factory=time.time)


@dataclass
class FunctionTrigger:
    """A trigger held by this process: ``function(task_id)`` runs in a thread when it fires."""

    trigger: TaskTrigger
    function: Callable[[str], Any]
    single_instance: bool = False  # skip a firing while the previous call still runs
    thread: threading.Thread | None = None


def check(trigger: TaskTrigger) -> None:
    """Refuse, in one line, statuses and metric conditions the trigger service cannot match."""
    bad = sorted(set(trigger.statuses) - set(STATUSES))
    if bad:
        raise InvalidInput(f"unknown status(es) {', '.join(bad)} (use {', '.join(STATUSES)})")
    if trigger.metric is not None and (trigger.variant is None or trigger.threshold is None):
        raise InvalidInput("a metric trigger needs the metric, its variant (series) and a threshold")


def function_trigger(
    function: Callable[[str], Any], trigger: TaskTrigger, single_instance: bool = False
) -> FunctionTrigger:
    """``trigger`` calling ``function(task_id)`` instead of cloning a template (checked, not stored)."""
    if not callable(function):
        raise InvalidInput(f"a function trigger needs a callable, got {type(function).__name__}")
    if trigger.task_id is not None or trigger.queue is not None:
        raise InvalidInput("a function trigger calls its function: it takes no template task or queue")
    check(trigger)
    where = f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"
    return FunctionTrigger(trigger.model_copy(update={"function": where}), function, single_instance)


def add(trigger: TaskTrigger, conn: Redis | None = None) -> TaskTrigger:
    """Store a task trigger (its template must exist; a metric needs a variant and a threshold)."""
    conn = resolve(conn)
    if not trigger.task_id or not trigger.queue or trigger.function is not None:
        raise InvalidInput("a stored task trigger clones a template task onto a queue: it needs both, and no function")
    check(trigger)
    try:
        TaskStore(conn).get(trigger.task_id)
    except TaskNotFound:
        raise InvalidInput(f"trigger template task {trigger.task_id!r} does not exist") from None
    documents.put(conn, "task_triggers", trigger.id, trigger.model_dump_json())
    return trigger


def remove(trigger_id: str, conn: Redis | None = None) -> None:
    if not documents.drop(resolve(conn), "task_triggers", trigger_id):
        raise TaskNotFound(f"no task trigger {trigger_id!r}")


def all_triggers(conn: Redis | None = None) -> list[TaskTrigger]:
    raw = documents.all_docs(resolve(conn), "task_triggers")
    return sorted((TaskTrigger.model_validate_json(v) for v in raw), key=lambda t: t.created)


def matches(trigger: TaskTrigger, record: TaskRecord, status: str) -> bool:
    """Does this status change of ``record`` fire ``trigger``?"""
    if not selects(trigger, record, status):
        return False
    if trigger.metric is not None:
        summary = record.metrics.get(trigger.metric, {}).get(trigger.variant or "")
        if summary is None:
            return False
        return crosses(trigger, summary.max if trigger.sign == "max" else summary.min)
    return True


def watches_points(trigger: TaskTrigger) -> bool:
    """Is ``trigger`` checked against a running task's metric points as they come?"""
    return trigger.metric is not None and (not trigger.statuses or "running" in trigger.statuses)


def crosses(trigger: TaskTrigger, value: float) -> bool:
    """Does a metric value (a point, or the running extremum) reach the trigger's threshold?"""
    if trigger.threshold is None:
        return False
    return value >= trigger.threshold if trigger.sign == "max" else value <= trigger.threshold


def selects(trigger: TaskTrigger, record: TaskRecord, status: str) -> bool:
    """Everything but the metric: is ``record`` in ``status`` one of the tasks ``trigger`` watches?"""
    if record.type == TaskType.CONTROLLER or f"trigger:{trigger.id}" in record.tags:
        return False  # never controllers, never the trigger's own clones (no loops)
    if trigger.statuses and status not in trigger.statuses:
        return False
    if trigger.project and record.project != trigger.project:
        return False
    if trigger.task_name and record.name != trigger.task_name:
        return False
    if trigger.name_contains and trigger.name_contains not in record.name:
        return False
    if trigger.exclude_dev and not record.execution.queue:
        return False  # ran outside a worker (Task.init in a script): ClearML's development tasks
    if trigger.any_tags and not set(trigger.any_tags) & set(record.tags):
        return False
    return set(trigger.all_tags) <= set(record.tags)
