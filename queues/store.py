"""Task records in Redis: atomic compare-and-set updates, secondary indexes and queries."""

from __future__ import annotations

import fnmatch
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis import Redis, WatchError
from redis.client import Pipeline

from . import events, keys, lifecycle, rqjob
from .errors import IllegalTransition, InvalidInput, TaskNotFound
from .record import TaskRecord, TaskStatus

PAGE_MAX = 1000
_SCAN_CHUNK = 200

# A hook run inside the MULTI of an update, after the record is written: (pipe, old, new) -> None.
TxHook = Callable[[Pipeline, TaskRecord, TaskRecord], None]


def new_task_id() -> str:
    """16 hex characters: short to type, 64 random bits, valid as an RQ job id."""
    return secrets.token_hex(8)


def index_keys(record: TaskRecord) -> set[str]:
    """Every sorted-set index the record belongs to (all scored by creation time)."""
    found = {keys.ALL, keys.status_index(record.status.value), keys.project_index(record.project)}
    found.update(keys.tag_index(tag) for tag in record.tags)
    if record.execution.queue:
        found.add(keys.queue_index(record.execution.queue))
        if record.status == TaskStatus.RUNNING:
            found.add(keys.inflight(record.execution.queue))
    return found


@dataclass
class Query:
    """Filters for listing tasks; all given filters must match."""

    project: str | None = None
    status: str | Iterable[str] | None = None
    tag: str | None = None
    queue: str | None = None
    name: str | None = None  # glob pattern (``sweep-*``); a plain word matches as a substring
    parent: str | None = None

    def statuses(self) -> list[str]:
        if self.status is None:
            return []
        raw = [self.status] if isinstance(self.status, str) else list(self.status)
        valid = {s.value for s in TaskStatus}
        for value in raw:
            if value not in valid:
                raise InvalidInput(f"unknown status {value!r} (one of: {', '.join(sorted(valid))})")
        return raw

    def matches(self, record: TaskRecord) -> bool:
        if self.project is not None and record.project != self.project:
            return False
        statuses = self.statuses()
        if statuses and record.status.value not in statuses:
            return False
        if self.tag is not None and self.tag not in record.tags:
            return False
        if self.queue is not None and record.execution.queue != self.queue:
            return False
        if self.parent is not None and record.parent != self.parent:
            return False
        if self.name is not None:
            pattern = self.name if any(ch in self.name for ch in "*?[") else f"*{self.name}*"
            if not fnmatch.fnmatchcase(record.name, pattern):
                return False
        return True


