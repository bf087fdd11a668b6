"""Schedules: run a task (cloned from a template) or a registered pipeline on a cron schedule.

ClearML's ``TaskScheduler`` use, kept in Redis: ``add`` stores a schedule, the trigger service
(``trainyard.controller.triggers``) fires it at every tick, exactly once however many services run.

A function schedule (ClearML's ``schedule_function``) cannot be stored: it lives in the process
that added it (:meth:`TaskScheduler.add_function`), whose own trigger service
(:meth:`TaskScheduler.start`) calls it in a thread at each tick, as ClearML's scheduler does; a
function task trigger (:meth:`TaskScheduler.add_function_trigger`) the same way when it fires.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..queues import keys
from ..queues.backend import documents, streams
from ..queues.connection import resolve
from ..queues.errors import InvalidInput, TaskNotFound
from ..queues.store import TaskStore
from .files.cron import CronExpression, TimeZoneName
from .task_triggers import FunctionTrigger, TaskTrigger, function_trigger

SCHEDULES = keys.SCHEDULES


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: os.urandom(6).hex())
    name: str | None = None
    kind: Literal["task", "pipeline", "function"] = "task"
    cron: CronExpression
    timezone: TimeZoneName = "UTC"
    task_id: str | None = None  # kind task: the template, cloned at every tick
    queue: str | None = None  # kind task: where the clone is enqueued; pipelines: where the controller runs
    pipeline: str | None = None  # kind pipeline: "project/name" of a registered pipeline file
    function: str | None = None  # kind function: "module:name" of the function (never stored in Redis)
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    created: float = Field(default_factory=time.time)
    source: str = "user"  # user | file (from a registered pipeline file's on.schedule)


@dataclass
class FunctionJob:
    """A function schedule held by this process: ``function()`` runs in a thread at each tick."""

    schedule: Schedule
    function: Callable[[], Any]
    immediately: bool = False  # also once when the service starts
    single_instance: bool = False  # skip a tick while the previous call still runs
    recurring: bool = True  # False: once, then the schedule is dropped
    thread: threading.Thread | None = None


def _model(**fields: Any) -> Schedule:
    """A Schedule, a bad field being one InvalidInput line."""
    try:
        return Schedule(**fields)
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        raise InvalidInput(errors()[0]["msg"].removeprefix("Value error, ") if errors else str(exc)) from None


def add(
    cron: str,
    task_id: str | None = None,
    queue: str | None = None,
    pipeline: str | None = None,
    timezone: str = "UTC",
    name: str | None = None,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    conn: Redis | None = None,
) -> Schedule:
    """Store a schedule for a task (cloned and enqueued on ``queue`` at each tick) or a registered pipeline."""
    conn = resolve(conn)
    if (task_id is None) == (pipeline is None):
        raise InvalidInput("a schedule runs either a task (--task ID) or a registered pipeline (--pipeline NAME)")
    schedule = _model(
        name=name,
        kind="task" if task_id else "pipeline",
        cron=cron,
        timezone=timezone,
        task_id=task_id,
        queue=queue,
        pipeline=pipeline,
        params=dict(params or {}),
        inputs=dict(inputs or {}),
    )
    if task_id:
        if not queue:
            raise InvalidInput("a task schedule needs --queue (where each clone is enqueued)")
        TaskStore(conn).get(task_id)  # TaskNotFound names it
    else:
        from .files.registry import find

        entry = find(pipeline, conn=conn)
        schedule.pipeline = f"{entry['project']}/{entry['name']}"
    documents.put(conn, "schedules", schedule.id, schedule.model_dump_json())
    return schedule


def remove(schedule_id: str, conn: Redis | None = None) -> None:
    if not documents.drop(resolve(conn), "schedules", schedule_id):
        raise TaskNotFound(f"no schedule {schedule_id!r}")


def user_schedules(conn: Redis | None = None) -> list[Schedule]:
    raw = documents.all_docs(resolve(conn), "schedules")
    return sorted((Schedule.model_validate_json(v) for v in raw), key=lambda s: s.created)


def file_schedules(entries: list[dict[str, Any]], cache: dict | None = None) -> list[Schedule]:
    """The ``on.schedule`` triggers of registered pipeline files, as schedules."""
    from .triggers import parsed_entry

    out = []
    for entry in entries:
        try:
            pf = parsed_entry(entry, cache)
        except InvalidInput:
            continue
        for i, trigger in enumerate(pf.on.schedule):
            out.append(
                Schedule(
                    id=f"file:{pf.project}/{pf.name}:{i}",
                    name=f"{pf.name} (schedule {i + 1})",
                    kind="pipeline",
                    cron=trigger.cron,
                    timezone=trigger.timezone,
                    pipeline=f"{pf.project}/{pf.name}",
                    params=trigger.params,
                    inputs=trigger.inputs,
                    source="file",
                )
            )
    return out


def all_schedules(conn: Redis | None = None) -> list[Schedule]:
    from .files.registry import entries

    conn = resolve(conn)
    return user_schedules(conn) + file_schedules(entries(conn))


def last_fired(conn: Redis, schedule_id: str) -> dict | None:
    raw = streams.last_firing(conn, schedule_id)
    return json.loads(raw) if raw else None


class TaskScheduler:
    """ClearML-style: ``TaskScheduler().add_task(task_id, queue="default", cron="0 * * * *")``."""

    def __init__(self, connection: Redis | None = None):
        self.conn = resolve(connection)
        self.functions: list[FunctionJob] = []  # this process's function schedules
        self.function_triggers: list[FunctionTrigger] = []  # this process's function task triggers

    def add_task(
        self, schedule_task_id: str, queue: str, cron: str, timezone: str = "UTC", name: str | None = None
    ) -> Schedule:
        return add(cron, task_id=schedule_task_id, queue=queue, timezone=timezone, name=name, conn=self.conn)

    def add_pipeline(self, pipeline: str, cron: str, timezone: str = "UTC", params: dict | None = None) -> Schedule:
        return add(cron, pipeline=pipeline, timezone=timezone, params=params, conn=self.conn)

    def add_function(
        self,
        function: Callable[[], Any],
        cron: str,
        timezone: str = "UTC",
        name: str | None = None,
        execute_immediately: bool = False,
        single_instance: bool = False,
        recurring: bool = True,
    ) -> Schedule:
        """Call ``function()`` in a thread of this process at each tick, once :meth:`start` runs
        (``execute_immediately``: also as it starts). It is not stored in Redis: other trigger
        services never see it, and it ends with this process."""
        if not callable(function):
            raise InvalidInput(f"a function schedule needs a callable, got {type(function).__name__}")
        where = f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"
        schedule = _model(name=name, kind="function", cron=cron, timezone=timezone, function=where)
        self.functions.append(FunctionJob(schedule, function, execute_immediately, single_instance, recurring))
        return schedule

    def add_function_trigger(
        self, function: Callable[[str], Any], trigger: TaskTrigger, single_instance: bool = False
    ) -> TaskTrigger:
        """Call ``function(task_id)`` in a thread of this process when ``trigger`` (a task trigger
        without template or queue) fires for a task, once :meth:`start` runs; like
        :meth:`add_function`, it is not stored in Redis and ends with this process."""
        job = function_trigger(function, trigger, single_instance)
        self.function_triggers.append(job)
        return job.trigger

    def remove(self, schedule_id: str) -> None:
        """A schedule, or a function schedule or function trigger of this process, by its id."""
        kept = [job for job in self.functions if job.schedule.id != schedule_id]
        kept_triggers = [job for job in self.function_triggers if job.trigger.id != schedule_id]
        if len(kept) < len(self.functions) or len(kept_triggers) < len(self.function_triggers):
            self.functions, self.function_triggers = kept, kept_triggers
            return
        remove(schedule_id, self.conn)

    def list(self) -> list[Schedule]:
        return all_schedules(self.conn) + [job.schedule for job in self.functions]

    def start(self) -> None:
        """Run a trigger service in this process until SIGTERM or SIGINT (from the main thread) or
        its stop: it fires every stored schedule and trigger, and this process's functions (schedules
        and triggers)."""
        from .services import run_until_signalled
        from .triggers import TriggerService

        service = TriggerService(self.conn, functions=self.functions, function_triggers=self.function_triggers)
        if threading.current_thread() is threading.main_thread():
            run_until_signalled(service, "trigger service")
        else:
            service.run()

    def start_remotely(self, queue: str = "services") -> str:
        """Start a trigger service as a controller task on ``queue``; returns its task id."""
        from .triggers import start_service

        return start_service(self.conn, queue)
