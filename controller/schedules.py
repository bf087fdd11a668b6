"""Schedules: run a task (cloned from a template) or a registered pipeline on a cron schedule.

ClearML's ``TaskScheduler`` use, kept in Redis: ``add`` stores a schedule, the trigger service
(``trainyard.controller.triggers``) fires it at every tick, exactly once however many services run.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..queues import keys
from ..queues.backend import documents, streams
from ..queues.connection import resolve
from ..queues.errors import InvalidInput, TaskNotFound
from ..queues.store import TaskStore
from .files.cron import CronExpression, TimeZoneName

SCHEDULES = keys.SCHEDULES


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: os.urandom(6).hex())
    name: str | None = None
    kind: Literal["task", "pipeline"] = "task"
    cron: CronExpression
    timezone: TimeZoneName = "UTC"
    task_id: str | None = None  # kind task: the template, cloned at every tick
    queue: str | None = None  # kind task: where the clone is enqueued; pipelines: where the controller runs
    pipeline: str | None = None  # kind pipeline: "project/name" of a registered pipeline file
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    created: float = Field(default_factory=time.time)
    source: str = "user"  # user | file (from a registered pipeline file's on.schedule)


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
    try:
        schedule = Schedule(
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
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        raise InvalidInput(errors()[0]["msg"].removeprefix("Value error, ") if errors else str(exc)) from None
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

    def add_task(
        self, schedule_task_id: str, queue: str, cron: str, timezone: str = "UTC", name: str | None = None
    ) -> Schedule:
        return add(cron, task_id=schedule_task_id, queue=queue, timezone=timezone, name=name, conn=self.conn)

    def add_pipeline(self, pipeline: str, cron: str, timezone: str = "UTC", params: dict | None = None) -> Schedule:
        return add(cron, pipeline=pipeline, timezone=timezone, params=params, conn=self.conn)

    def remove(self, schedule_id: str) -> None:
        remove(schedule_id, self.conn)

    def list(self) -> list[Schedule]:
        return all_schedules(self.conn)

    def start_remotely(self, queue: str = "services") -> str:
        """Start a trigger service as a controller task on ``queue``; returns its task id."""
        from .triggers import start_service

        return start_service(self.conn, queue)
