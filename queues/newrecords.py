"""New task records: clones of a task, records from bulk specs, and writing them (born queued or not).

``Task.clone``/``clone_many``/``store_new``, ``create_many`` and the pipeline engine build their
records here; one atomic backend call writes a batch (``TaskStore.create_many``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis import Redis

from . import bulk
from .errors import InvalidInput
from .params import check_parameters
from .queue_registry import QueueRegistry, check_queue_name
from .record import Execution, Script, TaskRecord, TaskStatus
from .store import TaskStore, new_task_id

SPEC_FIELDS = frozenset({"name", "command", "project", "parameters", "tags", "comment", "retries"})


def user() -> str | None:
    """The user new records are created by (None when unknown)."""
    from .config import current

    name = current().user
    return None if name == "unknown" else name


def first_error(exc: ValueError) -> str:
    """The first problem pydantic found, as ``field: message``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
    return str(exc)


def clone_record(
    src: TaskRecord,
    name: str | None,
    project: str | None,
    parameters: Mapping[str, Any] | None,
    comment: str | None,
    tags: Iterable[str] | None,
) -> TaskRecord:
    """A new draft with ``src``'s definition (``parent`` points to it); results are not copied."""
    overrides = check_parameters(parameters or {})
    return TaskRecord(
        id=new_task_id(),
        name=name or src.name,
        project=project or src.project,
        type=src.type,
        parent=src.id,
        tags=list(tags) if tags is not None else list(src.tags),
        comment=comment if comment is not None else src.comment,
        user=user(),
        script=src.script.model_copy(deep=True),
        container=src.container.model_copy(deep=True),
        execution=src.execution.model_copy(deep=True, update={"queue": None, "priority": 0}),
        parameters={**src.parameters, **overrides},
        configuration=dict(src.configuration),
    )


def clone_records(
    src: TaskRecord,
    names: Sequence[str],
    project: str | None,
    parameter_sets: Sequence[Mapping[str, Any] | None],
    tags: Iterable[str] | None,
) -> list[TaskRecord]:
    """``clone_record`` for many clones: the shared part is built once, and each clone is
    validated from a plain dict (fresh nested objects without a deep copy per clone)."""
    proto = clone_record(src, None, project, None, None, tags)
    base = proto.model_dump(exclude_defaults=True, exclude={"id", "name", "parameters", "created", "updated"})
    records = []
    for clone_name, params in zip(names, parameter_sets):
        data = {**base, "id": new_task_id(), "name": clone_name}
        data["parameters"] = {**proto.parameters, **check_parameters(params or {})}
        try:
            records.append(TaskRecord.model_validate(data))
        except ValueError as exc:  # pydantic: e.g. a blank name
            raise InvalidInput(f"clone {clone_name!r}: {first_error(exc)}") from None
    return records


def records_from_specs(specs: Iterable[Mapping[str, Any]]) -> list[TaskRecord]:
    """Command tasks from plain specs (``name`` and ``command``; optionally the rest of SPEC_FIELDS)."""
    creator = user()
    records = []
    for spec in specs:
        unknown = set(spec) - SPEC_FIELDS
        if unknown:
            raise InvalidInput(f"create_many: unknown field(s) {', '.join(sorted(unknown))}")
        command = spec.get("command")
        if not command or isinstance(command, str):
            raise InvalidInput("create_many: each spec needs a command (a list of strings)")
        records.append(
            TaskRecord(
                id=new_task_id(),
                name=spec["name"],
                project=spec.get("project", "default"),
                user=creator,
                tags=list(spec.get("tags", ())),
                comment=spec.get("comment"),
                script=Script(command=list(command)),
                parameters=check_parameters(spec.get("parameters") or {}),
                execution=Execution(retries=spec.get("retries", 0)),
            )
        )
    return records


def write_new(conn: Redis, records: list[TaskRecord], queue: str | None, priority: int, create_queue: bool) -> None:
    """Write new records in one atomic call; with ``queue``, they are born queued there (nothing
    is written when the queue does not exist)."""
    if queue is None:
        TaskStore(conn).create_many(records)
        return
    born = _born(conn, queue, priority, create_queue)
    for record in records:
        record.status = TaskStatus.QUEUED  # as Task.enqueue would leave it
        record.execution.queue = born.queue
        record.execution.priority = born.priority
        record.queued_at = born.now
    TaskStore(conn).create_many(records, born)


def _born(conn: Redis, queue: str, priority: int, create_queue: bool) -> bulk.Born:
    ready_queue(conn, queue, priority, create_queue)
    return bulk.Born(queue, priority, time.time())


def ready_queue(conn: Redis, queue: str, priority: object, create_queue: bool) -> None:
    """Check the queue a task goes on and its priority; the queue must exist (or is created, with
    ``create_queue``)."""
    check_queue_name(queue)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidInput(f"priority must be an integer, got {priority!r}")
    registry = QueueRegistry(conn)
    if create_queue:
        registry.create(queue, exist_ok=True)
    else:
        registry.require(queue)
