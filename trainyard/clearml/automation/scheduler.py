"""ClearML's ``TaskScheduler`` over trainyard's schedules and trigger service.

ClearML's ``add_task`` is not cron: a field given alone is an interval (``minute=15``: every 15
minutes); with several, the longest is the interval and the shorter ones fix the time (``hour=1,
minute=30``: every hour at :30; ``day=1, hour=22, minute=30``: every day at 22:30); ``weekdays``
restricts the days (``day=0`` with weekdays: weekly). :func:`to_cron` turns that into the cron
expression trainyard's schedules use; the trigger service fires it within a second of its time,
exactly once however many services run (ClearML's scheduler re-reads its configuration every 15
minutes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from ...controller import schedules
from ...queues.errors import InvalidInput
from ...queues.task import Task as NativeTask
from ..errors import Refusing, refuse_unknown, unsupported

WEEKDAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}
UNITS = ("minute", "hour", "day", "month", "year")  # shortest first


def to_cron(
    minute: int | None = None,
    hour: int | None = None,
    day: int | None = None,
    weekdays: Sequence[str] | None = None,
    month: int | None = None,
    year: int | None = None,
) -> str:
    """ClearML's interval fields as a cron expression (``minute hour day-of-month month day-of-week``)."""
    given = {"minute": minute, "hour": hour, "day": day, "month": month, "year": year}
    for unit, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidInput(f"TaskScheduler.add_task: {unit} must be a whole number >= 0, got {value!r}")
    days = []
    for weekday in weekdays or ():
        if str(weekday).lower() not in WEEKDAYS:
            raise InvalidInput(f"TaskScheduler.add_task: unknown weekday {weekday!r} (use {', '.join(WEEKDAYS)})")
        days.append(WEEKDAYS[str(weekday).lower()])
    present = [u for u in UNITS if given[u] is not None]
    if not present and not days:
        raise InvalidInput("TaskScheduler.add_task needs minute, hour, day, weekdays, month or year")
    unit = present[-1] if present else "day"
    if year is not None and year > 1:
        raise unsupported(f"TaskScheduler.add_task(year={year}) (cron repeats yearly at most)")
    rank = UNITS.index(unit)

    def field(name: str, lowest: int) -> str:
        value = given[name]
        position = UNITS.index(name)
        if position < rank:
            return str(value if value is not None else lowest)  # fixes the time within the interval
        if position == rank and value:
            return "*" if value == 1 and name != "minute" else f"*/{value}"
        return "*"

    if unit == "year":  # once a year: month and day fix the date
        return f"{given['minute'] or 0} {given['hour'] or 0} {day or 1} {month or 1} *"
    dow = ",".join(str(d) for d in sorted(set(days))) if days else "*"
    return f"{field('minute', 0)} {field('hour', 0)} {field('day', 1)} {field('month', 1)} {dow}"


