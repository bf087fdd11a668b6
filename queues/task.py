"""``Task``: the Python API for creating, editing, enqueueing and following tasks."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from redis import Redis

from . import bulk, capture, events, lifecycle, reaper
from .backend import streams, wake
from .connection import reader_without_redis, resolve
from .errors import IllegalTransition, InvalidInput, TaskNotFound, WaitTimeout
from .gitinfo import strip_credentials
from .newrecords import clone_record, clone_records, first_error, ready_queue, records_from_specs, user, write_new
from .options import ExecutionOptions
from .params import check_parameters, check_value, normalize_key
from .record import (
    FINAL_STATUSES,
    Script,
    TaskRecord,
    TaskStatus,
    TaskType,
)
from .store import Query, TaskStore, new_task_id


class Task:
    """A handle on one task record. Reads are cached; ``refresh()`` re-reads."""

    Status = TaskStatus
    Types = TaskType

    def __init__(self, record: TaskRecord, connection: Redis | None = None):
        self._record = record
        self._conn = connection

    # -- plumbing ------------------------------------------------------------------------
    @property
    def connection(self) -> Redis:
        if self._conn is None:
            self._conn = resolve(None)
        return self._conn

    @property
    def _store(self) -> TaskStore:
        return TaskStore(self.connection)

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name!r} {self.status.value}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # -- creation and lookup ---------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        project: str = "default",
        *,
        script: str | Path | None = None,
        command: Sequence[str] | None = None,
        source: str | None = None,
        entry_point: str | None = None,
        repository: str | None = None,
        branch: str | None = None,
        commit: str | None = None,
        working_dir: str | None = None,
        detect_repository: bool = True,
        task_type: TaskType | str = TaskType.TRAINING,
        parameters: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        comment: str | None = None,
        parent: str | None = None,
        connection: Redis | None = None,
        **options: Any,
    ) -> Task:
        """Create a draft task from a script (its git checkout is read), a command, or a source text.

        ``script`` is a path to a Python file; when it sits in a git checkout the repository,
        branch, commit and uncommitted diff are recorded and the entry point is stored relative
        to its working folder. ``command`` is an argv list, run as-is (never through a shell).
        ``options`` are execution options (``queues/options.py``: mode, docker_image, requirements —
        a list, or a requirements file or text —, gpus, time_limit, retries, env, memory, ...).
        """
        if script is None and command is None and source is None:
            raise InvalidInput("a task needs a script, a command or a source")
        if command is not None and (isinstance(command, str) or not all(isinstance(a, str) for a in command)):
            raise InvalidInput("command must be a list of strings (argv), not a shell string")
        if command is not None and not command:
            raise InvalidInput("command must not be empty")
        if options.get("requirements") is not None:  # a list, a requirements file or its text
            options["requirements"] = capture.requirement_lines(options["requirements"])
        checked = ExecutionOptions.of(options)
        script_model = Script(
            repository=strip_credentials(repository) if repository else None,  # tokens live on workers
            branch=branch,
            commit=commit,
            command=list(command) if command else None,
        )
        if script is not None:
            capture.fill_from_script(script_model, Path(script), detect_repository)
        if source is not None:
            script_model.source = source
            script_model.entry_point = entry_point or "main.py"
        if working_dir is not None:
            script_model.working_dir = working_dir
        try:
            record = TaskRecord(
                id=new_task_id(),
                name=name,
                project=project,
                type=TaskType(task_type),
                parent=parent,
                tags=list(dict.fromkeys(tags)),
                comment=comment,
                user=user(),
                script=script_model,
                parameters=check_parameters(parameters or {}),
                configuration=dict(configuration or {}),
            )
        except ValueError as exc:  # pydantic: a field with a bad value
            raise InvalidInput(f"invalid value: {first_error(exc)}") from None
        checked.apply(record)
        conn = resolve(connection)
        TaskStore(conn).create(record)
        return cls(record, conn)

    @classmethod
    def store_new(cls, record: TaskRecord, queue: str | None = None, connection: Redis | None = None) -> Task:
        """Store a prepared new record (a clone built by a controller), born queued on ``queue`` when
        given: one atomic write, as ``create`` then ``enqueue`` would leave it, with nothing written
        when the queue does not exist."""
        conn = resolve(connection)
        write_new(conn, [record], queue, 0, False)
        return cls(record, conn)

    @classmethod
    def get(cls, task_id: str, connection: Redis | None = None) -> Task:
        reader = reader_without_redis(connection)
        if reader is not None:  # inside a task: its worker answers
            return cls(reader.get(task_id))
        conn = resolve(connection)
        return cls(TaskStore(conn).get(task_id), conn)

    @classmethod
    def get_task(
        cls,
        task_id: str | None = None,
        project: str | None = None,
        name: str | None = None,
        connection: Redis | None = None,
    ) -> Task:
        """By id, or the newest task with this exact name in ``project``."""
        if task_id:
            return cls.get(task_id, connection)
        if not name:
            raise InvalidInput("get_task needs task_id, or name (and project)")
        reader = reader_without_redis(connection)
        if reader is not None:  # inside a task: its worker answers
            return cls(reader.find_by_name(project or "default", name))
        conn = resolve(connection)
        return cls(TaskStore(conn).find_by_name(project or "default", name), conn)

    @classmethod
    def list(
        cls,
        project: str | None = None,
        status: str | Iterable[str] | None = None,
        tag: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        parent: str | None = None,
        limit: int = 50,
        offset: int = 0,
        connection: Redis | None = None,
    ) -> list[Task]:
        """Tasks matching every given filter, newest first (``name`` is a glob or substring)."""
        query = Query(project=project, status=status, tag=tag, queue=queue, name=name, parent=parent)
        reader = reader_without_redis(connection)
        if reader is not None:  # inside a task: its worker answers
            return [cls(r) for r in reader.query(query, limit, offset)]
        conn = resolve(connection)
        return [cls(r, conn) for r in TaskStore(conn).query(query, limit=limit, offset=offset)]

    # -- fields --------------------------------------------------------------------------
    @property
    def data(self) -> TaskRecord:
        """The record as last read (a copy is safe to inspect, edits go through methods)."""
        return self._record

    id = property(lambda self: self._record.id)
    name = property(lambda self: self._record.name)
    project = property(lambda self: self._record.project)
    status = property(lambda self: self._record.status)
    parent = property(lambda self: self._record.parent)
    tags = property(lambda self: list(self._record.tags))
    artifacts = property(lambda self: dict(self._record.artifacts))
    outputs = property(lambda self: dict(self._record.outputs))
    metrics = property(lambda self: self._record.metrics)
    runtime = property(lambda self: self._record.runtime)

    def refresh(self) -> Task:
        reader = reader_without_redis(self._conn)
        self._record = reader.get(self.id) if reader is not None else self._store.get(self.id)
        return self

    def get_parameters(self) -> dict[str, Any]:
        return dict(self._record.parameters)

    def get_parameter(self, key: str, default: Any = None) -> Any:
        return self._record.parameters.get(normalize_key(key), default)

    def get_log(self, tail: int | None = None, streams: Iterable[str] = ("out", "err", "sys")) -> list[str]:
        """The task's log lines kept in Redis (the last ``tail`` when given), oldest first;
        ``streams`` picks stdout (``out``), stderr (``err``) and trainyard's own lines (``sys``)."""
        from . import logs

        wanted = set(streams)
        lines = logs.tail(self.connection, self.id, tail) if tail else logs.read(self.connection, self.id)
        return [line.text for line in lines if line.stream in wanted]

    # -- edits (drafts only) ---------------------------------------------------------------
    def _edit(self, mutate, what: str = "edit") -> Task:
        def guarded(record: TaskRecord) -> None:
            lifecycle.check_editable(self.id, record.status, what)
            mutate(record)

        self._record = self._store.update(self.id, guarded)
        return self

    def set_parameters(self, params: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Task:
        """Replace all parameters (keys without a section go to ``General/``)."""
        new = check_parameters({**(params or {}), **kwargs})

        def apply(record: TaskRecord) -> None:
            record.parameters = new

        return self._edit(apply, "set parameters of")

    def update_parameters(self, params: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Task:
        """Merge parameters into the existing ones."""
        new = check_parameters({**(params or {}), **kwargs})

        def apply(record: TaskRecord) -> None:
            record.parameters = {**record.parameters, **new}

        return self._edit(apply, "set parameters of")

    def set_parameter(self, key: str, value: Any) -> Task:
        key = normalize_key(key)
        return self.update_parameters({key: check_value(key, value)})

    def delete_parameter(self, key: str) -> Task:
        key = normalize_key(key)

        def apply(record: TaskRecord) -> None:
            record.parameters = {k: v for k, v in record.parameters.items() if k != key}

        return self._edit(apply, "set parameters of")

    def set_configuration(self, name: str, value: Any) -> Task:
        def apply(record: TaskRecord) -> None:
            record.configuration = {**record.configuration, name: value}

        return self._edit(apply, "set configuration of")

    def edit(self, **changes: Any) -> Task:
        """Change definition fields of a draft: name, project, comment, tags, type, requirements,
        docker_image, mode, gpus, time_limit, retries, memory, cpus, command, entry_point, working_dir."""
        simple = {"name", "project", "comment", "tags", "type"}
        script_fields = {"requirements", "command", "entry_point", "working_dir", "python", "conda_packages"}
        exec_fields = {"mode", "time_limit", "retries", "memory", "cpus"}
        unknown = set(changes) - simple - script_fields - exec_fields - {"docker_image", "gpus", "gpu_memory_mb"}
        if unknown:
            raise InvalidInput(f"cannot edit unknown field(s): {', '.join(sorted(unknown))}")

        def apply(record: TaskRecord) -> None:
            for field, value in changes.items():
                if field in simple:
                    setattr(record, field, list(dict.fromkeys(value)) if field == "tags" else value)
                elif field in script_fields:
                    setattr(record.script, field, value)
                elif field in exec_fields:
                    setattr(record.execution, field, value)
                elif field == "docker_image":
                    record.container.image = value
                elif field == "gpus":
                    record.execution.gpus.count = value
                elif field == "gpu_memory_mb":
                    record.execution.gpus.min_memory_mb = value

        try:
            return self._edit(apply)
        except ValueError as exc:  # pydantic validation of an assigned value
            raise InvalidInput(f"invalid value: {first_error(exc)}") from None

    def recapture(self, script: str | Path, detect_repository: bool = True) -> Task:
        """Make this draft a new run of ``script``: its code, commit, diff and requirements captured
        again (as ``create(script=...)`` does), its parameters and configuration emptied."""
        model = Script()
        capture.fill_from_script(model, Path(script), detect_repository)

        def apply(record: TaskRecord) -> None:
            record.script = model
            record.parameters = {}
            record.configuration = {}

        return self._edit(apply, "recapture")

    def add_tags(self, *tags: str) -> Task:
        """Tags may change in any status."""

        def apply(record: TaskRecord) -> None:
            record.tags = list(dict.fromkeys([*record.tags, *tags]))

        return self._checked_update(apply)

    def set_comment(self, comment: str | None) -> Task:
        def apply(record: TaskRecord) -> None:
            record.comment = comment

        return self._checked_update(apply)

    def _checked_update(self, apply) -> Task:
        try:
            self._record = self._store.update(self.id, apply)
        except ValueError as exc:  # pydantic validation of an assigned value (the record's limits)
            raise InvalidInput(f"invalid value: {first_error(exc)}") from None
        return self

    # -- clone ---------------------------------------------------------------------------
    def clone(
        self,
        name: str | None = None,
        project: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        comment: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> Task:
        """A new draft with this task's definition; ``parent`` points here. Results are not copied."""
        record = clone_record(self.refresh()._record, name, project, parameters, comment, tags)
        self._store.create(record)
        return Task(record, self.connection)

    def clone_many(
        self,
        parameter_sets: Iterable[Mapping[str, Any]],
        name: str | None = None,
        project: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        create_queue: bool = False,
        tags: Iterable[str] | None = None,
    ) -> list[Task]:
        """One clone per parameter set, all written (and enqueued on ``queue``) in one transaction.

        ``name`` may hold ``{i}`` for the clone's index (default: this task's name).
        """
        src = self.refresh()._record
        pattern = name or src.name
        sets = list(parameter_sets)
        names = [pattern.replace("{i}", str(i)) for i in range(len(sets))]
        with bulk.no_gc():
            records = clone_records(src, names, project, sets, tags)
            write_new(self.connection, records, queue, priority, create_queue)
            return [Task(r, self.connection) for r in records]

    # -- queue transitions ---------------------------------------------------------------
    def enqueue(self, queue: str, priority: int = 0, front: bool = False, create_queue: bool = False) -> Task:
        """Put a draft on ``queue``. Higher ``priority`` runs first; ``front`` goes ahead of all."""
        ready_queue(self.connection, queue, priority, create_queue)

        def apply(record: TaskRecord) -> None:
            record.execution.queue = queue
            record.execution.priority = priority
            record.queued_at = time.time()
            record.status_message = None

        self._record = self._store.update(self.id, apply, action="enqueue", front=front)
        return self

    def dequeue(self) -> Task:
        """Take a queued task off its queue, back to draft."""

        def apply(record: TaskRecord) -> None:
            record.queued_at = None

        self._record = self._store.update(self.id, apply, action="dequeue")
        return self

    def abort(self, message: str = "aborted by user") -> Task:
        """Abort: a queued task leaves its queue at once; a running one is asked to stop (its
        worker kills it and marks it aborted)."""
        current = self.refresh()._record
        if current.status == TaskStatus.RUNNING:

            def request(record: TaskRecord) -> None:
                if record.status != TaskStatus.RUNNING:
                    raise IllegalTransition(self.id, "abort", record.status.value, ("queued", "running"))
                record.runtime.abort_requested = True
                record.status_message = message

            self._record = self._store.update(self.id, request, event_kind="abort_requested")
            if self._record.runtime.worker:  # straight to the one worker running it (no broadcast)
                attempt = self._record.runtime.attempt  # a stale message cannot abort a later attempt
                wake.notify(self.connection, self._record.runtime.worker, f"abort {self.id} {attempt}")
            return self

        def apply(record: TaskRecord) -> None:
            record.ended = time.time()
            record.status_message = message

        try:
            self._record = self._store.update(self.id, apply, action="abort")
        except IllegalTransition as exc:
            if exc.current == TaskStatus.RUNNING.value:  # it started meanwhile: ask its worker
                return self.abort(message)
            raise
        return self

    def reset(self) -> Task:
        """A finished task back to draft: results, runtime and log are cleared."""
        from .record import Runtime

        def apply(record: TaskRecord) -> None:
            record.artifacts = {}
            record.outputs = {}
            record.metrics = {}
            record.runtime = Runtime()
            record.started = record.ended = record.queued_at = None
            record.status_message = None

        self._record = self._store.update(self.id, apply, action="reset")
        return self

    def delete(self) -> None:
        """Remove a task that is not queued or running."""
        self._store.delete(self.id)

    # -- waiting -------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, statuses: Iterable[TaskStatus | str] | None = None) -> Task:
        """Block until the task reaches one of ``statuses`` (default: completed, failed, aborted).

        Driven by the event stream (no polling interval); the record is re-read at least every
        few seconds as a backstop. Raises WaitTimeout when ``timeout`` seconds pass first.
        """
        wanted = {TaskStatus(s) for s in statuses} if statuses else set(FINAL_STATUSES)
        conn = self.connection
        deadline = events.deadline_after(timeout)
        cursor = streams.last_event_id(conn)
        self.refresh()
        while self.status not in wanted:
            block = events.RECONCILE_S
            if deadline is not None:
                block = min(block, deadline - time.monotonic())
                if block <= 0:
                    raise WaitTimeout(
                        f"task {self.id} is still {self.status.value} after {timeout:g}s "
                        f"(waiting for {', '.join(sorted(s.value for s in wanted))})"
                    )
            got = streams.follow_events(conn, cursor, block)
            hit = False
            for event in got:
                cursor = event.id
                hit = hit or (event.task_id == self.id)
            if not got:
                reaper.reap(conn)  # a quiet tick: make sure a dead worker's task is not left running
            if hit or not got:
                try:
                    self.refresh()
                except TaskNotFound:
                    raise TaskNotFound(f"task {self.id} was deleted while waiting") from None
        return self

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self._record.model_dump(mode="json")


def create_many(
    specs: Iterable[Mapping[str, Any]],
    queue: str | None = None,
    priority: int = 0,
    create_queue: bool = False,
    connection: Redis | None = None,
) -> list[Task]:
    """Create many command tasks in one transaction (optionally born queued on ``queue``).

    Each spec holds ``name`` and ``command`` and may hold ``project``, ``parameters``, ``tags``,
    ``comment`` and ``retries``.
    """
    conn = resolve(connection)
    with bulk.no_gc():
        records = records_from_specs(specs)
        write_new(conn, records, queue, priority, create_queue)
        return [Task(r, conn) for r in records]
