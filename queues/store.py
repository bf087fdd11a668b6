"""Task records in Redis: atomic compare-and-set updates, secondary indexes and queries."""

from __future__ import annotations

import fnmatch
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis import Redis

from . import bulk, keys, lifecycle
from .backend import records
from .backend.records import index_keys
from .errors import InvalidInput, TaskNotFound
from .record import TaskRecord, TaskStatus

PAGE_MAX = 1000
_SCAN_CHUNK = 200
_WALK_LIMIT = 400  # records read newest-first before a query not answered by one index is narrowed in Redis

__all__ = ["PAGE_MAX", "Query", "TaskStore", "index_keys", "new_task_id"]


def new_task_id() -> str:
    """16 hex characters: short to type, 64 random bits, valid as an RQ job id."""
    return secrets.token_hex(8)


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
        data = records.record_json(self.conn, task_id)
        if data is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return TaskRecord.from_json(data)

    def get_many(self, task_ids: list[str]) -> list[TaskRecord | None]:
        if not task_ids:
            return []
        blobs = records.records_json(self.conn, task_ids)
        return [TaskRecord.from_json(b) if b is not None else None for b in blobs]

    def exists(self, task_id: str) -> bool:
        return records.exists(self.conn, task_id)

    def find_by_name(self, project: str, name: str) -> TaskRecord:
        """The newest task named ``name`` in ``project``."""
        hint = records.name_hint(self.conn, project, name)
        if hint is not None:
            found = self.get_many([hint])
            if found and found[0] and found[0].project == project and found[0].name == name:
                return found[0]
        for record in self.iter_query(Query(project=project), exact_name=name):
            return record
        raise TaskNotFound(f"no task named {name!r} in project {project!r}")

    def count(self, query: Query | None = None) -> int | None:
        """Exact count when one index answers the query, else None."""
        query = query or Query()
        key, exact = self._best_index(query)
        return records.index_size(self.conn, key) if exact else None

    def query(self, query: Query | None = None, limit: int = 50, offset: int = 0) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first, ``limit`` from ``offset``."""
        if limit < 0 or offset < 0:
            raise InvalidInput("limit and offset must not be negative")
        limit = min(limit, PAGE_MAX)
        key, exact = self._best_index(query or Query())
        if exact:  # one index answers: read just the page (deep pages cost the same as the first)
            ids = records.index_page(self.conn, key, offset, offset + limit - 1) if limit else []
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
            ids = records.index_page(self.conn, key, start, start + _SCAN_CHUNK - 1)
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
            found = records.intersect(self.conn, index_keys)
        if query.name is not None and records.name_scan_complete(self.conn):
            named = [i for i in self._named(query.name) if found is None or i in found]
            if found is None:
                scores = records.created_times(self.conn, named)
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
            return records.ids_named_like(self.conn, suffix=suffix)
        if prefix:
            return records.ids_named_like(self.conn, prefix=prefix)
        return records.ids_named_like(self.conn, pattern=redis_glob(glob))

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
        sizes = records.index_sizes(self.conn, candidates)
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
        event_kind: str | None = None,
        front: bool = False,
    ) -> TaskRecord:
        """Atomically read, change and write one record (optimistic lock on the record key).

        ``action`` names a transition of ``lifecycle.TABLE``: it is checked against the status
        read inside the transaction, so of two racing conflicting changes exactly one wins, and
        its declared side effects are written with the record (``front``: a push goes ahead of
        every waiting task). ``mutate`` edits a copy of the record and may refuse by raising.
        """
        check = None
        if action is not None:

            def check(old: TaskRecord) -> lifecycle.Transition:
                return lifecycle.transition(task_id, action, old.status)

        return records.change(self.conn, task_id, mutate, check=check, event_kind=event_kind, front=front)

    def delete(self, task_id: str) -> TaskRecord:
        """Remove a record that is not queued or running, with its indexes, job and log."""
        return records.remove(self.conn, task_id)