class TaskScheduler(metaclass=Refusing):
    """ClearML's TaskScheduler: task jobs are stored in Redis at once and fired by the trigger
    service; function jobs live in this process, whose trigger service (``start``) calls them in
    a thread at each tick. With function jobs, ``start_remotely`` sends this script to the services
    queue as its task's code (``execute_remotely``, as a PipelineController does), and the services
    worker runs it again: the same calls add the same jobs, and ``start_remotely`` there starts."""

    def __init__(
        self,
        sync_frequency_minutes: float = 15,
        force_create_task_name: str | None = None,
        force_create_task_project: str | None = None,
    ):
        self._native = schedules.TaskScheduler()

    def add_task(
        self,
        schedule_task_id: Any = None,
        schedule_function: Callable | None = None,
        queue: str | None = None,
        name: str | None = None,
        target_project: str | None = None,
        minute: int | None = None,
        hour: int | None = None,
        day: int | None = None,
        weekdays: Sequence[str] | None = None,
        month: int | None = None,
        year: int | None = None,
        limit_execution_time: float | None = None,
        single_instance: bool = False,
        recurring: bool = True,
        execute_immediately: bool = False,
        reuse_task: bool = False,
        task_parameters: dict | None = None,
        task_overrides: dict | None = None,
    ) -> bool:
        """Clone and enqueue ``schedule_task_id`` (a task or its id) on ``queue`` at ClearML's
        interval (see :func:`to_cron`); ``execute_immediately`` also runs it once now. Or call
        ``schedule_function()`` in this process at that interval (``name`` required, as in
        ClearML; ``single_instance``, ``recurring`` and ``execute_immediately`` apply)."""
        if schedule_function is not None:
            if schedule_task_id is not None:
                raise InvalidInput("TaskScheduler.add_task takes schedule_task_id or schedule_function, not both")
            if not name:
                raise InvalidInput("TaskScheduler.add_task(schedule_function=...) needs a name (as in ClearML)")
            self._native.add_function(
                schedule_function,
                to_cron(minute, hour, day, weekdays, month, year),
                name=name,
                execute_immediately=execute_immediately,
                single_instance=single_instance,
                recurring=recurring,
            )
            return True
        used = {
            "target_project": target_project,
            "limit_execution_time": limit_execution_time,
            "single_instance": single_instance,
            "reuse_task": reuse_task,
            "task_parameters": task_parameters,
            "task_overrides": task_overrides,
        }
        for key, value in used.items():
            if value not in (None, False, {}):
                raise unsupported(f"TaskScheduler.add_task({key}=...)")
        if not recurring:
            raise unsupported("TaskScheduler.add_task(recurring=False)")
        task_id = getattr(schedule_task_id, "id", schedule_task_id)
        if not task_id or not queue:
            raise InvalidInput("TaskScheduler.add_task needs schedule_task_id and queue")
        cron = to_cron(minute, hour, day, weekdays, month, year)
        same = (str(task_id), queue, cron, "UTC", name)
        if any(
            (s.task_id, s.queue, s.cron, s.timezone, s.name) == same
            for s in schedules.user_schedules(self._native.conn)
        ):
            return True  # stored already: this script run again (on the services worker), or twice
        self._native.add_task(str(task_id), queue=queue, cron=cron, name=name)
        if execute_immediately:
            NativeTask.get(str(task_id)).clone(name=name).enqueue(queue)
        return True

    def get_scheduled_tasks(self) -> list[schedules.Schedule]:
        return self._native.list()

    def remove_task(self, task_id: Any) -> bool:
        """By task (or id), name or schedule id; a function job by the function itself."""
        if callable(task_id) and not isinstance(task_id, NativeTask):
            found = [job.schedule for job in self._native.functions if job.function is task_id]
        else:
            task_id = getattr(task_id, "id", task_id)
            found = [s for s in self._native.list() if task_id in (s.task_id, s.name, s.id)]
        for schedule in found:
            self._native.remove(schedule.id)
        return bool(found)

    def start(self) -> None:
        """Run a trigger service in this process, calling the function jobs at their ticks (it
        returns only when SIGTERM or SIGINT stops it; ClearML's never returns)."""
        self._native.start()

    def start_remotely(self, queue: str = "services") -> None:
        """End this process and run the scheduler on ``queue``: on a services worker this starts
        (ClearML's behaviour). Function jobs travel with this script as its task's code; without
        them a plain trigger service is started there."""
        _start_remotely(self._native, queue, "TaskScheduler")

    def __getattr__(self, name: str):
        refuse_unknown("TaskScheduler", name)


REGEX_CHARS = frozenset("\\^$|?*+()[]{}")  # a trigger_name holding one is a pattern (a dot stands for itself)