class TaskStore:
    """Reads and writes task records. Every write is one atomic transaction."""

    def __init__(self, connection: Redis):
        self.conn = connection

    # -- reads ---------------------------------------------------------------------------
    def get(self, task_id: str) -> TaskRecord:
        data = self.conn.get(keys.task(task_id))
        if data is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return TaskRecord.from_json(data)

    def get_many(self, task_ids: list[str]) -> list[TaskRecord | None]:
        if not task_ids:
            return []
        blobs = self.conn.mget([keys.task(t) for t in task_ids])
        return [TaskRecord.from_json(b) if b is not None else None for b in blobs]

    def exists(self, task_id: str) -> bool:
        return bool(self.conn.exists(keys.task(task_id)))

    def find_by_name(self, project: str, name: str) -> TaskRecord:
        """The newest task named ``name`` in ``project``."""
        hint = self.conn.hget(keys.NAMES, keys.name_field(project, name))
        if hint is not None:
            records = self.get_many([hint.decode()])
            if records and records[0] and records[0].project == project and records[0].name == name:
                return records[0]
        for record in self.iter_query(Query(project=project), exact_name=name):
            return record
        raise TaskNotFound(f"no task named {name!r} in project {project!r}")

    def count(self, query: Query | None = None) -> int | None:
        """Exact count when one index answers the query, else None."""
        query = query or Query()
        key, exact = self._best_index(query)
        return self.conn.zcard(key) if exact else None

    def query(self, query: Query | None = None, limit: int = 50, offset: int = 0) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first, ``limit`` from ``offset``."""
        if limit < 0 or offset < 0:
            raise InvalidInput("limit and offset must not be negative")
        limit = min(limit, PAGE_MAX)
        key, exact = self._best_index(query or Query())
        if exact:  # one index answers: read just the page (deep pages cost the same as the first)
            ids = [i.decode() for i in self.conn.zrevrange(key, offset, offset + limit - 1)] if limit else []
            return [r for r in self.get_many(ids) if r is not None]
        out: list[TaskRecord] = []
        skipped = 0
        for record in self.iter_query(query or Query()):
            if skipped < offset:
                skipped += 1
                continue
            if len(out) >= limit:
                break
            out.append(record)
        return out

    def iter_query(self, query: Query, exact_name: str | None = None):
        """Walk the smallest matching index newest-first, fetching records in chunks."""
        key, exact = self._best_index(query)
        start = 0
        seen: set[str] = set()  # the index can shift while we walk it (new tasks land at the front)
        while True:
            ids = [i.decode() for i in self.conn.zrevrange(key, start, start + _SCAN_CHUNK - 1)]
            if not ids:
                return
            start += len(ids)
            fresh = [i for i in ids if i not in seen]
            seen.update(fresh)
            for record in self.get_many(fresh):
                if record is None:
                    continue
                if exact_name is not None and record.name != exact_name:
                    continue
                if exact or query.matches(record):
                    yield record

    def _best_index(self, query: Query) -> tuple[str, bool]:
        """The smallest index covering one filter, and whether it alone answers the query."""
        candidates: list[str] = []
        if query.project is not None:
            candidates.append(keys.project_index(query.project))
        statuses = query.statuses()
        if len(statuses) == 1:
            candidates.append(keys.status_index(statuses[0]))
        if query.tag is not None:
            candidates.append(keys.tag_index(query.tag))
        if query.queue is not None:
            candidates.append(keys.queue_index(query.queue))
        filters = sum(x is not None for x in (query.project, query.tag, query.queue, query.name, query.parent))
        filters += 1 if statuses else 0
        if not candidates:
            return keys.ALL, filters == 0
        if len(candidates) == 1:
            return candidates[0], filters == 1
        with self.conn.pipeline(transaction=False) as pipe:
            for key in candidates:
                pipe.zcard(key)
            sizes = pipe.execute()
        return min(zip(sizes, candidates))[1], False

    # -- writes --------------------------------------------------------------------------
    def create(self, record: TaskRecord, hook: TxHook | None = None) -> TaskRecord:
        """Store a new record (its id must be unused) with its indexes and a ``created`` event."""
        records = self.create_many([record], hook=hook)
        return records[0]

    def create_many(self, records: list[TaskRecord], hook: TxHook | None = None) -> list[TaskRecord]:
        """Store many new records in one round trip (used for bulk enqueue and sweeps)."""
        set_positions = []
        with self.conn.pipeline(transaction=True) as pipe:
            for record in records:
                set_positions.append(len(pipe.command_stack))
                pipe.set(keys.task(record.id), record.to_json(), nx=True)
                self._write_indexes(pipe, None, record)
                if hook is not None:
                    hook(pipe, record, record)
                events.publish(
                    pipe, "created", record.id, record.status.value, "", record.project, record.execution.queue or ""
                )
            results = pipe.execute()
        if not all(results[i] for i in set_positions):
            # SET NX refused: an id collision (64 random bits: practically never). Surface it.
            raise InvalidInput("task id already exists")
        return records

    def update(
        self,
        task_id: str,
        mutate: Callable[[TaskRecord], None],
        action: str | None = None,
        hook: TxHook | None = None,
        event_kind: str | None = None,
    ) -> TaskRecord:
        """Atomically read, change and write one record (optimistic lock on the record key).

        ``action`` names a lifecycle transition: it is checked against the status read inside
        the transaction, so of two racing conflicting changes exactly one wins. ``mutate`` edits
        a copy of the record; ``hook`` adds more commands to the same MULTI.
        """
        key = keys.task(task_id)
        while True:
            with self.conn.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    data = pipe.get(key)
                    if data is None:
                        raise TaskNotFound(f"no task with id {task_id!r}")
                    old = TaskRecord.from_json(data)
                    new = TaskRecord.from_json(data)  # a second parse is cheaper than a deep copy
                    now = time.time()
                    if action is not None:
                        new.status = lifecycle.target(task_id, action, old.status)
                    mutate(new)
                    new.rev = old.rev + 1
                    new.updated = now
                    pipe.multi()
                    pipe.set(key, new.to_json())
                    self._write_indexes(pipe, old, new)
                    if new.status != old.status:
                        rqjob.write_status(pipe, task_id, new.status, now, new.runtime.worker)
                    if hook is not None:
                        hook(pipe, old, new)
                    kind = event_kind or ("status" if new.status != old.status else None)
                    if kind:
                        events.publish(
                            pipe,
                            kind,
                            task_id,
                            new.status.value,
                            old.status.value,
                            new.project,
                            new.execution.queue or "",
                        )
                    pipe.execute()
                    return new
                except WatchError:
                    continue

    def delete(self, task_id: str, hook: TxHook | None = None) -> TaskRecord:
        """Remove a record that is not queued or running, with its indexes, job and log."""
        key = keys.task(task_id)
        while True:
            with self.conn.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    data = pipe.get(key)
                    if data is None:
                        raise TaskNotFound(f"no task with id {task_id!r}")
                    old = TaskRecord.from_json(data)
                    if old.status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
                        raise IllegalTransition(
                            task_id, "delete", old.status.value, ("draft", "completed", "failed", "aborted")
                        )
                    pipe.multi()
                    pipe.delete(key, keys.log(task_id), keys.rq_job(task_id))
                    for index in index_keys(old):
                        pipe.zrem(index, task_id)
                    if hook is not None:
                        hook(pipe, old, old)
                    events.publish(pipe, "deleted", task_id, old.status.value, old.status.value, old.project)
                    pipe.execute()
                    self._drop_name_hint(old)
                    return old
                except WatchError:
                    continue

    # -- indexes -------------------------------------------------------------------------
    def _write_indexes(self, pipe: Pipeline, old: TaskRecord | None, new: TaskRecord) -> None:
        before = index_keys(old) if old is not None else set()
        after = index_keys(new)
        for key in before - after:
            pipe.zrem(key, new.id)
        for key in after - before:
            pipe.zadd(key, {new.id: new.created})
        if old is None or (old.project, old.name) != (new.project, new.name):
            pipe.hset(keys.NAMES, keys.name_field(new.project, new.name), new.id)

    def _drop_name_hint(self, record: TaskRecord) -> None:
        field = keys.name_field(record.project, record.name)
        hint = self.conn.hget(keys.NAMES, field)
        if hint is not None and hint.decode() == record.id:
            self.conn.hdel(keys.NAMES, field)
