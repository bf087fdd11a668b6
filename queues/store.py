"""Task records in Redis: atomic compare-and-set updates, secondary indexes and queries."""

from __future__ import annotations

import fnmatch
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis import Redis, WatchError
from redis.client import Pipeline

from . import bulk, keys, lifecycle, rqjob
from .backend import streams
from .errors import IllegalTransition, InvalidInput, TaskNotFound
from .record import TaskRecord, TaskStatus

PAGE_MAX = 1000
_SCAN_CHUNK = 200
_WALK_LIMIT = 400  # records read newest-first before a query not answered by one index is narrowed in Redis
_NAME_SCAN_COUNT = 25_000  # members per ZSCAN call (a glob with no literal prefix or suffix)

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


def redis_glob(pattern: str) -> str:
    """A Redis MATCH pattern that matches at least every string ``fnmatchcase(s, pattern)`` does.

    ``*`` and ``?`` carry over, a ``[...]`` set becomes ``?`` (callers re-check with fnmatch),
    and characters special to Redis are escaped.
    """
    out, i, n = [], 0, len(pattern)
    while i < n:
        char = pattern[i]
        i += 1
        if char in "*?":
            out.append(char)
        elif char == "[":
            j = i + 1 if i < n and pattern[i] == "!" else i
            j = j + 1 if j < n and pattern[j] == "]" else j
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "[" for fnmatch
                out.append("\\[")
            else:
                out.append("?")
                i = j + 1
        elif char in "\\[]^":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


_GLOB_CHARS = "*?[]"


def literal_prefix(glob: str) -> str:
    """The characters every name matching ``glob`` (fnmatch) starts with."""
    end = next((i for i, ch in enumerate(glob) if ch in "*?["), len(glob))
    return glob[:end]


def literal_suffix(glob: str) -> str:
    """Characters every name matching ``glob`` ends with (those after its last wildcard or set)."""
    start = len(glob)
    while start > 0 and glob[start - 1] not in _GLOB_CHARS:
        start -= 1
    return glob[start:] if any(ch in glob for ch in "*?[") else glob


def _query_indexes(query: Query) -> list[str]:
    """The sorted-set index of each of the query's indexed filters."""
    found = []
    if query.project is not None:
        found.append(keys.project_index(query.project))
    statuses = query.statuses()
    if len(statuses) == 1:
        found.append(keys.status_index(statuses[0]))
    if query.tag is not None:
        found.append(keys.tag_index(query.tag))
    if query.queue is not None:
        found.append(keys.queue_index(query.queue))
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
        """Walk the smallest matching index newest-first, fetching records in chunks.

        A query that the index does not answer alone (two filters, a name glob) and that has
        not been satisfied after ``_WALK_LIMIT`` records turns to filtering in Redis: the
        intersection of its indexes (ZINTER) and the names that may match its glob (a lex range
        of the name indexes on the glob's literal prefix or suffix, or ZSCAN MATCH), so a rare
        match costs a few server-side steps, not a read of every record. Every record yielded is
        still checked against the whole query.
        """
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
            if not exact and exact_name is None and len(seen) >= _WALK_LIMIT:
                candidates = self._narrow(query)
                if candidates is not None:
                    yield from self._walk_ids([i for i in candidates if i not in seen], query)
                    return

    def _walk_ids(self, ids: list[str], query: Query):
        for begin in range(0, len(ids), _SCAN_CHUNK):
            for record in self.get_many(ids[begin : begin + _SCAN_CHUNK]):
                if record is not None and query.matches(record):
                    yield record

    def _narrow(self, query: Query) -> list[str] | None:
        """Ids that may match ``query``, newest first, found in Redis; None when Redis cannot narrow it."""
        index_keys = _query_indexes(query)
        found: dict[str, float] | None = None
        if len(index_keys) >= 2:
            found = {m.decode(): score for m, score in self.conn.zinter(index_keys, aggregate="MAX", withscores=True)}
        if query.name is not None and self._name_scan_complete():
            named = [i for i in self._named(query.name) if found is None or i in found]
            if found is None:
                scores = self.conn.zmscore(keys.ALL, named) if named else []
                found = {i: s for i, s in zip(named, scores) if s is not None}
            else:
                found = {i: found[i] for i in named}
        if found is None:
            return None
        return sorted(found, key=found.__getitem__, reverse=True)

    def _named(self, name: str) -> list[str]:
        """Ids of the tasks whose name may match the glob (a superset): a lex range on the longer of
        its literal prefix and suffix, or ZSCAN MATCH when it has neither (``*word*``)."""
        glob = name if any(ch in name for ch in "*?[") else f"*{name}*"
        prefix, suffix = literal_prefix(glob), literal_suffix(glob)
        if suffix and len(suffix) >= len(prefix):
            start = suffix[::-1].encode()
            members = self.conn.zrangebylex(keys.NAME_REV, b"[" + start, b"(" + start + b"\xff")
        elif prefix:
            start = prefix.encode()
            members = self.conn.zrangebylex(keys.NAME_LEX, b"[" + start, b"(" + start + b"\xff")
        else:
            pattern = redis_glob(glob) + "\x00*"
            members = [m for m, _ in self.conn.zscan_iter(keys.NAME_LEX, match=pattern, count=_NAME_SCAN_COUNT)]
        return list(dict.fromkeys(m.rpartition(b"\x00")[2].decode() for m in members))

    def _name_scan_complete(self) -> bool:
        """Whether every task has its name scan entry (tasks stored by an older trainyard have none)."""
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.NAME_LEX)
            pipe.zcard(keys.ALL)
            named, total = pipe.execute()
        return named >= total

    def _best_index(self, query: Query) -> tuple[str, bool]:
        """The smallest index covering one filter, and whether it alone answers the query."""
        candidates = _query_indexes(query)
        statuses = query.statuses()
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
    def create(self, record: TaskRecord) -> TaskRecord:
        """Store a new record (its id must be unused) with its indexes and a ``created`` event."""
        return self.create_many([record])[0]

    def create_many(self, records: list[TaskRecord], born: bulk.Born | None = None) -> list[TaskRecord]:
        """Store many new records atomically in one round trip (used for bulk enqueue and sweeps);
        with ``born`` they are queued there too (their records must already say so)."""
        if not bulk.create(self.conn, records, index_keys, born):
            # An id collision (64 random bits: practically never); nothing was written. Surface it.
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
                        streams.publish(
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
                    pipe.zrem(keys.NAME_LEX, keys.name_member(old.name, task_id))
                    pipe.zrem(keys.NAME_REV, keys.name_member_reversed(old.name, task_id))
                    if hook is not None:
                        hook(pipe, old, old)
                    streams.publish(pipe, "deleted", task_id, old.status.value, old.status.value, old.project)
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
        if old is None or old.name != new.name:
            if old is not None:
                pipe.zrem(keys.NAME_LEX, keys.name_member(old.name, old.id))
                pipe.zrem(keys.NAME_REV, keys.name_member_reversed(old.name, old.id))
            pipe.zadd(keys.NAME_LEX, {keys.name_member(new.name, new.id): 0})
            pipe.zadd(keys.NAME_REV, {keys.name_member_reversed(new.name, new.id): 0})

    def _drop_name_hint(self, record: TaskRecord) -> None:
        field = keys.name_field(record.project, record.name)
        hint = self.conn.hget(keys.NAMES, field)
        if hint is not None and hint.decode() == record.id:
            self.conn.hdel(keys.NAMES, field)