class TriggerScheduler(metaclass=Refusing):
    """ClearML's TriggerScheduler for task triggers: fired by the trigger service on the task's
    status event or metric point (within a second, where ClearML polls every 3 minutes). A trigger
    that clones a task is stored in Redis at once; one that calls a function lives in this process,
    whose trigger service (``start``) calls it in a thread, and travels with this script as its
    task's code on ``start_remotely``, as TaskScheduler's function jobs do."""

    def __init__(self, pooling_frequency_minutes: float = 3.0, sync_frequency_minutes: float = 15):
        self._native = schedules.TaskScheduler()

    def add_task_trigger(
        self,
        schedule_task_id: Any = None,
        schedule_queue: str | None = None,
        schedule_function: Callable[[str], Any] | None = None,
        trigger_project: str | None = None,
        trigger_name: str | None = None,
        trigger_on_tags: Sequence[str] | None = None,
        trigger_on_status: Sequence[str] | None = None,
        trigger_exclude_dev_tasks: bool | None = None,
        trigger_on_metric: str | None = None,
        trigger_on_variant: str | None = None,
        trigger_on_threshold: float | None = None,
        trigger_on_sign: str | None = None,
        trigger_required_tags: Sequence[str] | None = None,
        name: str | None = None,
        target_project: str | None = None,
        add_tag: bool | str = True,
        single_instance: bool = False,
        reuse_task: bool = False,
        task_parameters: dict | None = None,
        task_overrides: dict | None = None,
    ) -> None:
        """Clone and enqueue ``schedule_task_id`` on ``schedule_queue`` when a matching task changes
        status (``trigger_on_status``: ClearML's names) and, with ``trigger_on_metric``, its metric's
        running max (``trigger_on_sign="max"``) or min (``"min"``, ClearML's default) has crossed the
        threshold (0 included). Or call ``schedule_function(task_id)`` with the id of that task, in
        a thread of this process (``name`` required, as in ClearML; ``single_instance`` applies);
        given both, both happen."""
        for key, value in {
            "target_project": target_project,
            "single_instance": single_instance if schedule_task_id is not None else None,
            "reuse_task": reuse_task,
            "task_parameters": task_parameters,
            "task_overrides": task_overrides,
        }.items():
            if value not in (None, False, {}):
                raise unsupported(f"TriggerScheduler.add_task_trigger({key}=...)")
        from ...controller import task_triggers
        from ..task import FROM_CLEARML_STATUS

        task_id = getattr(schedule_task_id, "id", schedule_task_id)
        if schedule_function is None and (not task_id or not schedule_queue):
            raise InvalidInput(
                "TriggerScheduler.add_task_trigger needs schedule_task_id and schedule_queue, or schedule_function"
            )
        if schedule_function is not None and not name:
            raise InvalidInput("TriggerScheduler.add_task_trigger(schedule_function=...) needs a name (as in ClearML)")
        if task_id and not schedule_queue:
            raise InvalidInput("TriggerScheduler.add_task_trigger(schedule_task_id=...) needs schedule_queue")
        statuses = []
        for status in trigger_on_status or ():
            if status not in FROM_CLEARML_STATUS:
                raise InvalidInput(f"unknown status {status!r} (use {', '.join(FROM_CLEARML_STATUS)})")
            statuses.append(FROM_CLEARML_STATUS[status])
        # ClearML's: "max"/"maximum" or "min"/"minimum", and min when not given
        sign = {"max": "max", "maximum": "max", "min": "min", "minimum": "min"}.get(
            str(trigger_on_sign or "min").lower()
        )
        if sign is None:
            raise InvalidInput(f"trigger_on_sign must be 'max', 'maximum', 'min' or 'minimum', got {trigger_on_sign!r}")
        if trigger_name and any(c in trigger_name for c in REGEX_CHARS):
            raise unsupported("TriggerScheduler.add_task_trigger(trigger_name=<a regular expression>)")
        watch = task_triggers.TaskTrigger(
            name=name,
            project=trigger_project,
            name_contains=trigger_name or None,  # ClearML's is a regular expression searched in the name
            exclude_dev=bool(trigger_exclude_dev_tasks),
            add_tag=(add_tag if isinstance(add_tag, str) else (name or None)) if add_tag else None,
            statuses=statuses,
            any_tags=list(trigger_on_tags or ()),
            all_tags=list(trigger_required_tags or ()),
            metric=trigger_on_metric,
            variant=trigger_on_variant,
            threshold=trigger_on_threshold,
            sign=sign,
        )
        task_triggers.check(watch)  # before anything is added
        if task_id:
            fields = watch.model_dump(exclude={"id", "created", "task_id", "queue", "function"})
            stored = task_triggers.TaskTrigger(**fields, task_id=str(task_id), queue=schedule_queue)  # an id of its own
            same = stored.model_dump(exclude={"id", "created"})
            if not any(t.model_dump(exclude={"id", "created"}) == same for t in self._stored()):
                task_triggers.add(stored, self._native.conn)  # not twice: this script run again, or twice
        if schedule_function is not None:
            self._native.add_function_trigger(schedule_function, watch, single_instance=single_instance)

    def add_model_trigger(self, *args: Any, **kwargs: Any) -> None:
        raise unsupported("TriggerScheduler.add_model_trigger")

    def add_dataset_trigger(self, *args: Any, **kwargs: Any) -> None:
        raise unsupported("TriggerScheduler.add_dataset_trigger")

    def get_triggers(self) -> list:
        """The stored task triggers, then this process's function triggers."""
        return self._stored() + [job.trigger for job in self._native.function_triggers]

    def _stored(self) -> list:
        from ...controller import task_triggers

        return task_triggers.all_triggers(self._native.conn)

    def start(self) -> None:
        """Run a trigger service in this process, calling the function triggers as they fire (it
        returns only when SIGTERM or SIGINT stops it; ClearML's never returns)."""
        self._native.start()

    def start_remotely(self, queue: str = "services") -> None:
        """End this process and run the trigger service on ``queue`` (ClearML's behaviour); with
        function triggers this script travels as its task's code, as for TaskScheduler."""
        _start_remotely(self._native, queue, "TriggerScheduler")

    def __getattr__(self, name: str):
        refuse_unknown("TriggerScheduler", name)


def _start_remotely(native: schedules.TaskScheduler, queue: str, owner: str) -> None:
    """``start_remotely`` of both schedulers: on a worker, start here; without functions, a plain
    trigger service on ``queue`` and exit; with them, this script goes to ``queue`` as the code of
    the current task (or of ClearML's ``DevOps/Scheduler`` task) and exits, to run again there."""
    from .. import task as clearml_task

    if clearml_task._inside_worker():
        native.start()
        return
    if not native.functions and not native.function_triggers:
        native.start_remotely(queue)
        sys.stdout.flush()
        sys.exit(0)
    from ...queues.queue import Queue
    from ..task import Task, TaskTypes

    Queue.get(queue)  # an unknown queue: one line, before anything is written
    task = Task.current_task()
    if task is None:  # ClearML's scheduler task; a controller here, the type a worker hands Redis to
        task = Task.init(project_name="DevOps", task_name="Scheduler", task_type=TaskTypes.controller)
    elif task.task_type not in ("controller", "optimizer"):
        raise InvalidInput(
            f"{owner}.start_remotely: task {task.id} is of type {task.task_type}; a scheduler that runs "
            "functions on a services worker needs Redis there: Task.init(task_type=Task.TaskTypes.controller)"
        )
    task.execute_remotely(queue_name=queue, exit_process=True)
