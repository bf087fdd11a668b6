"""The trigger service: fires schedules and task-event triggers, exactly once with any number running.

It runs as a controller task on the services queue (``trainyard schedule service``), or in the
foreground. Every service computes the same ticks (croniter, in the schedule's time zone) and reads
the same event stream; before acting it takes a Redis key for that (trigger, tick) or
(trigger, event) with ``SET NX``, so whichever service gets there first fires and the others skip.
It sleeps until the next tick or the next event (no polling interval), and re-reads the schedules
and registered pipeline files at least every second so additions take effect at once.

Task triggers with a metric threshold that accept a running task also read the metric streams of
the running tasks they watch, in the same blocking read as the events: a point that crosses the
threshold fires the trigger as it arrives, while the task still runs (once per task, as ever).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from redis import Redis

from ..queues import events, keys
from ..queues.backend import documents, streams
from ..queues.connection import default_connection
from ..queues.errors import TaskNotFound, TrainyardError
from ..queues.record import TaskRecord, TaskStatus, TaskType
from ..queues.store import Query, TaskStore
from ..queues.task import Task
from . import run_store, task_triggers
from .files import registry
from .files.cron import next_tick
from .files.schema import PipelineFile
from .schedules import FunctionJob, Schedule, file_schedules, user_schedules
from .services import enqueue_service, run_until_signalled

log = logging.getLogger("trainyard.triggers")
FIRES = keys.TRIGGER_FIRES
CLAIM_TTL_S = 7 * 24 * 3600
REFRESH_S = 1.0
MAX_WATCHED = 1000  # running tasks whose metric streams one service reads (the newest first)
SERVICE_MODULE = "trainyard.controller.triggers"


class TriggerService:
    def __init__(
        self,
        conn: Redis,
        name: str | None = None,
        functions: Sequence[FunctionJob] = (),
        function_triggers: Sequence[task_triggers.FunctionTrigger] = (),
    ):
        self.conn = conn
        self.name = name or f"{socket.gethostname()}-triggers-{os.getpid()}"
        self.functions = list(functions)  # function schedules of this process (never in Redis)
        self.function_triggers = list(function_triggers)  # function task triggers of this process (same)
        self.stop_event = threading.Event()
        self._due: dict[str, float] = {}  # schedule key -> next tick
        self._parsed: dict[tuple, PipelineFile] = {}  # (project, name, updated) -> the registered file
        self.watched: dict[str, str] = {}  # running task id -> its metric stream position
        self._watched_records: dict[str, TaskRecord] = {}
        self._metric_triggers: list[task_triggers.TaskTrigger] = []
        self._fired: set[tuple[str, str]] = set()  # (trigger, task) this service fired or saw claimed

    def run(self) -> None:
        cursor = streams.last_event_id(self.conn)
        print(f"trigger service {self.name} started", flush=True)
        while not self.stop_event.is_set():
            file_entries = registry.entries(self.conn)
            wait = self.fire_due(file_entries, time.time())
            self.refresh_watched()
            found, points = streams.follow_events_and_metrics(
                self.conn, cursor, self.watched, max(wait, 0.001), count=500
            )
            for event in found:
                cursor = event.id
                self._on_event(event, file_entries)
            self.on_points(points)

    def fire_due(self, file_entries: list[dict[str, Any]], now: float) -> float:
        """Fire every schedule whose tick has come; returns how long until the next one (at most REFRESH_S)."""
        functions = [job.schedule for job in self.functions]
        schedules = user_schedules(self.conn) + file_schedules(file_entries, self._parsed) + functions
        immediate = {job.schedule.id for job in self.functions if job.immediately}
        wait = REFRESH_S
        keys_now = set()
        for schedule in schedules:
            key = f"{schedule.id}|{schedule.cron}|{schedule.timezone}"
            keys_now.add(key)
            first = now if schedule.id in immediate else next_tick(schedule.cron, schedule.timezone, now)
            due = self._due.setdefault(key, first)
            if due <= now:
                # a service that fell behind fires the latest tick only, never a burst
                following = next_tick(schedule.cron, schedule.timezone, due)
                while following <= now:
                    due, following = following, next_tick(schedule.cron, schedule.timezone, following)
                self._fire_schedule(schedule, due, now)
                self._due[key] = due = following
            wait = min(wait, max(0.0, due - time.time()))
        for gone in set(self._due) - keys_now:  # removed or changed schedules
            del self._due[gone]
        return wait

    # -- schedules ---------------------------------------------------------------------------
    def _fire_schedule(self, schedule: Schedule, tick: float, now: float) -> None:
        if schedule.kind == "function":  # this process's own: no other service holds it
            self._call_function(schedule, tick, now)
            return
        if not self._claim(schedule.id, f"{tick:.3f}"):
            return
        try:
            if schedule.kind == "task":
                started = self._clone_task(schedule)
            else:
                started = self._start_pipeline(schedule.pipeline, schedule.params, schedule.inputs, {}, schedule.queue)
            self._record(schedule.id, tick=tick, started=started, late=now - tick)
        except TrainyardError as exc:
            self._record(schedule.id, tick=tick, error=str(exc), late=now - tick)

    def _call_function(self, schedule: Schedule, tick: float, now: float) -> None:
        """Start the function in a thread of its own (ClearML's scheduler does the same)."""
        job = next((j for j in self.functions if j.schedule.id == schedule.id), None)
        if job is None:
            return
        job.immediately = False
        if not job.recurring:
            self.functions.remove(job)
        if job.single_instance and job.thread is not None and job.thread.is_alive():
            self._record(
                schedule.id,
                tick=tick,
                function=schedule.function,
                name=schedule.name,
                skipped="the previous call still runs",
            )
            return
        job.thread = threading.Thread(target=job.function, name=f"schedule-{schedule.name or schedule.id}")
        job.thread.start()
        self._record(schedule.id, tick=tick, function=schedule.function, name=schedule.name, late=now - tick)

    def _clone_task(self, schedule: Schedule) -> str:
        template = Task.get(schedule.task_id, self.conn)
        name = f"{template.data.name} ({schedule.name or 'scheduled'})"
        clone = template.clone(name=name, tags=[*template.data.tags, f"schedule:{schedule.id}"])
        clone.enqueue(schedule.queue)
        return clone.id

    def _start_pipeline(self, ref: str, params: dict, inputs: dict, event: dict, queue: str | None) -> str:
        entry = registry.find(ref, conn=self.conn)
        pf = registry.load_entry(entry)
        return registry.start(pf, params, inputs, event, self.conn, queue or registry.SERVICES_QUEUE)

    # -- task events ---------------------------------------------------------------------------
    def _on_event(self, event: events.Event, file_entries: list[dict[str, Any]]) -> None:
        if event.kind not in ("status", "pipeline"):
            return
        if event.kind == "status":
            self._on_task_status(event)
        kind = "pipeline" if event.kind == "pipeline" else "task"
        for entry in file_entries:
            pf = None
            for i, trigger in enumerate(_task_triggers(entry, self._parsed)):
                if trigger.get("kind", "task") != kind or event.status not in trigger.get("status", ["completed"]):
                    continue
                if trigger.get("project") and trigger["project"] != event.project:
                    continue
                if trigger.get("queue") and kind == "task" and trigger["queue"] != event.queue:
                    continue
                details = self._details(event, kind)
                if details is None or not _matches(trigger, details, entry["name"]):
                    continue
                trigger_id = f"file:{entry['project']}/{entry['name']}:task{i}"
                occurrence = f"{event.task_id}:{event.status}" if kind == "pipeline" else event.id
                if not self._claim(trigger_id, occurrence):
                    continue
                pf = pf or parsed_entry(entry, self._parsed)
                payload = {
                    "kind": kind,
                    "id": event.task_id,
                    "status": event.status,
                    "project": event.project,
                    "queue": event.queue,
                    "name": details["name"],
                    "tags": details["tags"],
                }
                try:
                    started = registry.start(pf, trigger.get("params") or {}, None, payload, self.conn)
                    self._record(trigger_id, event=event.id, started=started, subject=event.task_id)
                except TrainyardError as exc:
                    self._record(trigger_id, event=event.id, error=str(exc), subject=event.task_id)

    def _all_task_triggers(self) -> list[task_triggers.TaskTrigger]:
        """The stored task triggers and this process's function triggers."""
        return task_triggers.all_triggers(self.conn) + [job.trigger for job in self.function_triggers]

    def _on_task_status(self, event: events.Event) -> None:
        """Task triggers added by hand: each fires at most once per watched task."""
        triggers = self._all_task_triggers()
        if not triggers:
            return
        try:
            record = TaskStore(self.conn).get(event.task_id)
        except TaskNotFound:
            return
        for trigger in triggers:
            if task_triggers.matches(trigger, record, event.status):
                self._fire_task_trigger(trigger, record.id, event.id)
        self._watch(record, [t for t in triggers if task_triggers.watches_points(t)])

    def _fire_task_trigger(self, trigger: task_triggers.TaskTrigger, subject: str, occurrence: str) -> None:
        if not self._claim(trigger.id, subject):
            return
        if trigger.function is not None:
            self._call_trigger_function(trigger, subject, occurrence)
            return
        try:
            template = Task.get(trigger.task_id, self.conn)
            name = f"{template.data.name} ({trigger.name or 'triggered'})"
            tags = [*template.data.tags, f"trigger:{trigger.id}", *([trigger.add_tag] if trigger.add_tag else [])]
            clone = template.clone(name=name, tags=list(dict.fromkeys(tags)))
            clone.enqueue(trigger.queue)
            self._record(trigger.id, event=occurrence, started=clone.id, subject=subject)
        except TrainyardError as exc:
            self._record(trigger.id, event=occurrence, error=str(exc), subject=subject)

    def _call_trigger_function(self, trigger: task_triggers.TaskTrigger, subject: str, occurrence: str) -> None:
        """``function(task_id)`` in a thread of its own, as ClearML's trigger scheduler calls it."""
        job = next((j for j in self.function_triggers if j.trigger.id == trigger.id), None)
        if job is None:
            return
        fields = {"event": occurrence, "function": trigger.function, "name": trigger.name, "subject": subject}
        if job.single_instance and job.thread is not None and job.thread.is_alive():
            self._record(trigger.id, **fields, skipped="the previous call still runs")
            return
        job.thread = threading.Thread(
            target=job.function, args=(subject,), name=f"trigger-{trigger.name or trigger.id}"
        )
        job.thread.start()
        self._record(trigger.id, **fields)

    # -- metric thresholds on running tasks ------------------------------------------------------------
    def refresh_watched(self) -> None:
        """Re-read the metric triggers; when they changed, watch the running tasks they select."""
        wanted = [t for t in self._all_task_triggers() if task_triggers.watches_points(t)]
        if [t.model_dump() for t in wanted] == [t.model_dump() for t in self._metric_triggers]:
            return
        self._metric_triggers = wanted
        self.watched = {}
        self._watched_records = {}
        self._fired.clear()
        if wanted:
            for record in TaskStore(self.conn).query(Query(status="running"), limit=MAX_WATCHED):
                self._watch(record, wanted)

    def _watch(self, record: TaskRecord, triggers: list[task_triggers.TaskTrigger]) -> None:
        """Read a running task's metric points (from its first) while some trigger selects it."""
        selected = record.status == TaskStatus.RUNNING and any(
            task_triggers.selects(t, record, "running") for t in triggers
        )
        if not selected:
            self.watched.pop(record.id, None)
            self._watched_records.pop(record.id, None)
        elif record.id not in self.watched and len(self.watched) < MAX_WATCHED:
            self.watched[record.id] = "0-0"
            self._watched_records[record.id] = record

    def on_points(self, points: list[tuple[str, dict]]) -> None:
        """Fire the metric triggers whose threshold a running task's point reaches."""
        for task_id, point in points:
            record = self._watched_records.get(task_id)
            if record is None:
                continue
            for trigger in self._metric_triggers:
                if (
                    (point["title"], point["series"]) == (trigger.metric, trigger.variant)
                    and task_triggers.crosses(trigger, point["value"])
                    and task_triggers.selects(trigger, record, "running")
                    and (trigger.id, task_id) not in self._fired
                ):
                    self._fired.add((trigger.id, task_id))
                    self._fire_task_trigger(trigger, task_id, f"metric:{task_id}:{point['step']}")

    def _details(self, event: events.Event, kind: str) -> dict[str, Any] | None:
        try:
            if kind == "pipeline":
                run = run_store.load(self.conn, event.task_id)
                return {"name": run.name, "tags": [], "pipeline": run.name}
            record = TaskStore(self.conn).get(event.task_id)
        except TaskNotFound:
            return None
        pipeline = None
        if "pipeline-file" in record.tags and record.parent:
            with contextlib.suppress(TaskNotFound):
                pipeline = run_store.load(self.conn, record.parent).name
        return {"name": record.name, "tags": record.tags, "pipeline": pipeline, "type": record.type.value}

    # -- bookkeeping ------------------------------------------------------------------------------
    def _claim(self, trigger_id: str, occurrence: str) -> bool:
        return documents.claim_occurrence(self.conn, trigger_id, occurrence, self.name, CLAIM_TTL_S)

    def _record(self, trigger_id: str, **fields: Any) -> None:
        entry = {"trigger": trigger_id, "by": self.name, "at": time.time(), **fields}
        print(f"fired {trigger_id}: {json.dumps(fields)}", flush=True)
        streams.record_firing(self.conn, trigger_id, json.dumps(entry))


def _task_triggers(entry: dict[str, Any], cache: dict) -> list[dict[str, Any]]:
    """The ``on.task`` triggers of a registered file (parsed once per version of the file)."""
    return [t.model_dump() for t in parsed_entry(entry, cache).on.task]


def parsed_entry(entry: dict[str, Any], cache: dict | None) -> PipelineFile:
    key = (entry["project"], entry["name"], entry["updated"])
    if cache is None:
        return registry.load_entry(entry)
    if key not in cache:
        if len(cache) > 1000:
            cache.clear()
        cache[key] = registry.load_entry(entry)
    return cache[key]


def _matches(trigger: dict[str, Any], details: dict[str, Any], own_pipeline: str) -> bool:
    if details.get("pipeline") == own_pipeline or details.get("type") == TaskType.CONTROLLER.value:
        return False  # never triggered by its own runs (no loops), nor by controllers
    if trigger.get("name") and trigger["name"] != details["name"]:
        return False
    return all(tag in details["tags"] for tag in trigger.get("tags") or [])


def fires(conn: Redis, after: str = "0-0") -> list[tuple[str, dict]]:
    """Firings after ``after`` (a stream id), oldest first."""
    return [(entry_id, json.loads(data)) for entry_id, data in streams.firings(conn, after)]


def start_service(conn: Redis, queue: str = "services") -> str:
    """A trigger service as a controller task on ``queue``; returns its task id."""
    return enqueue_service(conn, "trigger service", SERVICE_MODULE, "trigger-service", queue)


def main() -> int:
    service = TriggerService(default_connection())
    return run_until_signalled(service, "trigger service")


if __name__ == "__main__":
    sys.exit(main())
